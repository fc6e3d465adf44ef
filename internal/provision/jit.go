package provision

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/registry"
)

// CertRegistry is what certificate provisioning needs of the registry.
type CertRegistry interface {
	LookupCertificate(ctx context.Context, fp string) (registry.Certificate, error)
	LookupCA(ctx context.Context, id string) (registry.CA, error)
	ActiveCAs(ctx context.Context) ([]registry.CA, error)
	LookupDeviceByFingerprint(ctx context.Context, fp string) (registry.Device, error)
	LookupProduct(ctx context.Context, pk string) (registry.Product, error)
	RecordCertificate(ctx context.Context, c registry.Certificate) error
	ActivateCertificate(ctx context.Context, c registry.Certificate, attrs map[string]string) error
}

// Certificate refusals.
var (
	ErrCertRevoked = errors.New("certificate or its CA is revoked")
	ErrCertPending = errors.New("certificate is pending activation")
	ErrCertUnknown = errors.New("certificate is neither bound to a device nor signed by a registered CA")
	ErrCertInvalid = errors.New("certificate is expired, not yet valid or unusable")
)

// caSet is the active CAs of every account, parsed.
type caSet struct {
	cas  []registry.CA
	cert map[string]*x509.Certificate
}

// caTTL bounds how long a CA registered or revoked on another node takes
// to count here; changes made through this node apply at once.
const caTTL = 2 * time.Second

func (s *Service) activeCAs(ctx context.Context, reg CertRegistry) ([]registry.CA, map[string]*x509.Certificate, error) {
	set, err := s.cas.GetOrLoad(struct{}{}, func() (caSet, error) {
		cas, err := reg.ActiveCAs(ctx)
		if err != nil {
			return caSet{}, err
		}
		certs := make(map[string]*x509.Certificate, len(cas))
		for _, ca := range cas {
			if c, _, err := registry.ParseCertificatePEM([]byte(ca.PEM)); err == nil {
				certs[ca.ID] = c
			}
		}
		return caSet{cas: cas, cert: certs}, nil
	})
	return set.cas, set.cert, err
}

// AuthenticateCertificate authenticates a TLS client certificate: one bound
// to a device, or one signed by a registered CA, which provisions its
// device just in time (JITP) or records it pending activation (JITR).
func (s *Service) AuthenticateCertificate(ctx context.Context, cert *x509.Certificate, source string) (registry.Device, error) {
	reg, ok := s.o.Registry.(CertRegistry)
	if !ok {
		return registry.Device{}, ErrCertUnknown
	}
	now := s.o.Now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return registry.Device{}, ErrCertInvalid
	}
	fp := credential.Fingerprint(cert.Raw)
	rec, err := reg.LookupCertificate(ctx, fp)
	switch {
	case err == nil:
		switch rec.Status {
		case registry.CertRevoked:
			return registry.Device{}, ErrCertRevoked
		case registry.CertPending:
			return registry.Device{}, ErrCertPending
		}
		ca, err := reg.LookupCA(ctx, rec.CAID)
		if err != nil || ca.Status != registry.CertActive {
			return registry.Device{}, ErrCertRevoked
		}
		d, err := reg.LookupDeviceByFingerprint(ctx, fp)
		if err != nil {
			return registry.Device{}, err
		}
		if d.AccountID != ca.AccountID {
			s.log.Warn("certificate of a registered CA is bound to a device of another account; refused", "ca", ca.ID, "productKey", d.ProductKey)
			return registry.Device{}, ErrCertUnknown
		}
		return d, nil
	case !errors.Is(err, registry.ErrNotFound):
		return registry.Device{}, err
	}
	cas, certs, err := s.activeCAs(ctx, reg)
	if err != nil {
		return registry.Device{}, err
	}
	var issuers []registry.CA
	for _, ca := range cas {
		// The name comparison is cheap and skips most CAs' signature checks.
		if caCert := certs[ca.ID]; caCert != nil && bytes.Equal(cert.RawIssuer, caCert.RawSubject) && cert.CheckSignatureFrom(caCert) == nil {
			issuers = append(issuers, ca)
		}
	}
	// Bound directly to a device through the API: a certificate issued by
	// a registered CA resolves only within that CA's account.
	if d, err := reg.LookupDeviceByFingerprint(ctx, fp); err == nil {
		for _, ca := range issuers {
			if ca.AccountID != d.AccountID {
				s.log.Warn("certificate of a registered CA is bound to a device of another account; refused", "ca", ca.ID, "productKey", d.ProductKey)
				return registry.Device{}, ErrCertUnknown
			}
		}
		return d, nil
	} else if !errors.Is(err, registry.ErrNotFound) {
		return registry.Device{}, err
	}
	if len(issuers) > 0 {
		return s.justInTime(ctx, reg, issuers[0], cert, fp, source)
	}
	return registry.Device{}, ErrCertUnknown
}

