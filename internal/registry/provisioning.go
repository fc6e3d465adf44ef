package registry

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/audit"
)

// ReRegisterPolicy says what happens when a device registers again after
// its secret was handed out (register-or-query).
type ReRegisterPolicy string

// Re-registration policies.
const (
	// ReRegisterDeny refuses the second registration (Alibaba's rule).
	ReRegisterDeny ReRegisterPolicy = "deny"
	// ReRegisterReturn hands the existing secret back.
	ReRegisterReturn ReRegisterPolicy = "return"
	// ReRegisterRotate issues a new secret, revokes the old one and closes
	// the device's live session.
	ReRegisterRotate ReRegisterPolicy = "rotate"
)

// Provisioning is a product's registration settings.
type Provisioning struct {
	// ReRegister applies to every registration path; default deny.
	ReRegister ReRegisterPolicy `json:"reRegister,omitempty"`
	// Allow lists the rules of client-driven registration (POST
	// /v1/register): a device id must match one of the patterns. Empty
	// means any DeviceName is allowed (the token still must be right).
	Allow []string `json:"allow,omitempty" doc:"regular expressions a client-driven registration id must match (anchored)"`
	// HookURL, if set, is called synchronously before every registration
	// of the product; it answers allow, deny or allow with attributes.
	HookURL string `json:"hookUrl,omitempty"`
	// HookTimeoutMs bounds one hook call (default 2000).
	HookTimeoutMs int `json:"hookTimeoutMs,omitempty"`
	// HookFailOpen lets registrations through when the hook cannot be
	// reached or times out (default: deny).
	HookFailOpen bool `json:"hookFailOpen,omitempty"`
	// EventURLs receive registration events (succeeded, refused, rotated)
	// asynchronously, with retries.
	EventURLs []string `json:"eventUrls,omitempty"`
}

// MaxAllowRules bounds a product's allowlist.
const MaxAllowRules = 32

// Validate checks the settings.
func (pv Provisioning) Validate() error {
	switch pv.ReRegister {
	case "", ReRegisterDeny, ReRegisterReturn, ReRegisterRotate:
	default:
		return invalid("provisioning.reRegister", "must be deny, return or rotate")
	}
	if len(pv.Allow) > MaxAllowRules {
		return invalid("provisioning.allow", "at most %d rules", MaxAllowRules)
	}
	for i, r := range pv.Allow {
		if len(r) > 256 {
			return invalid(fmt.Sprintf("provisioning.allow[%d]", i), "at most 256 characters")
		}
		if _, err := regexp.Compile("^(?:" + r + ")$"); err != nil {
			return invalid(fmt.Sprintf("provisioning.allow[%d]", i), "not a regular expression: %v", err)
		}
	}
	for i, u := range append([]string{pv.HookURL}, pv.EventURLs...) {
		if u == "" && i == 0 {
			continue
		}
		field := "provisioning.hookUrl"
		if i > 0 {
			field = fmt.Sprintf("provisioning.eventUrls[%d]", i-1)
		}
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") || len(u) > 2048 {
			return invalid(field, "webhook URLs must be http(s) URLs of at most 2048 characters")
		}
	}
	if len(pv.EventURLs) > 8 {
		return invalid("provisioning.eventUrls", "at most 8")
	}
	if pv.HookTimeoutMs < 0 || pv.HookTimeoutMs > 30000 {
		return invalid("provisioning.hookTimeoutMs", "must be 0 to 30000")
	}
	return nil
}

// Policy returns the effective re-registration policy.
func (pv Provisioning) Policy() ReRegisterPolicy {
	if pv.ReRegister == "" {
		return ReRegisterDeny
	}
	return pv.ReRegister
}

// AllowsID reports whether an id matches the allowlist (an empty list allows all).
func (pv Provisioning) AllowsID(id string) bool {
	if len(pv.Allow) == 0 {
		return true
	}
	for _, r := range pv.Allow {
		if re, err := regexp.Compile("^(?:" + r + ")$"); err == nil && re.MatchString(id) {
			return true
		}
	}
	return false
}

