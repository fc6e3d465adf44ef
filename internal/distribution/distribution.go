// Package distribution owns where devices connect when a corral is one of
// several instances: the instances it knows of (id, region, device-facing
// endpoints, a sealed credential for instance-to-instance calls), the
// distribution centre's provisioning records ((ProductKey, DeviceName) →
// an instance or a proximity policy), proximity policies (CIDR and GeoIP
// tables, weights, an allocation webhook) and the Link SDK bootstrap
// answer. Distribution jobs (moving devices, copying products) are to come
// and will update the same records through the same store port.
package distribution

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/registry"
)

// Errors callers switch on; each wrapping error names the field or rule.
var (
	ErrInvalid  = errors.New("invalid distribution input")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrReadOnly = errors.New("read-only")
)

// Instance is a corral deployment devices may be sent to. An instance of
// account "" is a system instance (this corral itself, the configured
// ones, those a system administrator added): every account sees it, none
// but a system administrator changes it.
type Instance struct {
	ID        string `json:"instanceId" doc:"1-64 lower-case letters, digits and dashes"`
	AccountID string `json:"accountId,omitempty" doc:"empty for a system instance, usable by every account"`
	Name      string `json:"name,omitempty"`
	Region    string `json:"region" doc:"e.g. cn-shanghai, ap-southeast-1"`
	// MQTT and MQTTS are device-facing host:port endpoints; at least one.
	MQTT     string `json:"mqtt,omitempty" doc:"plain MQTT host:port devices connect to"`
	MQTTS    string `json:"mqtts,omitempty" doc:"MQTT over TLS host:port devices connect to"`
	BackupIP string `json:"backupIp,omitempty" doc:"an IP address devices use when the host does not resolve (< 16 characters)"`
	APIURL   string `json:"apiUrl,omitempty" doc:"the instance's REST API origin, for instance-to-instance calls"`
	// HasCredential says a credential for instance-to-instance calls is
	// stored (sealed); the credential itself is never read back.
	HasCredential bool      `json:"hasCredential"`
	Self          bool      `json:"self,omitempty" doc:"this corral"`
	GmtCreate     time.Time `json:"gmtCreate"`
	GmtModified   time.Time `json:"gmtModified"`
}

// InstanceInput creates or replaces an instance.
type InstanceInput struct {
	ID         string `json:"instanceId"`
	Name       string `json:"name,omitempty"`
	Region     string `json:"region"`
	MQTT       string `json:"mqtt,omitempty" doc:"host:port"`
	MQTTS      string `json:"mqtts,omitempty" doc:"host:port"`
	BackupIP   string `json:"backupIp,omitempty"`
	APIURL     string `json:"apiUrl,omitempty"`
	Credential string `json:"credential,omitempty" doc:"an API key of the other instance for instance-to-instance calls; stored sealed, never shown again"`
}

// StoredInstance is an instance as the store holds it: the credential
// sealed (bound to the account and instance id).
type StoredInstance struct {
	Instance
	SealedCredential []byte
}

// Target kinds of a provisioning record.
const (
	TargetInstance = "instance"
	TargetPolicy   = "policy"
)

// Record is the distribution centre's provisioning record of one device:
// which instance it belongs to, or which proximity policy chooses one.
// Its fields follow Alibaba's QueryDeviceProvisioning.
type Record struct {
	ProductKey          string    `json:"productKey"`
	DeviceName          string    `json:"deviceName"`
	AccountID           string    `json:"-"`
	SourceIotInstanceID string    `json:"sourceIotInstanceId"`
	SourceRegion        string    `json:"sourceRegion"`
	TargetIotInstanceID string    `json:"targetIotInstanceId,omitempty" doc:"the instance the device bootstraps to (empty for a proximity policy)"`
	TargetRegion        string    `json:"targetRegion,omitempty"`
	PolicyID            string    `json:"policyId,omitempty" doc:"the proximity policy choosing the instance by the device's address"`
	JobID               string    `json:"jobId,omitempty" doc:"the distribution job that wrote the record (to come)"`
	GmtCreate           time.Time `json:"gmtCreate"`
	GmtModified         time.Time `json:"gmtModified"`
}

// RecordInput sets a device's record: an instance or a policy.
type RecordInput struct {
	TargetIotInstanceID string `json:"targetIotInstanceId,omitempty"`
	PolicyID            string `json:"policyId,omitempty"`
}

// Store is the port the service keeps its data in. Implementations are
// safe for concurrent use; reads see every write that returned.
type Store interface {
	InstanceStore
	RecordStore
	PolicyStore
}