func (s *Service) justInTime(ctx context.Context, reg CertRegistry, ca registry.CA, cert *x509.Certificate, fp, source string) (registry.Device, error) {
	dn, err := registry.DeviceNameFromCert(cert, ca.Template.NameFrom)
	if err != nil {
		s.log.Info("certificate from a registered CA cannot name a device", "ca", ca.ID, "err", err)
		return registry.Device{}, ErrCertInvalid
	}
	pk := ca.Template.ProductKey
	rec := registry.Certificate{Fingerprint: fp, AccountID: ca.AccountID, CAID: ca.ID, ProductKey: pk, DeviceName: dn, Subject: cert.Subject.String()}
	prod, err := reg.LookupProduct(ctx, pk)
	if err != nil {
		return registry.Device{}, fmt.Errorf("CA %s template product %s: %w", ca.ID, pk, err)
	}
	activate := ca.Mode == registry.JITP
	attrs := ca.Template.Attributes
	reason := "jitp"
	if !activate && prod.Provisioning.HookURL != "" {
		// JITR with a hook: the hook may activate at once.
		more, e := s.hook(ctx, Request{Path: PathCertificate, ProductKey: pk, DeviceName: dn, Source: source}, prod)
		if e == nil {
			activate, attrs, reason = true, merge(attrs, more), "activated by hook"
		}
	}
	outcome := "pending"
	if activate {
		outcome = "activated"
		err := reg.ActivateCertificate(ctx, rec, attrs)
		switch {
		case errors.Is(err, registry.ErrCertificateInUse):
			// Never take a device over silently: an operator decides.
			activate, outcome, reason = false, "pending", "the device has another certificate (or this one is bound elsewhere): waiting for an operator"
		case err != nil:
			return registry.Device{}, fmt.Errorf("provisioning certificate device %s/%s: %w", pk, dn, err)
		}
	} else {
		reason = "jitr: waiting for activation"
	}
	if !activate {
		rec.Status = registry.CertPending
		if err := reg.RecordCertificate(ctx, rec); err != nil {
			return registry.Device{}, err
		}
	}
	if s.o.Auditor != nil {
		s.o.Auditor.Record(ctx, audit.Entry{AccountID: ca.AccountID, Actor: "device", Action: "registration.certificate",
			Target: pk + "/" + dn, Outcome: outcome, Reason: reason + " (CA " + ca.ID + ", sha256 " + fp + ")", Source: hostOf(source)})
	}
	ev := map[string]any{"event": "certificate." + outcome, "productKey": pk, "deviceName": dn, "caId": ca.ID, "fingerprint": fp, "time": s.o.Now().UnixMilli()}
	if s.o.Webhooks != nil {
		for _, u := range prod.Provisioning.EventURLs {
			s.o.Webhooks.Post(u, ev)
		}
	}
	s.pubMu.RLock()
	pub := s.pub
	s.pubMu.RUnlock()
	if pub != nil {
		data, _ := json.Marshal(ev)
		pub.PublishEvent("$corral/events/certificate/"+pk+"/"+dn, data)
	}
	if !activate {
		return registry.Device{}, ErrCertPending
	}
	return reg.LookupDeviceByFingerprint(ctx, fp)
}
