package registry

import (
	"context"
	"fmt"
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