// InstanceStore keeps instances by (account, id); account "" holds the
// system instances.
type InstanceStore interface {
	// PutInstance creates an instance (ErrConflict when the id is taken
	// in the account) or, with replace, overwrites it keeping GmtCreate.
	PutInstance(ctx context.Context, in StoredInstance, replace bool) error
	// GetInstance answers ErrNotFound for a missing one.
	GetInstance(ctx context.Context, accountID, id string) (StoredInstance, error)
	// ListInstances lists an account's instances by id.
	ListInstances(ctx context.Context, accountID string) ([]StoredInstance, error)
	// DeleteInstance answers ErrNotFound for a missing one and ErrConflict
	// while a record or policy of the account names it.
	DeleteInstance(ctx context.Context, accountID, id string) error
}

// RecordStore keeps provisioning records by (ProductKey, DeviceName).
type RecordStore interface {
	// PutRecord creates or replaces a record, keeping GmtCreate.
	PutRecord(ctx context.Context, r Record) error
	// GetRecord answers ErrNotFound for a device without a record.
	GetRecord(ctx context.Context, pk, dn string) (Record, error)
	// ListRecords lists a product's records by DeviceName after after.
	ListRecords(ctx context.Context, pk, after string, limit int) ([]Record, error)
	// DeleteRecord answers ErrNotFound for a missing record.
	DeleteRecord(ctx context.Context, pk, dn string) error
}

// PolicyStore keeps proximity policies by (account, id).
type PolicyStore interface {
	PutPolicy(ctx context.Context, p Policy, replace bool) error
	GetPolicy(ctx context.Context, accountID, id string) (Policy, error)
	ListPolicies(ctx context.Context, accountID string) ([]Policy, error)
	// DeletePolicy answers ErrConflict while a record names it.
	DeletePolicy(ctx context.Context, accountID, id string) error
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// ValidID checks an instance or policy id.
func ValidID(field, id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("%s: %w: %q must be 1-64 lower-case letters, digits and dashes, not starting with a dash", field, ErrInvalid, id)
	}
	return nil
}

var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidRegion checks a region name.
func ValidRegion(field, r string) error {
	if !regionRE.MatchString(r) {
		return fmt.Errorf("%s: %w: %q must be 1-32 lower-case letters, digits and dashes (e.g. ap-southeast-1)", field, ErrInvalid, r)
	}
	return nil
}

// maxHost keeps the bootstrap answer within the Link SDK's 192 bytes
// with an IP and the largest port.
const maxHost = 64

var hostRE = regexp.MustCompile(`^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$`)

// validEndpoint checks a device-facing host:port.
func validEndpoint(field, e string) error {
	host, port, err := net.SplitHostPort(e)
	if err != nil || host == "" {
		return fmt.Errorf("%s: %w: %q is not host:port", field, ErrInvalid, e)
	}
	if len(host) > maxHost || !hostRE.MatchString(hostForm(e, host)) {
		return fmt.Errorf("%s: %w: the host must be a name or address of at most %d characters", field, ErrInvalid, maxHost)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%s: %w: the port must be 1-65535", field, ErrInvalid)
	}
	return nil
}

// hostForm is the host as written in e (an IPv6 address in brackets).
func hostForm(e, host string) string {
	if strings.HasPrefix(e, "[") {
		return "[" + host + "]"
	}
	return host
}

func (in InstanceInput) validate() error {
	if err := ValidID("instanceId", in.ID); err != nil {
		return err
	}
	if err := ValidRegion("region", in.Region); err != nil {
		return err
	}
	if len(in.Name) > 128 {
		return fmt.Errorf("name: %w: at most 128 characters", ErrInvalid)
	}
	if in.MQTT == "" && in.MQTTS == "" {
		return fmt.Errorf("mqtt: %w: give the mqtt or mqtts endpoint (host:port), or both", ErrInvalid)
	}
	for _, e := range []struct{ field, v string }{{"mqtt", in.MQTT}, {"mqtts", in.MQTTS}} {
		if e.v != "" {
			if err := validEndpoint(e.field, e.v); err != nil {
				return err
			}
		}
	}
	if in.BackupIP != "" {
		if ip := net.ParseIP(in.BackupIP); ip == nil || len(in.BackupIP) >= 16 {
			return fmt.Errorf("backupIp: %w: an IP address shorter than 16 characters (the Link SDK drops longer ones)", ErrInvalid)
		}
	}
	if in.APIURL != "" && !strings.HasPrefix(in.APIURL, "https://") && !strings.HasPrefix(in.APIURL, "http://") {
		return fmt.Errorf("apiUrl: %w: an http:// or https:// origin", ErrInvalid)
	}
	if len(in.APIURL) > 512 || len(in.Credential) > 512 {
		return fmt.Errorf("apiUrl: %w: apiUrl and credential are at most 512 characters", ErrInvalid)
	}
	return nil
}

// ownerOf is the account whose instances and policies a principal writes:
// a system administrator writes system instances, others their account's.
func ownerOf(p registry.Principal) string {
	if p.SystemAdmin {
		return ""
	}
	return p.AccountID
}
