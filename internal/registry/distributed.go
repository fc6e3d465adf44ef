package registry

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/corral-iot/corral/internal/tsl"
)

// DistributionStore keeps the mark of a device distributed to another
// instance (internal/distribution/jobs). GetDeviceAuth reads it into
// Device.DistributedTo, so that the broker refuses the device here.
type DistributionStore interface {
	// SetDeviceDistributed marks a device as moved to the instance to, or
	// clears the mark with ""; ErrNotFound for a missing device.
	// Repeating it is a success.
	SetDeviceDistributed(ctx context.Context, pk, dn, to string) error
}

// MarkDistributed marks a device as moved to instance to ("" clears the
// mark: the device came back). It is this corral's own call (a
// distribution job, or an import of the device back here), not an API
// caller's: no principal.
func (s *Service) MarkDistributed(ctx context.Context, pk, dn, to string) error {
	if err := s.store.SetDeviceDistributed(ctx, pk, dn, to); err != nil {
		return fmt.Errorf("device %s/%s: %w", pk, dn, err)
	}
	return nil
}

// maxImportedSecret bounds an imported DeviceSecret (corral's are
// DeviceSecretLen characters; other platforms' up to 64).
const maxImportedSecret = 64

// ImportDevice is the narrow path by which a device arrives from another
// instance with its own triple: it is created under the account's product
// with the given DeviceSecret (registry otherwise always generates one).
// Importing the same triple again is a success (created false), and
// clears a distributed mark: the device came back. Another device of that
// name (another secret) is ErrConflict; another account's or a missing
// product is ErrNotFound. The secret is never in an error.
func (s *Service) ImportDevice(ctx context.Context, accountID, pk, dn, secret string) (d Device, created bool, err error) {
	if err := ValidateDeviceName(dn); err != nil {
		return Device{}, false, err
	}
	if secret == "" || len(secret) > maxImportedSecret || strings.IndexFunc(secret, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return Device{}, false, invalid("deviceSecret", "1-%d printable ASCII characters without spaces", maxImportedSecret)
	}
	prod, _, err := s.store.GetProduct(ctx, pk)
	if err != nil || prod.AccountID != accountID {
		return Device{}, false, fmt.Errorf("product %s: %w", pk, ErrNotFound)
	}
	for attempt := 0; ; attempt++ {
		old, err := s.LookupDeviceAuth(ctx, pk, dn)
		if err == nil {
			if old.AccountID != accountID || subtle.ConstantTimeCompare([]byte(old.DeviceSecret), []byte(secret)) != 1 {
				return Device{}, false, fmt.Errorf("device %s/%s: %w: another device of that name is registered here", pk, dn, ErrConflict)
			}
			if old.DistributedTo != "" {
				if err := s.MarkDistributed(ctx, pk, dn, ""); err != nil {
					return Device{}, false, err
				}
			}
			d, err := s.store.GetDevice(ctx, pk, dn)
			d.SealedSecret = nil
			return d, false, err
		}
		if !errors.Is(err, ErrNotFound) {
			return Device{}, false, err
		}
		nd, err := s.newDevice(prod, DeviceInput{DeviceName: dn}, s.nowUTC())
		if err != nil {
			return Device{}, false, err
		}
		if nd.SealedSecret, err = s.box.Seal([]byte(secret), deviceAAD(pk, dn)); err != nil {
			return Device{}, false, fmt.Errorf("sealing device secret: %w", err)
		}
		nd.DeviceSecret = ""
		err = s.store.CreateDevices(ctx, []Device{nd})
		if errors.Is(err, ErrConflict) && attempt == 0 {
			continue // created meanwhile by a concurrent import: compare
		}
		if err != nil {
			return Device{}, false, fmt.Errorf("importing device %s/%s: %w", pk, dn, err)
		}
		nd.SealedSecret = nil
		s.notify(ctx, DeviceCreated, nd)
		return nd, true, nil
	}
}

// writableProduct is product, refusing a distributed (read-only) one.
func (s *Service) writableProduct(ctx context.Context, p Principal, pk string) (Product, []byte, error) {
	prod, sealed, err := s.product(ctx, p, pk)
	if err != nil {
		return Product{}, nil, err
	}
	if prod.DistributedFrom != "" {
		return Product{}, nil, fmt.Errorf("product %s was distributed from instance %s and is read-only here (it may be viewed; its devices arrive by distribution): %w",
			pk, prod.DistributedFrom, ErrForbidden)
	}
	return prod, sealed, nil
}

// ImportProduct is the narrow path by which a product arrives from the
// instance from: created in the account with its own ProductKey, its
// settings, topic classes and thing model (nil: none), read-only. A
// product already in the account (imported before, or the original its
// devices come back to) is a success that changes nothing (later changes
// at the source are not synchronised); a ProductKey of another account
// here is ErrConflict.
func (s *Service) ImportProduct(ctx context.Context, accountID, from string, in Product, model []byte) (prod Product, created bool, err error) {
	if from == "" {
		return Product{}, false, invalid("sourceInstanceId", "required")
	}
	if !productKeyRE.MatchString(in.ProductKey) {
		return Product{}, false, invalid("productKey", "1-32 letters and digits")
	}
	old, _, err := s.store.GetProduct(ctx, in.ProductKey)
	switch {
	case err == nil && old.AccountID == accountID:
		// Already here: imported before, or this is where it came from
		// (its devices are coming back).
		return old, false, nil
	case err == nil:
		return Product{}, false, fmt.Errorf("product %s: %w: the ProductKey is taken here", in.ProductKey, ErrConflict)
	case !errors.Is(err, ErrNotFound):
		return Product{}, false, err
	}
	prod = Product{AccountID: accountID, ProductKey: in.ProductKey, Name: in.Name, Description: in.Description, NodeType: in.NodeType,
		AuthType: in.AuthType, DynReg: DynRegOff, Attributes: in.Attributes, ConnectWindow: in.ConnectWindow,
		TopicClasses: in.TopicClasses, CreatedAt: s.nowUTC(), DistributedFrom: from}
	if prod.Attributes == nil {
		prod.Attributes = map[string]string{}
	}
	if prod.TopicClasses == nil {
		prod.TopicClasses = DefaultTopicClasses()
	}
	if err := validateProduct(prod); err != nil {
		return Product{}, false, err
	}
	var m []byte
	if len(model) > 0 {
		parsed, err := tsl.Parse(model)
		if err != nil {
			return Product{}, false, &ValidationError{Field: "thingModel", Reason: err.Error()}
		}
		if m, err = json.Marshal(parsed); err != nil {
			return Product{}, false, err
		}
	}
	// The product secret is this instance's own (dynamic registration
	// is off for a distributed product).
	secret, err := randString(s.rand, ProductSecretLen)
	if err != nil {
		return Product{}, false, err
	}
	sealed, err := s.box.Seal([]byte(secret), productAAD(prod.ProductKey))
	if err != nil {
		return Product{}, false, fmt.Errorf("sealing product secret: %w", err)
	}
	if err := s.store.CreateProduct(ctx, prod, sealed); err != nil {
		if errors.Is(err, ErrConflict) {
			return s.ImportProduct(ctx, accountID, from, in, model) // a concurrent import: compare
		}
		return Product{}, false, fmt.Errorf("importing product %s: %w", prod.ProductKey, err)
	}
	if m != nil {
		if err := s.store.SetTSL(ctx, prod.ProductKey, m); err != nil {
			return Product{}, false, fmt.Errorf("storing thing model of %s: %w", prod.ProductKey, err)
		}
	}
	return prod, true, nil
}

var productKeyRE = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)
