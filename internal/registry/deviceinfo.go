package registry

import (
	"context"
	"fmt"
)

// SetDeviceAttributes sets and deletes a device's attributes at the
// device's own request (Alink thing.deviceinfo.update / delete): there is
// no principal, the broker has authenticated the device. The result is
// checked as an operator's update is (ValidateAttributes); deleting a key
// that is not there is no error.
func (s *Service) SetDeviceAttributes(ctx context.Context, pk, dn string, set map[string]string, del []string) (Device, error) {
	d, err := s.store.GetDevice(ctx, pk, dn)
	if err != nil {
		return Device{}, fmt.Errorf("device %s/%s: %w", pk, dn, err)
	}
	attrs := make(map[string]string, len(d.Attributes)+len(set))
	for k, v := range d.Attributes {
		attrs[k] = v
	}
	for _, k := range del {
		delete(attrs, k)
	}
	for k, v := range set {
		attrs[k] = v
	}
	if err := ValidateAttributes("attributes", attrs); err != nil {
		return Device{}, err
	}
	d.Attributes = attrs
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return Device{}, fmt.Errorf("updating device %s/%s: %w", pk, dn, err)
	}
	d.SealedSecret = nil
	return d, nil
}
