package registry

import (
	"context"
	"fmt"
	"time"
)

// FoundDevice is a sub-device a gateway reported it discovered
// (thing.list.found), waiting for an operator to accept it.
type FoundDevice struct {
	ProductKey string    `json:"productKey"`
	DeviceName string    `json:"deviceName"`
	FoundAt    time.Time `json:"foundAt"`
}

// MaxFoundPerGateway bounds a gateway's found list: past it, the devices
// found longest ago give way.
const MaxFoundPerGateway = 200

// FoundStore keeps gateways' found sub-devices by gateway key
// (GatewayKey). Deleting a gateway, or its product, deletes its list.
type FoundStore interface {
	// AddFound records found devices (one listed already takes the new
	// time) and keeps the max found last.
	AddFound(ctx context.Context, gateway string, fs []FoundDevice, max int) error
	// ListFound lists a gateway's found devices, oldest first.
	ListFound(ctx context.Context, gateway string) ([]FoundDevice, error)
	// RemoveFound removes devices ({pk, dn}) from a gateway's list.
	RemoveFound(ctx context.Context, gateway string, subs [][2]string) error
}

// AddFound records the sub-devices a gateway reported, found now. The
// gateway protocol checked them; no account scope.
func (s *Service) AddFound(ctx context.Context, gw Device, subs [][2]string) error {
	now := s.nowUTC()
	fs := make([]FoundDevice, len(subs))
	for i, k := range subs {
		fs[i] = FoundDevice{ProductKey: k[0], DeviceName: k[1], FoundAt: now}
	}
	if err := s.store.AddFound(ctx, GatewayKey(gw.ProductKey, gw.DeviceName), fs, MaxFoundPerGateway); err != nil {
		return fmt.Errorf("recording found sub-devices of %s/%s: %w", gw.ProductKey, gw.DeviceName, err)
	}
	return nil
}

// LookupFound lists a gateway's found sub-devices, oldest first; the
// caller checked the gateway is the principal's.
func (s *Service) LookupFound(ctx context.Context, gw Device) ([]FoundDevice, error) {
	fs, err := s.store.ListFound(ctx, GatewayKey(gw.ProductKey, gw.DeviceName))
	if err != nil {
		return nil, fmt.Errorf("listing found sub-devices of %s/%s: %w", gw.ProductKey, gw.DeviceName, err)
	}
	return fs, nil
}

// RemoveFound drops accepted sub-devices from a gateway's found list.
func (s *Service) RemoveFound(ctx context.Context, gw Device, subs [][2]string) error {
	if err := s.store.RemoveFound(ctx, GatewayKey(gw.ProductKey, gw.DeviceName), subs); err != nil {
		return fmt.Errorf("removing found sub-devices of %s/%s: %w", gw.ProductKey, gw.DeviceName, err)
	}
	return nil
}
