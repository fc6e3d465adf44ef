package registry

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/corral-iot/corral/internal/audit"
)

// ParseCertificatePEM reads one PEM certificate and returns it with its
// SHA-256 fingerprint (lower-case hex of the DER bytes).
func ParseCertificatePEM(data []byte) (*x509.Certificate, string, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, "", invalid("certificate", "must be one PEM block of type CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, "", invalid("certificate", "is not a valid X.509 certificate: %v", err)
	}
	sum := sha256.Sum256(block.Bytes)
	return cert, hex.EncodeToString(sum[:]), nil
}

// BindCertificate binds a device certificate: the device may then connect
// on the TLS listener by presenting it, without a password.
func (s *Service) BindCertificate(ctx context.Context, p Principal, pk, dn string, certPEM []byte) (Device, error) {
	if err := need(p, RoleOperator); err != nil {
		return Device{}, err
	}
	cert, fp, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return Device{}, err
	}
	if s.now().After(cert.NotAfter) {
		return Device{}, invalid("certificate", "expired on %s", cert.NotAfter.Format("2006-01-02"))
	}
	d, err := s.device(ctx, p, pk, dn)
	if err != nil {
		return Device{}, err
	}
	d.CertFingerprint = fp
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return Device{}, fmt.Errorf("binding certificate to %s/%s: %w", pk, dn, err)
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.certificate.bind", Target: pk + "/" + dn, Outcome: "ok", Reason: "sha256 " + fp})
	return d, nil
}

// UnbindCertificate removes a device's certificate and closes a session
// that used it.
func (s *Service) UnbindCertificate(ctx context.Context, p Principal, pk, dn string) (Device, error) {
	if err := need(p, RoleOperator); err != nil {
		return Device{}, err
	}
	d, err := s.device(ctx, p, pk, dn)
	if err != nil {
		return Device{}, err
	}
	if d.CertFingerprint == "" {
		return d, nil
	}
	d.CertFingerprint = ""
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return Device{}, fmt.Errorf("unbinding certificate of %s/%s: %w", pk, dn, err)
	}
	s.notify(ctx, DeviceCredentialsChanged, d)
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.certificate.unbind", Target: pk + "/" + dn, Outcome: "ok"})
	return d, nil
}

// LookupDeviceByFingerprint finds the device a certificate is bound to.
func (s *Service) LookupDeviceByFingerprint(ctx context.Context, fp string) (Device, error) {
	d, err := s.store.GetDeviceByFingerprint(ctx, fp)
	if err != nil {
		return Device{}, fmt.Errorf("certificate %.16s…: %w", fp, err)
	}
	d.SealedSecret = nil
	return d, nil
}
