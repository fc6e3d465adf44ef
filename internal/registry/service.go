package registry

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/pending"
)

// Store is the persistence port of the registry. Adapters live under
// internal/store and all pass store/storetest.
type Store interface {
	CreateAccount(ctx context.Context, a Account) error
	GetAccount(ctx context.Context, id string) (Account, error)
	ListAccounts(ctx context.Context) ([]Account, error)

	CreateProduct(ctx context.Context, p Product, sealedSecret []byte) error
	// GetProduct returns the product and its sealed secret.
	GetProduct(ctx context.Context, pk string) (Product, []byte, error)
	ListProducts(ctx context.Context, accountID, after string, limit int) ([]Product, error)
	UpdateProduct(ctx context.Context, p Product) error
	// DeleteProduct deletes the product and all its devices.
	DeleteProduct(ctx context.Context, pk string) error

	// CreateDevices inserts all devices or none; a duplicate yields an
	// error wrapping ErrConflict that names the DeviceName.
	CreateDevices(ctx context.Context, ds []Device) error
	GetDevice(ctx context.Context, pk, dn string) (Device, error)
	GetDeviceByFingerprint(ctx context.Context, fingerprint string) (Device, error)
	// GetDeviceByThingName finds a device by its explicit thing name
	// (default names are found with GetDevice).
	GetDeviceByThingName(ctx context.Context, name string) (Device, error)
	// GetDeviceAuth reads only what authenticating a CONNECT needs:
	// account, status, thing name, sealed secret and the instance the
	// device was distributed to.
	GetDeviceAuth(ctx context.Context, pk, dn string) (Device, error)
	ListDevices(ctx context.Context, f DeviceFilter) ([]Device, error)
	// UpdateDevice writes nickname, thing name, attributes, secret-issued
	// and certificate fingerprint of an existing device. It never writes
	// status or online times: presence (ApplyPresence) and SetDeviceDisabled
	// own them, so an update made from a device read earlier cannot undo a
	// session's start or end, or a disable, that came in between. Stores
	// keep a thing name only when it is explicit (ExplicitThingName), unique
	// across the instance: a taken one is an ErrConflict that says so.
	UpdateDevice(ctx context.Context, d Device) error
	// SetDeviceDisabled disables a device, or enables a disabled one
	// (offline if it was ever online, else inactive), in one statement, and
	// returns the status it leaves.
	SetDeviceDisabled(ctx context.Context, pk, dn string, disabled bool) (Status, error)
	DeleteDevice(ctx context.Context, pk, dn string) error

	CreateAPIKey(ctx context.Context, k APIKey) error
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	ListAPIKeys(ctx context.Context, accountID string) ([]APIKey, error)
	// DeleteAPIKey and SetAPIKeyRole refuse, with ErrLastAdmin, to leave
	// the key's account without an admin key; the check and the write are
	// one transaction.
	DeleteAPIKey(ctx context.Context, id string) error
	SetAPIKeyRole(ctx context.Context, id string, role Role) error

	Stats(ctx context.Context) (Stats, error)

	PresenceStore
	DistributionStore
	ProvisioningStore
	CAStore
	TopologyStore
	ThingStore
	TopicClassStore
	DesiredStore
	ConfigStore
	FoundStore
}

// SecretBox encrypts secrets at rest. The additional data binds a sealed
// secret to the object it belongs to.
type SecretBox interface {
	Seal(plaintext, additional []byte) ([]byte, error)
	Open(sealed, additional []byte) ([]byte, error)
}

// Auditor records security-relevant actions.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry)
}

// DeviceEventKind says what happened to a device.
type DeviceEventKind string

// Device event kinds.
const (
	DeviceCreated  DeviceEventKind = "created"
	DeviceDeleted  DeviceEventKind = "deleted"
	DeviceEnabled  DeviceEventKind = "enabled"
	DeviceDisabled DeviceEventKind = "disabled"
	// DeviceCredentialsChanged: its secret or certificate changed, so a
	// live session made with the old one must end.
	DeviceCredentialsChanged DeviceEventKind = "credentials_changed"
	// DeviceRenamed: its thing name changed, so a live session's topic
	// rights changed.
	DeviceRenamed DeviceEventKind = "renamed"
)

