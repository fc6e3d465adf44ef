package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/corral-iot/corral/internal/audit"
)

// MaxTopoBatch is the most sub-devices one topology call may add.
const MaxTopoBatch = 30

// TopologyStore persists gateway/sub-device relations: a sub-device has at
// most one gateway, named "{pk}/{dn}".
type TopologyStore interface {
	// SetGateway sets (gateway "" clears) the gateway of sub-devices in one
	// transaction and returns their previous gateways.
	SetGateway(ctx context.Context, gateway string, subs [][2]string) ([]string, error)
	// Subdevices lists a gateway's sub-devices.
	Subdevices(ctx context.Context, gateway string) ([]Device, error)
}

// TopologyChange is what a topology operation did, for notifying gateways.
type TopologyChange struct {
	Gateway Device
	Added   []Device
	Removed []Device
	// Moved maps a previous gateway "{pk}/{dn}" to the sub-devices it lost.
	Moved map[string][]Device
}

// ErrNotGateway means a device that is not of a gateway product was used as one.
var ErrNotGateway = errors.New("device is not a gateway")

// GatewayKey names a device as a gateway.
func GatewayKey(pk, dn string) string { return pk + "/" + dn }

// SplitGatewayKey is the inverse of GatewayKey.
func SplitGatewayKey(k string) (pk, dn string) {
	pk, dn, _ = strings.Cut(k, "/")
	return pk, dn
}

// AttachSubdevices makes devices sub-devices of a gateway. Sub-devices of
// another gateway move, and the change says which gateway lost them. All
// devices must belong to the gateway's account; all or none are attached.
func (s *Service) AttachSubdevices(ctx context.Context, gw Device, subs []Device) (TopologyChange, error) {
	ch := TopologyChange{Gateway: gw, Moved: map[string][]Device{}}
	if len(subs) == 0 {
		return ch, nil
	}
	keys := make([][2]string, len(subs))
	for i, d := range subs {
		if d.AccountID != gw.AccountID {
			return ch, fmt.Errorf("sub-device %s/%s: %w", d.ProductKey, d.DeviceName, ErrNotFound)
		}
		if d.ProductKey == gw.ProductKey && d.DeviceName == gw.DeviceName {
			return ch, invalid("subdevices", "a gateway cannot be its own sub-device")
		}
		keys[i] = [2]string{d.ProductKey, d.DeviceName}
	}
	gwKey := GatewayKey(gw.ProductKey, gw.DeviceName)
	prev, err := s.store.SetGateway(ctx, gwKey, keys)
	if err != nil {
		return ch, fmt.Errorf("attaching sub-devices to %s: %w", gwKey, err)
	}
	for i, d := range subs {
		d.SealedSecret, d.DeviceSecret = nil, ""
		if prev[i] == gwKey {
			continue
		}
		ch.Added = append(ch.Added, d)
		if prev[i] != "" {
			ch.Moved[prev[i]] = append(ch.Moved[prev[i]], d)
		}
	}
	s.record(ctx, audit.Entry{AccountID: gw.AccountID, Actor: "gateway", Action: "topology.add", Target: gwKey, Outcome: "ok", Reason: fmt.Sprintf("%d sub-devices", len(ch.Added))})
	return ch, nil
}

// DetachSubdevices removes sub-devices from a gateway's topology; devices
// not in it are ignored.
func (s *Service) DetachSubdevices(ctx context.Context, gw Device, subs [][2]string) (TopologyChange, error) {
	ch := TopologyChange{Gateway: gw}
	gwKey := GatewayKey(gw.ProductKey, gw.DeviceName)
	var mine [][2]string
	for _, k := range subs {
		d, err := s.store.GetDevice(ctx, k[0], k[1])
		if err != nil || d.Gateway != gwKey {
			continue
		}
		mine = append(mine, k)
		d.SealedSecret = nil
		ch.Removed = append(ch.Removed, d)
	}
	if len(mine) == 0 {
		return ch, nil
	}
	if _, err := s.store.SetGateway(ctx, "", mine); err != nil {
		return ch, fmt.Errorf("detaching sub-devices from %s: %w", gwKey, err)
	}
	s.record(ctx, audit.Entry{AccountID: gw.AccountID, Actor: "gateway", Action: "topology.delete", Target: gwKey, Outcome: "ok", Reason: fmt.Sprintf("%d sub-devices", len(mine))})
	return ch, nil
}

// Subdevices lists a gateway's sub-devices.
func (s *Service) Subdevices(ctx context.Context, gw Device) ([]Device, error) {
	ds, err := s.store.Subdevices(ctx, GatewayKey(gw.ProductKey, gw.DeviceName))
	for i := range ds {
		ds[i].SealedSecret = nil
	}
	return ds, err
}

// GatewayOf returns the device as a gateway of the caller's account,
// checking it is of a gateway product.
func (s *Service) GatewayOf(ctx context.Context, p Principal, pk, dn string) (Device, error) {
	if err := need(p, RoleReadonly); err != nil {
		return Device{}, err
	}
	prod, _, err := s.product(ctx, p, pk)
	if err != nil {
		return Device{}, err
	}
	if prod.NodeType != NodeGateway {
		return Device{}, fmt.Errorf("%s/%s: %w", pk, dn, ErrNotGateway)
	}
	return s.device(ctx, p, pk, dn)
}

// CheckOperator reports whether p may change things.
func CheckOperator(p Principal) error { return need(p, RoleOperator) }
