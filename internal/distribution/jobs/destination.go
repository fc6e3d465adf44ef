package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/corral-iot/corral/internal/distribution/transit"
	"github.com/corral-iot/corral/internal/registry"
)

// Destination is the receiving side of the instance-to-instance API: it
// publishes this corral's transit public key and imports products and
// devices into the calling credential's account.
type Destination struct {
	Registry *registry.Service
	// Self is this corral's instance id: sealed secrets are bound to it.
	Self string
	Key  transit.Key
	// Codes are the cross-account authorisation codes and grants.
	Codes *Codes
}

// TransitKey is what GET /v1/distribution/transit-key answers.
type TransitKey struct {
	InstanceID string `json:"instanceId"`
	PublicKey  []byte `json:"publicKey" doc:"X25519 public key (base64) device secrets are sealed with for this instance"`
}

// ProductImport is the body of a product import.
type ProductImport struct {
	SourceInstanceID string  `json:"sourceInstanceId"`
	Grant            string  `json:"grant,omitempty" doc:"a cross-account grant (POST /v1/distribution/authorizations)"`
	Product          Product `json:"product"`
}

// Imported answers an import: created false when it was already here.
type Imported struct {
	Created bool `json:"created"`
}

// IssueCode issues a cross-account authorisation code of p's account.
func (d Destination) IssueCode(ctx context.Context, p registry.Principal) (AuthCode, error) {
	if d.Codes == nil {
		return AuthCode{}, fmt.Errorf("cross-account distribution is off here: %w", registry.ErrNotFound)
	}
	return d.Codes.Issue(ctx, p)
}

// Authorize exchanges a code for a grant of p's account.
func (d Destination) Authorize(ctx context.Context, p registry.Principal, in Authorization) (Grant, error) {
	if d.Codes == nil {
		return Grant{}, fmt.Errorf("cross-account distribution is off here: %w", registry.ErrNotFound)
	}
	return d.Codes.Authorize(ctx, p, in)
}

// Release ends a grant of p's account whose job is over.
func (d Destination) Release(ctx context.Context, p registry.Principal, in Grant) error {
	if d.Codes == nil {
		return fmt.Errorf("cross-account distribution is off here: %w", registry.ErrNotFound)
	}
	return d.Codes.Release(ctx, p, in)
}

// Grants lists the grants into p's account.
func (d Destination) Grants(ctx context.Context, p registry.Principal) ([]GrantInfo, error) {
	if d.Codes == nil {
		return nil, fmt.Errorf("cross-account distribution is off here: %w", registry.ErrNotFound)
	}
	return d.Codes.Grants(ctx, p)
}

// Revoke ends a grant into p's account.
func (d Destination) Revoke(ctx context.Context, p registry.Principal, id string) error {
	if d.Codes == nil {
		return fmt.Errorf("cross-account distribution is off here: %w", registry.ErrNotFound)
	}
	return d.Codes.Revoke(ctx, p, id)
}

// PublicKey answers the transit key.
func (d Destination) PublicKey() TransitKey {
	return TransitKey{InstanceID: d.Self, PublicKey: d.Key.Public()}
}

// ImportProduct creates the product read-only in the principal's account
// (idempotent).
func (d Destination) ImportProduct(ctx context.Context, p registry.Principal, pk string, in ProductImport) (Imported, error) {
	if !p.Role.Allows(registry.RoleAdmin) {
		return Imported{}, fmt.Errorf("importing products needs an admin key: %w", registry.ErrForbidden)
	}
	var prod registry.Product
	if err := json.Unmarshal(in.Product.Info, &prod); err != nil {
		return Imported{}, fmt.Errorf("product: %w: %w", ErrInvalid, err)
	}
	if len(in.Product.TopicClasses) > 0 {
		if err := json.Unmarshal(in.Product.TopicClasses, &prod.TopicClasses); err != nil {
			return Imported{}, fmt.Errorf("topicClasses: %w: %w", ErrInvalid, err)
		}
	}
	if prod.ProductKey != pk || in.Product.ProductKey != pk {
		return Imported{}, fmt.Errorf("productKey: %w: the body names another product than the path", ErrInvalid)
	}
	acc, err := d.Codes.account(ctx, p, in.Grant)
	if err != nil {
		return Imported{}, err
	}
	_, created, err := d.Registry.ImportProduct(ctx, acc, in.SourceInstanceID, prod, in.Product.ThingModel)
	return Imported{Created: created}, err
}

// ImportDevice opens the sealed secret (bound to this instance and the
// device) and imports the triple (idempotent; a device coming back has
// its distributed mark cleared).
func (d Destination) ImportDevice(ctx context.Context, p registry.Principal, pk, dn string, in DeviceImport) (Imported, error) {
	if !p.Role.Allows(registry.RoleAdmin) {
		return Imported{}, fmt.Errorf("importing devices needs an admin key: %w", registry.ErrForbidden)
	}
	if in.ProductKey != pk || in.DeviceName != dn {
		return Imported{}, fmt.Errorf("deviceName: %w: the body names another device than the path", ErrInvalid)
	}
	secret, err := d.Key.Open(in.SealedSecret, transit.AAD(d.Self, pk, dn))
	if err != nil {
		return Imported{}, fmt.Errorf("sealedSecret: %w: %w", ErrInvalid, err)
	}
	acc, err := d.Codes.account(ctx, p, in.Grant)
	if err != nil {
		return Imported{}, err
	}
	_, created, err := d.Registry.ImportDevice(ctx, acc, pk, dn, string(secret))
	return Imported{Created: created}, err
}
