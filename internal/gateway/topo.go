package gateway

import (
	"context"
	"encoding/json"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
)

// topoAdd adds signed sub-devices to the gateway's topology: all or none.
func (s *Service) topoAdd(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var list []signedIdent
	if err := decodeParams(raw, &list, "a list of sub-devices"); err != nil {
		return nil, err
	}
	if len(list) == 0 || len(list) > MaxTopoAdd {
		return nil, fail(alink.CodeBadParams, "request parameter error: add 1 to %d sub-devices per call, got %d", MaxTopoAdd, len(list))
	}
	subs := make([]registry.Device, 0, len(list))
	seen := map[ident]bool{}
	for _, si := range list {
		if seen[si.ident] {
			return nil, fail(alink.CodeBadParams, "request parameter error: %s/%s listed twice", si.ProductKey, si.DeviceName)
		}
		seen[si.ident] = true
		d, err := s.checkSub(ctx, gw, si, true, "")
		if err != nil {
			return nil, err
		}
		p, err := s.o.Registry.LookupProduct(ctx, d.ProductKey)
		if err != nil {
			return nil, err
		}
		if p.NodeType != registry.NodeSubdevice {
			return nil, fail(alink.CodeBadParams, "request parameter error: %s is not a sub-device product", d.ProductKey)
		}
		subs = append(subs, d)
	}
	ch, err := s.o.Registry.AttachSubdevices(ctx, gw, subs)
	if err != nil {
		return nil, err
	}
	s.announceMoves(ch)
	return identsOf(subs), nil
}

// topoDelete removes sub-devices from the gateway's topology and logs
// them out.
func (s *Service) topoDelete(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var list []ident
	if err := decodeParams(raw, &list, "a list of sub-devices"); err != nil {
		return nil, err
	}
	if len(list) == 0 || len(list) > MaxTopoAdd {
		return nil, fail(alink.CodeBadParams, "request parameter error: delete 1 to %d sub-devices per call, got %d", MaxTopoAdd, len(list))
	}
	keys := make([][2]string, len(list))
	for i, id := range list {
		keys[i] = [2]string{id.ProductKey, id.DeviceName}
	}
	ch, err := s.o.Registry.DetachSubdevices(ctx, gw, keys)
	if err != nil {
		return nil, err
	}
	for _, d := range ch.Removed {
		s.o.Broker.LogoutSub(gw.ProductKey, gw.DeviceName, d.ProductKey, d.DeviceName, "TOPOLOGY_DELETED")
	}
	return list, nil
}

// topoGet lists the gateway's sub-devices.
func (s *Service) topoGet(ctx context.Context, gw registry.Device) (any, error) {
	ds, err := s.o.Registry.Subdevices(ctx, gw)
	if err != nil {
		return nil, err
	}
	return identsOf(ds), nil
}

// Topology change statuses of thing.topo.change.
const (
	ChangeCreated  = 0
	ChangeDeleted  = 1
	ChangeEnabled  = 2
	ChangeDisabled = 8
)

// NotifyChange pushes thing.topo.change to a gateway.
func (s *Service) NotifyChange(gwPk, gwDn string, status int, subs []registry.Device) {
	if len(subs) == 0 {
		return
	}
	msg := map[string]any{
		"id":      s.nextID(),
		"version": "1.0",
		"params":  map[string]any{"status": status, "subList": identsOf(subs)},
		"method":  "thing.topo.change",
	}
	data, _ := json.Marshal(msg)
	if err := s.o.Broker.Publish(alink.SysTopic(gwPk, gwDn, "thing/topo/change"), data, false, 1); err != nil {
		s.log.Warn("pushing thing.topo.change", "gateway", gwPk+"/"+gwDn, "err", err)
	}
}

// announceMoves tells the new gateway what it gained (operator path) and
// old gateways what they lost, logging moved sub-devices out there.
func (s *Service) announceMoves(ch registry.TopologyChange) {
	for old, ds := range ch.Moved {
		pk, dn := registry.SplitGatewayKey(old)
		for _, d := range ds {
			s.o.Broker.LogoutSub(pk, dn, d.ProductKey, d.DeviceName, "MOVED_TO_ANOTHER_GATEWAY")
		}
		s.NotifyChange(pk, dn, ChangeDeleted, ds)
	}
}

func (s *Service) nextID() string {
	return itoa(s.o.Now().UnixNano() / 1000)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
