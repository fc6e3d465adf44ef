package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/corral-iot/corral/internal/audit"
)

// CA is a certificate authority an account registered so that devices
// holding certificates it signed can provision themselves.
type CA struct {
	ID          string     `json:"id"`
	AccountID   string     `json:"-"`
	Fingerprint string     `json:"fingerprint"`
	PEM         string     `json:"certificatePem"`
	Subject     string     `json:"subject"`
	Status      CertStatus `json:"status"`
	Mode        JITMode    `json:"mode"`
	Template    CATemplate `json:"template"`
	CreatedAt   time.Time  `json:"createdAt"`
}

// JITMode is what happens when an unknown certificate signed by a CA connects.
type JITMode string

// Modes.
const (
	// JITR records the certificate as pending, refuses the connection and
	// fires an event; an operator (or the product's hook) activates it.
	JITR JITMode = "jitr"
	// JITP creates and activates the device on the spot.
	JITP JITMode = "jitp"
)

// CATemplate says where devices of a CA go and how they are named.
type CATemplate struct {
	ProductKey string            `json:"productKey"`
	NameFrom   string            `json:"nameFrom,omitempty" doc:"cn (default) or serial: the certificate field that becomes the DeviceName"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// CertStatus is the state of a CA or device certificate.
type CertStatus string

// Certificate statuses.
const (
	CertActive  CertStatus = "active"
	CertPending CertStatus = "pending"
	CertRevoked CertStatus = "revoked"
)

// Certificate is a device certificate issued by a registered CA.
type Certificate struct {
	Fingerprint string     `json:"fingerprint"`
	AccountID   string     `json:"-"`
	CAID        string     `json:"caId"`
	ProductKey  string     `json:"productKey"`
	DeviceName  string     `json:"deviceName"`
	Subject     string     `json:"subject"`
	Status      CertStatus `json:"status"`
	CreatedAt   time.Time  `json:"createdAt"`
}

// CAStore persists CAs and device certificates.
type CAStore interface {
	CreateCA(ctx context.Context, ca CA) error
	GetCA(ctx context.Context, id string) (CA, error)
	ListCAs(ctx context.Context, accountID string) ([]CA, error) // "" lists all accounts'
	SetCAStatus(ctx context.Context, id string, st CertStatus) error
	RegistrationCode(ctx context.Context, accountID string) (string, error)
	SetRegistrationCode(ctx context.Context, accountID, code string) error
	// PutCertificate inserts or replaces a device certificate record.
	PutCertificate(ctx context.Context, c Certificate) error
	GetCertificate(ctx context.Context, fingerprint string) (Certificate, error)
	ListCertificates(ctx context.Context, accountID string, status CertStatus) ([]Certificate, error)
}

// ErrProofOfPossession means the verification certificate does not prove
// control of the CA's key for this account.
var ErrProofOfPossession = errors.New("verification certificate does not prove possession of the CA key")

// CARegistrationCode returns the account's code for proof of possession:
// the verification certificate must carry it as its Common Name and be
// signed by the CA being registered.
func (s *Service) CARegistrationCode(ctx context.Context, p Principal) (string, error) {
	if err := need(p, RoleAdmin); err != nil {
		return "", err
	}
	code, err := s.store.RegistrationCode(ctx, p.AccountID)
	if err == nil && code != "" {
		return code, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	code, err = randString(s.rand, 40)
	if err != nil {
		return "", err
	}
	if err := s.store.SetRegistrationCode(ctx, p.AccountID, code); err != nil {
		return "", fmt.Errorf("storing registration code: %w", err)
	}
	return code, nil
}

// CAInput registers a CA.
type CAInput struct {
	CertificatePEM  string     `json:"certificatePem"`
	VerificationPEM string     `json:"verificationCertificatePem" doc:"a certificate signed by the CA whose Common Name is the account's registration code"`
	Mode            JITMode    `json:"mode,omitempty" doc:"jitr (default) or jitp"`
	Template        CATemplate `json:"template"`
}

// RegisterCA registers a CA after checking proof of possession.
func (s *Service) RegisterCA(ctx context.Context, p Principal, in CAInput) (CA, error) {
	if err := need(p, RoleAdmin); err != nil {
		return CA{}, err
	}
	caCert, fp, err := ParseCertificatePEM([]byte(in.CertificatePEM))
	if err != nil {
		return CA{}, invalid("certificatePem", "%s", err.(*ValidationError).Reason)
	}
	if !caCert.IsCA || !caCert.BasicConstraintsValid {
		return CA{}, invalid("certificatePem", "is not a CA certificate (basic constraints CA:TRUE)")
	}
	if s.now().After(caCert.NotAfter) {
		return CA{}, invalid("certificatePem", "expired")
	}
	ver, _, err := ParseCertificatePEM([]byte(in.VerificationPEM))
	if err != nil {
		return CA{}, invalid("verificationCertificatePem", "%s", err.(*ValidationError).Reason)
	}
	code, err := s.store.RegistrationCode(ctx, p.AccountID)
	if err != nil || code == "" {
		return CA{}, invalid("verificationCertificatePem", "get the account's registration code first (GET /v1/cas/registration-code)")
	}
	if ver.Subject.CommonName != code {
		return CA{}, &ValidationError{Field: "verificationCertificatePem", Reason: "its Common Name is not this account's registration code, so it does not prove possession of the CA key", Cause: ErrProofOfPossession}
	}
	if err := ver.CheckSignatureFrom(caCert); err != nil {
		return CA{}, &ValidationError{Field: "verificationCertificatePem", Reason: "not signed by the CA, so it does not prove possession of the CA key", Cause: ErrProofOfPossession}
	}
	if in.Mode == "" {
		in.Mode = JITR
	}
	if in.Mode != JITR && in.Mode != JITP {
		return CA{}, invalid("mode", "must be jitr or jitp")
	}
	switch in.Template.NameFrom {
	case "":
		in.Template.NameFrom = "cn"
	case "cn", "serial":
	default:
		return CA{}, invalid("template.nameFrom", "must be cn or serial")
	}
	if err := ValidateAttributes("template.attributes", in.Template.Attributes); err != nil {
		return CA{}, err
	}
	if _, _, err := s.product(ctx, p, in.Template.ProductKey); err != nil {
		return CA{}, invalid("template.productKey", "no such product in this account")
	}
	id, err := randString(s.rand, 16)
	if err != nil {
		return CA{}, err
	}
	ca := CA{ID: "ca" + id, AccountID: p.AccountID, Fingerprint: fp, PEM: in.CertificatePEM, Subject: caCert.Subject.String(),
		Status: CertActive, Mode: in.Mode, Template: in.Template, CreatedAt: s.nowUTC()}
	if err := s.store.CreateCA(ctx, ca); err != nil {
		return CA{}, fmt.Errorf("registering CA: %w", err)
	}
	s.notifyProduct(ctx, ProductCAsChanged, ca.Template.ProductKey)
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "ca.register", Target: ca.ID, Outcome: "ok", Reason: "sha256 " + fp})
	return ca, nil
}

// ListCAs lists the account's CAs.
func (s *Service) ListCAs(ctx context.Context, p Principal) ([]CA, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	return s.store.ListCAs(ctx, p.AccountID)
}

// ActiveCAs lists every account's active CAs, for TLS authentication.
func (s *Service) ActiveCAs(ctx context.Context) ([]CA, error) {
	all, err := s.store.ListCAs(ctx, "")
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, ca := range all {
		if ca.Status == CertActive {
			out = append(out, ca)
		}
	}
	return out, nil
}

// RevokeCA revokes a CA: no certificate it signed connects any more.
func (s *Service) RevokeCA(ctx context.Context, p Principal, id string) (CA, error) {
	if err := need(p, RoleAdmin); err != nil {
		return CA{}, err
	}
	ca, err := s.store.GetCA(ctx, id)
	if err != nil || ca.AccountID != p.AccountID {
		return CA{}, fmt.Errorf("CA %q: %w", id, ErrNotFound)
	}
	if err := s.store.SetCAStatus(ctx, id, CertRevoked); err != nil {
		return CA{}, err
	}
	ca.Status = CertRevoked
	s.notifyProduct(ctx, ProductCAsChanged, ca.Template.ProductKey)
	for _, c := range s.certsOfCA(ctx, ca) {
		d := Device{AccountID: c.AccountID, ProductKey: c.ProductKey, DeviceName: c.DeviceName}
		s.notify(ctx, DeviceCredentialsChanged, d)
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "ca.revoke", Target: id, Outcome: "ok"})
	return ca, nil
}

func (s *Service) certsOfCA(ctx context.Context, ca CA) []Certificate {
	var out []Certificate
	cs, _ := s.store.ListCertificates(ctx, ca.AccountID, CertActive)
	for _, c := range cs {
		if c.CAID == ca.ID {
			out = append(out, c)
		}
	}
	return out
}

// ListCertificates lists the account's device certificates of a status ("" all).
func (s *Service) ListCertificates(ctx context.Context, p Principal, st CertStatus) ([]Certificate, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	return s.store.ListCertificates(ctx, p.AccountID, st)
}

// LookupCertificate returns a device certificate record (any account).
func (s *Service) LookupCertificate(ctx context.Context, fp string) (Certificate, error) {
	return s.store.GetCertificate(ctx, fp)
}

// RecordCertificate stores a device certificate record (provisioning).
func (s *Service) RecordCertificate(ctx context.Context, c Certificate) error {
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.nowUTC()
	}
	return s.store.PutCertificate(ctx, c)
}

// LookupCA returns a CA (any account).
func (s *Service) LookupCA(ctx context.Context, id string) (CA, error) { return s.store.GetCA(ctx, id) }

// SetCertificateStatus activates or revokes a device certificate of the
// caller's account; activation creates the device if needed and binds the
// certificate, revocation closes its session.
func (s *Service) SetCertificateStatus(ctx context.Context, p Principal, fp string, st CertStatus) (Certificate, error) {
	if err := need(p, RoleOperator); err != nil {
		return Certificate{}, err
	}
	c, err := s.store.GetCertificate(ctx, fp)
	if err != nil || c.AccountID != p.AccountID {
		return Certificate{}, fmt.Errorf("certificate %.16s…: %w", fp, ErrNotFound)
	}
	switch st {
	case CertActive:
		// An operator's activation is explicit: it may replace the
		// device's certificate, and a session made with the old one ends.
		previous, err := s.activateCertificate(ctx, c, nil, true)
		if err != nil {
			return Certificate{}, err
		}
		if previous != "" {
			s.notify(ctx, DeviceCredentialsChanged, Device{AccountID: c.AccountID, ProductKey: c.ProductKey, DeviceName: c.DeviceName})
		}
	case CertRevoked:
		c.Status = CertRevoked
		if err := s.store.PutCertificate(ctx, c); err != nil {
			return Certificate{}, err
		}
		s.notify(ctx, DeviceCredentialsChanged, Device{AccountID: c.AccountID, ProductKey: c.ProductKey, DeviceName: c.DeviceName})
	default:
		return Certificate{}, invalid("status", "must be active or revoked")
	}
	c.Status = st
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "certificate." + string(st), Target: c.ProductKey + "/" + c.DeviceName, Outcome: "ok", Reason: "sha256 " + fp})
	return c, nil
}

// ErrCertificateInUse means a device already has another certificate
// (or the certificate is bound to another device): provisioning leaves
// the new one pending rather than replace it. It is an ErrConflict.
var ErrCertificateInUse = fmt.Errorf("the device has another certificate, or the certificate is bound to another device: %w", ErrConflict)

// ActivateCertificate creates the certificate's device if it does not
// exist, binds the certificate to it and marks the certificate active.
// It never replaces a certificate the device already has
// (ErrCertificateInUse): just-in-time provisioning must not take a device
// over silently.
func (s *Service) ActivateCertificate(ctx context.Context, c Certificate, attrs map[string]string) error {
	_, err := s.activateCertificate(ctx, c, attrs, false)
	return err
}

// activateCertificate is ActivateCertificate; replace lets an operator's
// explicit activation replace the device's certificate. It reports the
// certificate it replaced.
func (s *Service) activateCertificate(ctx context.Context, c Certificate, attrs map[string]string, replace bool) (string, error) {
	prod, _, err := s.store.GetProduct(ctx, c.ProductKey)
	if err != nil {
		return "", fmt.Errorf("product %s: %w", c.ProductKey, err)
	}
	if prod.AccountID != c.AccountID {
		return "", fmt.Errorf("product %s is not in the CA's account: %w", c.ProductKey, ErrNotFound)
	}
	if other, err := s.store.GetDeviceByFingerprint(ctx, c.Fingerprint); err == nil && (other.ProductKey != c.ProductKey || other.DeviceName != c.DeviceName) {
		return "", fmt.Errorf("certificate sha256 %.16s…: %w", c.Fingerprint, ErrCertificateInUse)
	}
	d, err := s.store.GetDevice(ctx, c.ProductKey, c.DeviceName)
	if errors.Is(err, ErrNotFound) {
		nd, err := s.newDevice(prod, DeviceInput{DeviceName: c.DeviceName, Attributes: attrs}, s.nowUTC())
		if err != nil {
			return "", err
		}
		nd.CertFingerprint = c.Fingerprint
		if err := s.store.CreateDevices(ctx, []Device{nd}); err != nil && !errors.Is(err, ErrConflict) {
			return "", fmt.Errorf("creating device for certificate: %w", err)
		}
		if d, err = s.store.GetDevice(ctx, c.ProductKey, c.DeviceName); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	previous := ""
	if d.CertFingerprint != c.Fingerprint {
		if d.CertFingerprint != "" && !replace {
			return "", fmt.Errorf("device %s/%s: %w", c.ProductKey, c.DeviceName, ErrCertificateInUse)
		}
		previous = d.CertFingerprint
		d.CertFingerprint = c.Fingerprint
		if err := s.store.UpdateDevice(ctx, d); err != nil {
			return "", fmt.Errorf("binding certificate: %w", err)
		}
	}
	c.Status = CertActive
	return previous, s.store.PutCertificate(ctx, c)
}

// DeviceNameFromCert derives a DeviceName from a certificate per template.
func DeviceNameFromCert(cert *x509.Certificate, nameFrom string) (string, error) {
	name := cert.Subject.CommonName
	if nameFrom == "serial" {
		name = cert.SerialNumber.Text(16)
		if cert.Subject.SerialNumber != "" {
			name = cert.Subject.SerialNumber
		}
	}
	if err := ValidateDeviceName(name); err != nil {
		return "", fmt.Errorf("certificate %s does not make a valid DeviceName: %w", nameFrom, err)
	}
	return name, nil
}
