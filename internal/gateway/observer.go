package gateway

import (
	"context"

	"github.com/corral-iot/corral/internal/registry"
)

// DeviceChanged implements registry.Observer: a sub-device's gateway hears
// of its deletion, enabling and disabling: thing.delete / enable / disable
// on the sub-device's own topics, then thing.topo.change on its own.
func (s *Service) DeviceChanged(_ context.Context, kind registry.DeviceEventKind, d registry.Device) {
	if d.Gateway == "" {
		return
	}
	pk, dn := registry.SplitGatewayKey(d.Gateway)
	what, ok := lifecycleMethods[kind]
	if !ok {
		return
	}
	s.lifecycle(pk, dn, d, what)
	switch kind {
	case registry.DeviceDeleted:
		s.NotifyChange(pk, dn, ChangeDeleted, []registry.Device{d})
	case registry.DeviceEnabled:
		s.NotifyChange(pk, dn, ChangeEnabled, []registry.Device{d})
	case registry.DeviceDisabled:
		s.NotifyChange(pk, dn, ChangeDisabled, []registry.Device{d})
	}
}

// Attach adds sub-devices to a gateway for an operator (REST), telling the
// gateway (status 0) and any gateway that lost them (status 1).
func (s *Service) Attach(ctx context.Context, gw registry.Device, subs []registry.Device) error {
	ch, err := s.o.Registry.AttachSubdevices(ctx, gw, subs)
	if err != nil {
		return err
	}
	s.announceMoves(ch)
	s.NotifyChange(gw.ProductKey, gw.DeviceName, ChangeCreated, ch.Added)
	return nil
}

// Detach removes sub-devices from a gateway for an operator, logging them
// out and telling the gateway (status 1).
func (s *Service) Detach(ctx context.Context, gw registry.Device, subs [][2]string) error {
	ch, err := s.o.Registry.DetachSubdevices(ctx, gw, subs)
	if err != nil {
		return err
	}
	for _, d := range ch.Removed {
		s.o.Broker.LogoutSub(gw.ProductKey, gw.DeviceName, d.ProductKey, d.DeviceName, "TOPOLOGY_DELETED")
	}
	s.NotifyChange(gw.ProductKey, gw.DeviceName, ChangeDeleted, ch.Removed)
	return nil
}