// Observer is told about device changes made through the registry, e.g. so
// the broker can close a disabled device's session.
type Observer interface {
	DeviceChanged(ctx context.Context, kind DeviceEventKind, d Device)
}

// KeyEventKind says what happened to an API key.
type KeyEventKind string

// API key event kinds.
const (
	KeyDeleted     KeyEventKind = "deleted"
	KeyRoleChanged KeyEventKind = "role_changed"
)

// KeyObserver is told about API key changes, e.g. so the broker can close
// the MQTT sessions of a key that was deleted or lost rights. Observers
// that implement it besides Observer are told.
type KeyObserver interface {
	APIKeyChanged(ctx context.Context, kind KeyEventKind, k APIKey)
}

// ErrLastAdmin means the change would leave an account without an admin
// key (and so locked out of its own keys); it is an ErrConflict.
var ErrLastAdmin = fmt.Errorf("an account keeps at least one admin key; make another admin first: %w", ErrConflict)

// Options configure a Service.
type Options struct {
	Store     Store
	Box       SecretBox
	Auditor   Auditor    // optional
	Observers []Observer // optional
	Rand      io.Reader  // defaults to crypto/rand
	Now       func() time.Time
	Logger    *slog.Logger
	// URLPolicy, if set, checks the webhook URLs a product is given.
	URLPolicy URLPolicy
}

// URLPolicy checks a webhook URL when it is configured (the address it
// resolves to is checked again when it is called).
type URLPolicy interface {
	CheckURL(rawURL string) error
}

// Service implements the registry's operations with their access rules.
type Service struct {
	store     Store
	box       SecretBox
	audit     Auditor
	observers []Observer
	products  []ProductObserver
	desired   []DesiredObserver
	pruned    atomic.Int64 // unix ms of the last prune of registration randoms
	rand      io.Reader
	now       func() time.Time
	log       *slog.Logger
	urls      URLPolicy

	// undelivered: devices that may hold desired values they have not
	// acknowledged (desired.go), loaded by the first question.
	undelivered     *pending.Index
	undeliveredLoad sync.Mutex
}

// New returns a Service.
func New(o Options) *Service {
	s := &Service{store: o.Store, box: o.Box, audit: o.Auditor, observers: o.Observers, rand: o.Rand, now: o.Now, log: o.Logger, urls: o.URLPolicy,
		undelivered: pending.New()}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// AddObserver registers an observer of device changes.
func (s *Service) AddObserver(o Observer) { s.observers = append(s.observers, o) }

func (s *Service) notify(ctx context.Context, kind DeviceEventKind, d Device) {
	d.DeviceSecret = ""
	for _, o := range s.observers {
		o.DeviceChanged(ctx, kind, d)
	}
}

func (s *Service) notifyKey(ctx context.Context, kind KeyEventKind, k APIKey) {
	k.Secret, k.Hash = "", nil
	for _, o := range s.observers {
		if ko, ok := o.(KeyObserver); ok {
			ko.APIKeyChanged(ctx, kind, k)
		}
	}
}

func (s *Service) record(ctx context.Context, e audit.Entry) {
	if s.audit != nil {
		s.audit.Record(ctx, e)
	}
}

func (s *Service) nowUTC() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

func need(p Principal, r Role) error {
	if !p.Role.Allows(r) {
		return fmt.Errorf("role %s may not do this (needs %s): %w", p.Role, r, ErrForbidden)
	}
	return nil
}

// DefaultAccountID is the account created on first start.
const DefaultAccountID = "default"

// Bootstrap creates the default account and its first admin key, a system
// administrator, when the registry is empty. It returns nil when there was
// nothing to do.
func (s *Service) Bootstrap(ctx context.Context) (*APIKey, error) {
	accts, err := s.store.ListAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("bootstrapping: %w", err)
	}
	if len(accts) > 0 {
		return nil, nil
	}
	a := Account{ID: DefaultAccountID, Name: "default", CreatedAt: s.nowUTC()}
	if err := s.store.CreateAccount(ctx, a); err != nil {
		return nil, fmt.Errorf("bootstrapping: %w", err)
	}
	k, err := s.newKey(ctx, a.ID, "bootstrap admin", RoleAdmin, true)
	if err != nil {
		return nil, fmt.Errorf("bootstrapping: %w", err)
	}
	return &k, nil
}

