// Package registry owns corral's accounts, products, devices and API keys:
// their rules (names, keys, roles, statuses), their secrets, and the store
// port that adapters implement.
package registry

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Only httpapi maps them to HTTP statuses.
var (
	// ErrNotFound means the object does not exist or belongs to another account.
	ErrNotFound = errors.New("not found")
	// ErrConflict means an object with the same unique key exists already.
	ErrConflict = errors.New("already exists")
	// ErrInvalid means the input broke a rule; errors wrapping it are *ValidationError.
	ErrInvalid = errors.New("invalid input")
	// ErrForbidden means the caller's role does not allow the operation.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthenticated means the caller's credential is missing, unknown or wrong.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrTooLarge means a request asks for more than one call may do.
	ErrTooLarge = errors.New("too large")
)

// ValidationError names the field that broke a rule.
type ValidationError struct {
	Field  string
	Reason string
	// Cause, when set, is a more precise sentinel the error also matches
	// (say, ErrProofOfPossession).
	Cause error
}

func (e *ValidationError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalid) true, and errors.Is(err, Cause).
func (e *ValidationError) Unwrap() []error {
	if e.Cause != nil {
		return []error{ErrInvalid, e.Cause}
	}
	return []error{ErrInvalid}
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// NodeType says how a product's devices reach corral.
type NodeType string

// Node types.
const (
	NodeDirect    NodeType = "direct"
	NodeGateway   NodeType = "gateway"
	NodeSubdevice NodeType = "subdevice"
)

// AuthType says how a product's devices prove who they are.
type AuthType string

// Auth types.
const (
	AuthSecret AuthType = "secret"
	AuthX509   AuthType = "x509"
)

// DynRegMode is a product's dynamic registration mode.
type DynRegMode string

// Dynamic registration modes: off; whitelist (the DeviceName must be
// pre-created and its secret is handed out once); auto (unknown names are
// created on the spot).
const (
	DynRegOff       DynRegMode = "off"
	DynRegWhitelist DynRegMode = "whitelist"
	DynRegAuto      DynRegMode = "auto"
)

// Status is a device's connection state.
type Status string

// Device statuses.
const (
	StatusInactive Status = "inactive"
	StatusOnline   Status = "online"
	StatusOffline  Status = "offline"
	StatusDisabled Status = "disabled"
)

// Role is what an API key may do within its account.
type Role string

// Roles, strongest first.
const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleReadonly Role = "readonly"
)

func (r Role) rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleReadonly:
		return 1
	}
	return 0
}

// Allows reports whether a key with role r may do what needs role need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

// Account is a tenant: it owns products, devices and API keys.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// Product is a kind of device, sharing a ProductKey and ProductSecret.
type Product struct {
	AccountID     string            `json:"-"`
	ProductKey    string            `json:"productKey"`
	ProductSecret string            `json:"productSecret,omitempty"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	NodeType      NodeType          `json:"nodeType"`
	AuthType      AuthType          `json:"authType"`
	DynReg        DynRegMode        `json:"dynamicRegistration"`
	Attributes    map[string]string `json:"attributes"`
	// ConnectWindow, when above zero, is how many seconds the timestamp
	// in a device's CONNECT signature may differ from the server's clock.
	// Zero (the default) does not check freshness: the Link SDKs sign a
	// fixed timestamp far in the future.
	ConnectWindow int          `json:"connectTimestampWindowSeconds"`
	Provisioning  Provisioning `json:"provisioning"`
	// TopicClasses are the product's custom topic classes (see
	// TopicClass); a new product starts with DefaultTopicClasses.
	TopicClasses []TopicClass `json:"topicClasses"`
	CreatedAt    time.Time    `json:"createdAt"`
	// DistributedFrom is the instance a distribution job copied the
	// product from: read-only here (viewable; not edited, deleted, nor
	// given new devices but by import).
	DistributedFrom string `json:"distributedFrom,omitempty"`
}

// Device is one device of a product.
type Device struct {
	AccountID    string `json:"-"`
	ProductKey   string `json:"productKey"`
	DeviceName   string `json:"deviceName"`
	DeviceSecret string `json:"deviceSecret,omitempty"`
	IotID        string `json:"iotId"`
	// ThingName names the device in $aws/things/{thingName}/… topics,
	// unique across the instance: "{productKey}.{deviceName}" unless one
	// was set (see ValidateThingName).
	ThingName    string            `json:"thingName"`
	Nickname     string            `json:"nickname"`
	Status       Status            `json:"status"`
	Attributes   map[string]string `json:"attributes"`
	SecretIssued bool              `json:"secretIssued"`
	CreatedAt    time.Time         `json:"createdAt"`
	FirstOnline  *time.Time        `json:"firstOnlineAt,omitempty"`
	LastOnline   *time.Time        `json:"lastOnlineAt,omitempty"`
	// CertFingerprint is the SHA-256 (hex) of the X.509 certificate the
	// device may authenticate with on the TLS listener.
	CertFingerprint string `json:"certificateFingerprint,omitempty"`
	// Gateway is the sub-device's gateway, "{productKey}/{deviceName}".
	Gateway string `json:"gateway,omitempty"`
	// DistributedTo is the instance a distribution job moved the device
	// to; the broker refuses it here while set. Read by GetDeviceAuth.
	DistributedTo string `json:"distributedTo,omitempty"`
	// PreviousThingName is set only on a DeviceRenamed event: the thing
	// name it had.
	PreviousThingName string `json:"-"`

	// SealedSecret is DeviceSecret encrypted at rest; only stores see it.
	SealedSecret []byte `json:"-"`
}

// APIKey is an account-scoped credential for the REST API and for
// application MQTT clients. Only its hash is stored.
type APIKey struct {
	ID          string    `json:"id"`
	AccountID   string    `json:"accountId"`
	Name        string    `json:"name"`
	Role        Role      `json:"role"`
	SystemAdmin bool      `json:"systemAdmin"`
	CreatedAt   time.Time `json:"createdAt"`
	// Secret is set only on the value returned by CreateAPIKey.
	Secret string `json:"secret,omitempty"`
	// Hash is SHA-256 of the secret; only stores see it.
	Hash []byte `json:"-"`
}

// Token is how a key is presented as a bearer token: "{id}.{secret}".
func (k APIKey) Token() string { return k.ID + "." + k.Secret }

// Principal is the authenticated caller of a registry operation.
type Principal struct {
	KeyID       string
	AccountID   string
	Role        Role
	SystemAdmin bool
}

// DeviceFilter selects devices of one product for a listing.
type DeviceFilter struct {
	ProductKey string
	Status     Status
	NamePrefix string
	AttrKey    string
	AttrValue  string
	After      string // DeviceName to continue after (cursor)
	Limit      int
}

// Stats are registry sizes for metrics.
type Stats struct {
	Accounts int64
	Products int64
	Devices  int64
	APIKeys  int64
}
