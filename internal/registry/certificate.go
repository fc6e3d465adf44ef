package registry

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

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

// ChallengeTTL is how long a certificate-binding challenge stays good.
const ChallengeTTL = 5 * time.Minute

// CertificateChallenge is a nonce to sign with a certificate's private key
// to bind the certificate to one device.
type CertificateChallenge struct {
	Challenge string    `json:"challenge" doc:"sign these bytes (the string as sent) with the certificate's key: ECDSA or RSA PKCS#1 v1.5/PSS over SHA-256, or Ed25519"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// CertificateBinding binds a certificate to a device. A certificate that
// is neither self-signed nor issued by a CA registered in the caller's
// account must come with a signature over a challenge from
// CertificateChallenge, made with the certificate's key.
type CertificateBinding struct {
	CertificatePEM string `json:"certificatePem" doc:"the device certificate, PEM"`
	Challenge      string `json:"challenge,omitempty" doc:"a challenge from GET …/certificate/challenge for this device"`
	Signature      string `json:"signature,omitempty" doc:"base64 signature of the challenge by the certificate's private key"`
}

func challengeAAD(pk, dn string) []byte { return []byte("certificate-challenge:" + pk + "/" + dn) }

// CertificateChallenge issues a challenge bound to one device, good for
// ChallengeTTL. It is sealed under the key-encryption key, so any node of
// the instance can check it and no state is kept.
func (s *Service) CertificateChallenge(ctx context.Context, p Principal, pk, dn string) (CertificateChallenge, error) {
	if err := need(p, RoleOperator); err != nil {
		return CertificateChallenge{}, err
	}
	if _, err := s.device(ctx, p, pk, dn); err != nil {
		return CertificateChallenge{}, err
	}
	return s.newChallenge(pk, dn)
}

func (s *Service) newChallenge(pk, dn string) (CertificateChallenge, error) {
	exp := s.nowUTC().Add(ChallengeTTL)
	msg := make([]byte, 8, 24)
	binary.BigEndian.PutUint64(msg, uint64(exp.UnixMilli()))
	nonce, err := randString(s.rand, 16)
	if err != nil {
		return CertificateChallenge{}, err
	}
	sealed, err := s.box.Seal(append(msg, nonce...), challengeAAD(pk, dn))
	if err != nil {
		return CertificateChallenge{}, fmt.Errorf("sealing challenge: %w", err)
	}
	return CertificateChallenge{Challenge: base64.RawURLEncoding.EncodeToString(sealed), ExpiresAt: exp}, nil
}

// checkChallenge verifies that challenge was issued for pk/dn, is still
// good, and that sig is its signature by cert's key.
func (s *Service) checkChallenge(cert *x509.Certificate, pk, dn, challenge, sig string) error {
	if challenge == "" || sig == "" {
		return invalid("signature", "give both challenge and signature")
	}
	sealed, err := base64.RawURLEncoding.DecodeString(challenge)
	if err != nil || len(challenge) > 256 {
		return fmt.Errorf("challenge is not one corral issued: %w", ErrProofOfPossession)
	}
	msg, err := s.box.Open(sealed, challengeAAD(pk, dn))
	if err != nil || len(msg) < 8 {
		return fmt.Errorf("challenge was not issued for this device: %w", ErrProofOfPossession)
	}
	if s.now().UnixMilli() > int64(binary.BigEndian.Uint64(msg[:8])) {
		return fmt.Errorf("challenge expired; get a new one: %w", ErrProofOfPossession)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(sig); err != nil {
			return invalid("signature", "must be base64")
		}
	}
	if err := VerifyChallengeSignature(cert.PublicKey, []byte(challenge), raw); err != nil {
		return fmt.Errorf("%v: %w", err, ErrProofOfPossession)
	}
	return nil
}

// VerifyChallengeSignature checks sig over msg by pub: ECDSA (ASN.1) or
// RSA (PKCS#1 v1.5 or PSS) over SHA-256, or Ed25519 over msg itself.
func VerifyChallengeSignature(pub any, msg, sig []byte) error {
	digest := sha256.Sum256(msg)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if ecdsa.VerifyASN1(k, digest[:], sig) {
			return nil
		}
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil || rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig, nil) == nil {
			return nil
		}
	case ed25519.PublicKey:
		if ed25519.Verify(k, msg, sig) {
			return nil
		}
	default:
		return errors.New("the certificate's key type is not supported (use ECDSA, RSA or Ed25519)")
	}
	return errors.New("the signature is not the certificate key's signature of the challenge")
}

// selfSigned reports whether a certificate is signed by its own key.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// issuingCAs returns the registered CAs (any account, any status) that
// signed cert.
func (s *Service) issuingCAs(ctx context.Context, cert *x509.Certificate) ([]CA, error) {
	all, err := s.store.ListCAs(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing CAs: %w", err)
	}
	var out []CA
	for _, ca := range all {
		if c, _, err := ParseCertificatePEM([]byte(ca.PEM)); err == nil && bytes.Equal(cert.RawIssuer, c.RawSubject) && cert.CheckSignatureFrom(c) == nil {
			out = append(out, ca)
		}
	}
	return out, nil
}

// BindCertificate binds a device certificate: the device may then connect
// on the TLS listener by presenting it, without a password. A certificate
// is bound to at most one device in the instance; one issued by a CA
// registered in another account is refused; one that is neither
// self-signed nor issued by a CA of the caller's account needs proof of
// possession of its key (a signed challenge).
func (s *Service) BindCertificate(ctx context.Context, p Principal, pk, dn string, in CertificateBinding) (Device, error) {
	if err := need(p, RoleOperator); err != nil {
		return Device{}, err
	}
	cert, fp, err := ParseCertificatePEM([]byte(in.CertificatePEM))
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
	if d.CertFingerprint == fp {
		return d, nil
	}
	d, err = s.bindCertificate(ctx, p, d, cert, fp, in)
	if err != nil {
		// A refused binding may be a hijack attempt: it is on the record.
		s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.certificate.bind", Target: pk + "/" + dn, Outcome: "refused", Reason: "sha256 " + fp + ": " + err.Error()})
	}
	return d, err
}

func (s *Service) bindCertificate(ctx context.Context, p Principal, d Device, cert *x509.Certificate, fp string, in CertificateBinding) (Device, error) {
	pk, dn := d.ProductKey, d.DeviceName
	if other, err := s.store.GetDeviceByFingerprint(ctx, fp); err == nil && (other.ProductKey != pk || other.DeviceName != dn) {
		return Device{}, fmt.Errorf("certificate sha256 %.16s… is bound to another device: %w", fp, ErrConflict)
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return Device{}, err
	}
	if rec, err := s.store.GetCertificate(ctx, fp); err == nil && (rec.ProductKey != pk || rec.DeviceName != dn) {
		return Device{}, fmt.Errorf("certificate sha256 %.16s… is recorded for another device: %w", fp, ErrConflict)
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return Device{}, err
	}
	cas, err := s.issuingCAs(ctx, cert)
	if err != nil {
		return Device{}, err
	}
	ownCA := false
	for _, ca := range cas {
		if ca.AccountID != p.AccountID {
			return Device{}, fmt.Errorf("certificate is issued by a CA registered in another account; it binds only to that account's devices: %w", ErrForbidden)
		}
		ownCA = true
	}
	proof := "self-signed"
	switch {
	case in.Signature != "" || in.Challenge != "":
		if err := s.checkChallenge(cert, pk, dn, in.Challenge, in.Signature); err != nil {
			return Device{}, err
		}
		proof = "signed challenge"
	case ownCA:
		proof = "issued by the account's CA"
	case !selfSigned(cert):
		return Device{}, invalid("signature", "the certificate is neither self-signed nor issued by a CA registered in this account: prove possession of its key with a signature of the challenge from GET /v1/products/%s/devices/%s/certificate/challenge", pk, dn)
	}
	previous := d.CertFingerprint
	d.CertFingerprint = fp
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return Device{}, fmt.Errorf("binding certificate to %s/%s: %w", pk, dn, err)
	}
	if previous != "" {
		s.notify(ctx, DeviceCredentialsChanged, d) // a session made with the old certificate ends
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.certificate.bind", Target: pk + "/" + dn, Outcome: "ok", Reason: "sha256 " + fp + " (" + proof + ")"})
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