// --- accounts ---

// CreateAccount creates an account and its first admin key (system administrators only).
func (s *Service) CreateAccount(ctx context.Context, p Principal, name string) (Account, APIKey, error) {
	if !p.SystemAdmin {
		return Account{}, APIKey{}, fmt.Errorf("only a system administrator may create accounts: %w", ErrForbidden)
	}
	if err := validateText("name", name, MaxNameLen, true); err != nil {
		return Account{}, APIKey{}, err
	}
	id, err := randString(s.rand, 12)
	if err != nil {
		return Account{}, APIKey{}, err
	}
	a := Account{ID: "acc" + id, Name: name, CreatedAt: s.nowUTC()}
	if err := s.store.CreateAccount(ctx, a); err != nil {
		return Account{}, APIKey{}, fmt.Errorf("creating account: %w", err)
	}
	k, err := s.newKey(ctx, a.ID, "initial admin", RoleAdmin, false)
	if err != nil {
		return Account{}, APIKey{}, err
	}
	return a, k, nil
}

// ListAccounts lists all accounts (system administrators only).
func (s *Service) ListAccounts(ctx context.Context, p Principal) ([]Account, error) {
	if !p.SystemAdmin {
		return nil, fmt.Errorf("only a system administrator may list accounts: %w", ErrForbidden)
	}
	return s.store.ListAccounts(ctx)
}

// Account returns the caller's own account.
func (s *Service) Account(ctx context.Context, p Principal) (Account, error) {
	return s.store.GetAccount(ctx, p.AccountID)
}

// --- API keys ---

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func (s *Service) newKey(ctx context.Context, account, name string, role Role, system bool) (APIKey, error) {
	id, err := randString(s.rand, 16)
	if err != nil {
		return APIKey{}, err
	}
	secret, err := randString(s.rand, 40)
	if err != nil {
		return APIKey{}, err
	}
	k := APIKey{ID: "ck" + id, AccountID: account, Name: name, Role: role, SystemAdmin: system, CreatedAt: s.nowUTC(), Hash: hashSecret(secret)}
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return APIKey{}, fmt.Errorf("creating API key: %w", err)
	}
	k.Secret = secret
	k.Hash = nil
	return k, nil
}

// CreateAPIKey creates a key in the caller's account (admins only). The
// returned key carries its secret; it is never shown again.
func (s *Service) CreateAPIKey(ctx context.Context, p Principal, name string, role Role) (APIKey, error) {
	if err := need(p, RoleAdmin); err != nil {
		return APIKey{}, err
	}
	if err := validateText("name", name, MaxNameLen, false); err != nil {
		return APIKey{}, err
	}
	if role == "" {
		role = RoleReadonly
	}
	if role.rank() == 0 {
		return APIKey{}, invalid("role", "must be admin, operator or readonly")
	}
	k, err := s.newKey(ctx, p.AccountID, name, role, false)
	if err != nil {
		return APIKey{}, err
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "apikey.create", Target: k.ID, Outcome: "ok"})
	return k, nil
}

// ListAPIKeys lists the caller's account's keys, without secrets.
func (s *Service) ListAPIKeys(ctx context.Context, p Principal) ([]APIKey, error) {
	if err := need(p, RoleAdmin); err != nil {
		return nil, err
	}
	return s.store.ListAPIKeys(ctx, p.AccountID)
}