// ProvisioningStore is the part of the store registration needs.
type ProvisioningStore interface {
	// IssueSecret marks a device's secret handed out; it reports false
	// when it already was (the caller lost the race or it is a replay).
	IssueSecret(ctx context.Context, pk, dn string) (bool, error)
	// SetDeviceSecret replaces a device's sealed secret and marks it issued.
	SetDeviceSecret(ctx context.Context, pk, dn string, sealed []byte) error
	// SetDeviceToken stores the hash of a registration-free device token.
	SetDeviceToken(ctx context.Context, pk, dn, clientID string, tokenHash []byte) error
	// DeviceToken returns the token's client id and hash.
	DeviceToken(ctx context.Context, pk, dn string) (clientID string, tokenHash []byte, err error)
	// RegistrationKey returns the sealed client-registration key of a product (nil if none).
	RegistrationKey(ctx context.Context, pk string) ([]byte, error)
	SetRegistrationKey(ctx context.Context, pk string, sealed []byte) error
	// UseRegistrationRandom records that a device's registration used
	// random at time at; it reports false when the same random was used
	// at or after since (a replay). It may return before the record is
	// durable: it is durable once a later write returns, or Flush.
	UseRegistrationRandom(ctx context.Context, pk, dn, random string, at, since time.Time) (bool, error)
	// Flush returns once every write made before it is durable.
	Flush(ctx context.Context) error
	// CreateRegisteredDevice records a registration's random and creates
	// the device it registers, both or neither, in one write: ErrReplayed
	// when the random was used at or after since, ErrConflict when the
	// device exists.
	CreateRegisteredDevice(ctx context.Context, d Device, random string, at, since time.Time) error
	// PruneRegistrationRandoms forgets randoms used before a time.
	PruneRegistrationRandoms(ctx context.Context, before time.Time) (int64, error)
}

// RandomWindow is how long a registration random is remembered: a signed
// registration request carrying one used within it is a replay.
const RandomWindow = 24 * time.Hour

// ErrReplayed means a signed request was seen before.
var ErrReplayed = errors.New("request replayed: its random was used before")

// useRandom accepts a registration's random once per device within
// RandomWindow; a second use is ErrReplayed. It forgets randoms older than
// the window about once a minute.
func (s *Service) useRandom(ctx context.Context, pk, dn, random string) error {
	now := s.nowUTC()
	fresh, err := s.store.UseRegistrationRandom(ctx, pk, dn, random, now, now.Add(-RandomWindow))
	if err != nil {
		return fmt.Errorf("remembering registration random of %s/%s: %w", pk, dn, err)
	}
	s.pruneRandoms(ctx, now)
	if !fresh {
		return fmt.Errorf("%s/%s: %w", pk, dn, ErrReplayed)
	}
	return nil
}

// pruneRandoms forgets randoms older than the window, about once a minute.
func (s *Service) pruneRandoms(ctx context.Context, now time.Time) {
	if last := s.pruned.Load(); now.UnixMilli()-last >= time.Minute.Milliseconds() && s.pruned.CompareAndSwap(last, now.UnixMilli()) {
		if _, err := s.store.PruneRegistrationRandoms(ctx, now.Add(-RandomWindow)); err != nil {
			s.log.Warn("pruning registration randoms", "err", err)
		}
	}
}

// ErrAlreadyIssued means a device's secret was handed out before and the
// product's policy refuses to hand it out again.
var ErrAlreadyIssued = errors.New("device already registered; its secret was handed out before")

// ErrDistributed refuses registering a device a distribution job moved to
// another instance: its secret is not handed out at its old instance (it
// bootstraps to find its new one).
var ErrDistributed = fmt.Errorf("device distributed to another instance; bootstrap again: %w", ErrForbidden)

// Registration is what a registration path asks of the registry.
type Registration struct {
	Product    Product
	DeviceName string
	// Create allows creating an unknown DeviceName (auto mode).
	Create     bool
	Attributes map[string]string
	// Random is a signed request's random ("" for unsigned paths): good
	// once per device within RandomWindow, so a captured request can
	// neither read the secret back nor rotate it (ErrReplayed).
	Random string
}

// RegisterOutcome says what a registration did.
type RegisterOutcome string

