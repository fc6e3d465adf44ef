package registry

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
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