// key returns a key of the caller's account (admins only).
func (s *Service) key(ctx context.Context, p Principal, id string) (APIKey, error) {
	if err := need(p, RoleAdmin); err != nil {
		return APIKey{}, err
	}
	k, err := s.store.GetAPIKey(ctx, id)
	if err != nil {
		return APIKey{}, fmt.Errorf("API key %q: %w", id, err)
	}
	if k.AccountID != p.AccountID {
		return APIKey{}, fmt.Errorf("API key %q: %w", id, ErrNotFound)
	}
	k.Hash = nil
	return k, nil
}

// DeleteAPIKey deletes a key of the caller's account, and closes its
// sessions; the account's last admin key stays (ErrLastAdmin).
func (s *Service) DeleteAPIKey(ctx context.Context, p Principal, id string) error {
	k, err := s.key(ctx, p, id)
	if err != nil {
		return err
	}
	if err := s.store.DeleteAPIKey(ctx, id); err != nil {
		if errors.Is(err, ErrLastAdmin) {
			s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "apikey.delete", Target: id, Outcome: "denied", Reason: "last admin key"})
		}
		return fmt.Errorf("deleting API key %q: %w", id, err)
	}
	s.notifyKey(ctx, KeyDeleted, k)
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "apikey.delete", Target: id, Outcome: "ok"})
	return nil
}

// APIKeyPatch changes a key; nil fields stay as they are.
type APIKeyPatch struct {
	Role *Role `json:"role,omitempty" doc:"admin, operator or readonly"`
}

// UpdateAPIKey changes a key of the caller's account (admins only,
// audited). A changed role closes the key's live sessions, which
// reconnect with the new rights; the account's last admin key keeps its
// role (ErrLastAdmin).
func (s *Service) UpdateAPIKey(ctx context.Context, p Principal, id string, patch APIKeyPatch) (APIKey, error) {
	k, err := s.key(ctx, p, id)
	if err != nil {
		return APIKey{}, err
	}
	if patch.Role != nil && patch.Role.rank() == 0 {
		return APIKey{}, invalid("role", "must be admin, operator or readonly")
	}
	if patch.Role == nil || *patch.Role == k.Role {
		return k, nil
	}
	from := k.Role
	if err := s.store.SetAPIKeyRole(ctx, id, *patch.Role); err != nil {
		if errors.Is(err, ErrLastAdmin) {
			s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "apikey.update", Target: id, Outcome: "denied", Reason: "last admin key"})
		}
		return APIKey{}, fmt.Errorf("updating API key %q: %w", id, err)
	}
	k.Role = *patch.Role
	s.notifyKey(ctx, KeyRoleChanged, k)
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "apikey.update", Target: id, Outcome: "ok", Reason: "role " + string(from) + " -> " + string(k.Role)})
	return k, nil
}

// Authenticate checks a bearer token "{keyID}.{secret}".
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok {
		return Principal{}, fmt.Errorf("API key must be {id}.{secret}: %w", ErrUnauthenticated)
	}
	return s.AuthenticateKey(ctx, id, secret)
}

// AuthenticateKey checks a key id and secret, in constant time.
func (s *Service) AuthenticateKey(ctx context.Context, id, secret string) (Principal, error) {
	if id == "" || len(id) > 64 || secret == "" || len(secret) > 128 {
		return Principal{}, fmt.Errorf("malformed API key: %w", ErrUnauthenticated)
	}
	k, err := s.store.GetAPIKey(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, fmt.Errorf("unknown API key: %w", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticating: %w", err)
	}
	if subtle.ConstantTimeCompare(k.Hash, hashSecret(secret)) != 1 {
		return Principal{}, fmt.Errorf("wrong API key secret: %w", ErrUnauthenticated)
	}
	return Principal{KeyID: k.ID, AccountID: k.AccountID, Role: k.Role, SystemAdmin: k.SystemAdmin}, nil
}