// Outcomes.
const (
	OutcomeCreated  RegisterOutcome = "created"  // new device
	OutcomeIssued   RegisterOutcome = "issued"   // pre-created device, secret handed out the first time
	OutcomeReturned RegisterOutcome = "returned" // re-registration, existing secret returned
	OutcomeRotated  RegisterOutcome = "rotated"  // re-registration, new secret, old revoked
)

// Register hands a device its triple: it creates the device (when allowed)
// or issues its secret once, applying the product's re-registration policy
// to a device whose secret was handed out before. The answer is durable
// before it is returned.
func (s *Service) Register(ctx context.Context, r Registration) (Device, RegisterOutcome, error) {
	if err := ValidateDeviceName(r.DeviceName); err != nil {
		return Device{}, "", err
	}
	pk, dn := r.Product.ProductKey, r.DeviceName
	if r.Create {
		// Try the insert first: for a new device (the common case in auto
		// mode) that is the only store round trip; a conflict means it
		// exists, and the existing-device rules below apply.
		nd, err := s.newDevice(r.Product, DeviceInput{DeviceName: dn, Attributes: r.Attributes}, s.nowUTC())
		if err != nil {
			return Device{}, "", err
		}
		nd.SecretIssued = true
		if r.Random != "" {
			// The random and the new device in one write: the common case
			// costs one store round trip.
			now := s.nowUTC()
			err = s.store.CreateRegisteredDevice(ctx, nd, r.Random, now, now.Add(-RandomWindow))
			s.pruneRandoms(ctx, now)
		} else {
			err = s.store.CreateDevices(ctx, []Device{nd})
		}
		if errors.Is(err, ErrReplayed) {
			return Device{}, "", fmt.Errorf("%s/%s: %w", pk, dn, err)
		}
		if err == nil {
			nd.SealedSecret = nil
			s.notify(ctx, DeviceCreated, nd)
			return nd, OutcomeCreated, nil
		}
		if !errors.Is(err, ErrConflict) {
			return Device{}, "", fmt.Errorf("registering %s/%s: %w", pk, dn, err)
		}
	}
	d, err := s.LookupDevice(ctx, pk, dn)
	if err != nil {
		return Device{}, "", err
	}
	if r.Random != "" {
		// Recorded before anything is handed out; durable with the write
		// below, or the flush when there is none.
		if err := s.useRandom(ctx, pk, dn, r.Random); err != nil {
			return Device{}, "", err
		}
	}
	if d.Status == StatusDisabled {
		return Device{}, "", fmt.Errorf("device %s/%s is disabled: %w", pk, dn, ErrForbidden)
	}
	// The mark is read by GetDeviceAuth only; an existing device's
	// registration is the rare path, so the second read costs little.
	if a, err := s.store.GetDeviceAuth(ctx, pk, dn); err != nil {
		return Device{}, "", fmt.Errorf("device %s/%s: %w", pk, dn, err)
	} else if a.DistributedTo != "" {
		return Device{}, "", fmt.Errorf("%s/%s: %w", pk, dn, ErrDistributed)
	}
	if !d.SecretIssued {
		first, err := s.store.IssueSecret(ctx, pk, dn)
		if err != nil {
			return Device{}, "", fmt.Errorf("issuing secret of %s/%s: %w", pk, dn, err)
		}
		if first {
			d.SecretIssued = true
			return d, OutcomeIssued, nil
		}
	}
	switch r.Product.Provisioning.Policy() {
	case ReRegisterReturn:
		// Nothing is written, but the request's random must be durable
		// before the secret goes out, or a replay after a crash would work.
		if err := s.store.Flush(ctx); err != nil {
			return Device{}, "", fmt.Errorf("registering %s/%s: %w", pk, dn, err)
		}
		return d, OutcomeReturned, nil
	case ReRegisterRotate:
		nd, err := s.RotateSecret(ctx, pk, dn)
		return nd, OutcomeRotated, err
	}
	return Device{}, "", fmt.Errorf("%s/%s: %w", pk, dn, ErrAlreadyIssued)
}

// RotateSecret gives a device a new secret, revoking the old one and
// closing a session made with it.
func (s *Service) RotateSecret(ctx context.Context, pk, dn string) (Device, error) {
	d, err := s.store.GetDevice(ctx, pk, dn)
	if err != nil {
		return Device{}, fmt.Errorf("device %s/%s: %w", pk, dn, err)
	}
	secret, err := randString(s.rand, DeviceSecretLen)
	if err != nil {
		return Device{}, err
	}
	sealed, err := s.box.Seal([]byte(secret), deviceAAD(pk, dn))
	if err != nil {
		return Device{}, fmt.Errorf("sealing device secret: %w", err)
	}
	if err := s.store.SetDeviceSecret(ctx, pk, dn, sealed); err != nil {
		return Device{}, fmt.Errorf("rotating secret of %s/%s: %w", pk, dn, err)
	}
	d.SealedSecret, d.DeviceSecret, d.SecretIssued = nil, secret, true
	s.notify(ctx, DeviceCredentialsChanged, d)
	s.record(ctx, audit.Entry{AccountID: d.AccountID, Actor: "registration", Action: "device.secret.rotate", Target: pk + "/" + dn, Outcome: "ok"})
	return d, nil
}

func tokenHash(clientID, token string) []byte {
	h := sha256.Sum256([]byte(clientID + "\x00" + token))
	return h[:]
}

// IssueToken gives a registration-free device (MQTT regnwl) a client id
// and a device token for its connwl CONNECTs; only the hash is kept.
func (s *Service) IssueToken(ctx context.Context, pk, dn string) (clientID, token string, err error) {
	suffix, err := randString(s.rand, 8)
	if err != nil {
		return "", "", err
	}
	token, err = randString(s.rand, 32)
	if err != nil {
		return "", "", err
	}
	clientID = pk + "." + dn + "." + suffix
	if err := s.store.SetDeviceToken(ctx, pk, dn, clientID, tokenHash(clientID, token)); err != nil {
		return "", "", fmt.Errorf("storing token of %s/%s: %w", pk, dn, err)
	}
	return clientID, token, nil
}

// VerifyToken checks a connwl CONNECT's client id and token in constant time.
func (s *Service) VerifyToken(ctx context.Context, pk, dn, clientID, token string) (bool, error) {
	cid, hash, err := s.store.DeviceToken(ctx, pk, dn)
	if err != nil {
		return false, err
	}
	if len(hash) == 0 || cid != clientID {
		return false, nil
	}
	return subtle.ConstantTimeCompare(hash, tokenHash(clientID, token)) == 1, nil
}

func registrationKeyAAD(pk string) []byte { return []byte("regkey:" + pk) }

// RegistrationKey returns (creating it on first use) a product's key for
// client-driven registration tokens: token = hex(HMAC-SHA256(key, id)), so
// each device carries a token for its own id and no fleet-wide secret.
func (s *Service) RegistrationKey(ctx context.Context, p Principal, pk string) (string, error) {
	if err := need(p, RoleAdmin); err != nil {
		return "", err
	}
	if _, _, err := s.product(ctx, p, pk); err != nil {
		return "", err
	}
	key, err := s.registrationKey(ctx, pk, true)
	if err == nil {
		s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "product.registrationkey.read", Target: pk, Outcome: "ok"})
	}
	return key, err
}

// LookupRegistrationKey returns a product's registration key, or "" if it has none.
func (s *Service) LookupRegistrationKey(ctx context.Context, pk string) (string, error) {
	return s.registrationKey(ctx, pk, false)
}

func (s *Service) registrationKey(ctx context.Context, pk string, create bool) (string, error) {
	sealed, err := s.store.RegistrationKey(ctx, pk)
	if err != nil {
		return "", fmt.Errorf("registration key of %s: %w", pk, err)
	}
	if len(sealed) > 0 {
		k, err := s.box.Open(sealed, registrationKeyAAD(pk))
		if err != nil {
			return "", fmt.Errorf("opening registration key of %s: %w", pk, err)
		}
		return string(k), nil
	}
	if !create {
		return "", nil
	}
	key, err := randString(s.rand, 40)
	if err != nil {
		return "", err
	}
	sealed, err = s.box.Seal([]byte(key), registrationKeyAAD(pk))
	if err != nil {
		return "", err
	}
	if err := s.store.SetRegistrationKey(ctx, pk, sealed); err != nil {
		return "", fmt.Errorf("storing registration key of %s: %w", pk, err)
	}
	return s.registrationKey(ctx, pk, false) // a concurrent caller may have won

}
