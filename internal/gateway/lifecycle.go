package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
)

// Gateway lifecycle downlinks and the operator's requests to gateways:
// thing.disable / enable / delete on a sub-device's own topics (written
// to its gateway's session, as a disabled sub-device is logged out and a
// deleted one is gone), thing.topo.add.notify, thing.gateway.permit;
// and from gateways thing.list.found and thing.sub.unregister.

// ErrGatewayOffline means the gateway an operator addressed has no live
// session.
var ErrGatewayOffline = errors.New("gateway is offline")

// Lifecycle methods by device event.
var lifecycleMethods = map[registry.DeviceEventKind]string{
	registry.DeviceDisabled: "disable",
	registry.DeviceEnabled:  "enable",
	registry.DeviceDeleted:  "delete",
}

// lifecycle tells a sub-device's gateway that an operator disabled,
// enabled or deleted it: thing.{what} with params {} on
// /sys/{subPk}/{subDn}/thing/{what}.
func (s *Service) lifecycle(gwPk, gwDn string, d registry.Device, what string) {
	body := s.request("thing."+what, json.RawMessage("{}"))
	err := s.o.Broker.SendToGateway(gwPk, gwDn, alink.SysTopic(d.ProductKey, d.DeviceName, "thing/"+what), body)
	if err != nil {
		s.log.Debug("sub-device lifecycle downlink not sent", "gateway", gwPk+"/"+gwDn, "method", "thing."+what, "err", err)
	}
}

// request encodes a downlink request with a fresh id.
func (s *Service) request(method string, params any) []byte {
	b, _ := json.Marshal(map[string]any{"id": s.nextID(), "version": "1.0", "params": params, "method": method})
	return b
}

// Sent is a downlink request corral sent to a gateway.
type Sent struct {
	MessageID string `json:"messageId"`
	Topic     string `json:"topic"`
}

// NotifyAdd asks a gateway to add the listed sub-devices to its topology
// (thing.topo.add.notify, params a list of {productKey, deviceName}); the
// gateway answers on …/thing/topo/add/notify_reply and adds them with
// thing.topo.add, signed by each.
func (s *Service) NotifyAdd(_ context.Context, gw registry.Device, subs []registry.Device) (Sent, error) {
	return s.sendGateway(gw, "thing/topo/add/notify", "thing.topo.add.notify", identsOf(subs))
}

// Permit lets a gateway add sub-devices of a product for seconds
// (thing.gateway.permit, params {"productKey","time"}).
func (s *Service) Permit(_ context.Context, gw registry.Device, productKey string, seconds int) (Sent, error) {
	return s.sendGateway(gw, "thing/gateway/permit", "thing.gateway.permit", map[string]any{"productKey": productKey, "time": seconds})
}

func (s *Service) sendGateway(gw registry.Device, rest, method string, params any) (Sent, error) {
	if !s.o.Broker.Online(gw.ProductKey, gw.DeviceName) {
		return Sent{}, fmt.Errorf("%s/%s: %w", gw.ProductKey, gw.DeviceName, ErrGatewayOffline)
	}
	id := s.nextID()
	body, _ := json.Marshal(map[string]any{"id": id, "version": "1.0", "params": params, "method": method})
	topic := alink.SysTopic(gw.ProductKey, gw.DeviceName, rest)
	if err := s.o.Broker.Publish(topic, body, false, 1); err != nil {
		return Sent{}, err
	}
	return Sent{MessageID: id, Topic: topic}, nil
}

// listFound records the sub-devices a gateway reports it discovered
// (thing.list.found, params a list of {productKey, deviceName}): each
// product must be a sub-device product of the gateway's account (6250)
// and each name a valid DeviceName (6280); all or none are kept.
func (s *Service) listFound(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var list []ident
	if err := decodeParams(raw, &list, "a list of sub-devices"); err != nil {
		return nil, err
	}
	if len(list) == 0 || len(list) > MaxTopoAdd {
		return nil, fail(alink.CodeBadParams, "request parameter error: report 1 to %d sub-devices per call, got %d", MaxTopoAdd, len(list))
	}
	keys := make([][2]string, len(list))
	for i, id := range list {
		if err := s.checkFound(ctx, gw, id); err != nil {
			return nil, err
		}
		keys[i] = [2]string{id.ProductKey, id.DeviceName}
	}
	if err := s.o.Registry.AddFound(ctx, gw, keys); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// Result codes of thing.list.found.
const (
	codeProductNotFound = alink.CodeProductNotFound // 6250
	codeBadDeviceName   = 6280                      // devicename not meet specs
)

func (s *Service) checkFound(ctx context.Context, gw registry.Device, id ident) error {
	p, err := s.o.Registry.LookupProduct(ctx, id.ProductKey)
	if errors.Is(err, registry.ErrNotFound) || err == nil && (p.AccountID != gw.AccountID || p.NodeType != registry.NodeSubdevice) {
		return fail(codeProductNotFound, "product not found: %s is no sub-device product of the gateway's account", id.ProductKey)
	}
	if err != nil {
		return err
	}
	if err := registry.ValidateDeviceName(id.DeviceName); err != nil {
		return fail(codeBadDeviceName, "devicename not meet specs: %s", id.DeviceName)
	}
	return nil
}

// Found lists the sub-devices a gateway reported with thing.list.found
// and an operator has not accepted yet, oldest first (at most
// registry.MaxFoundPerGateway, the latest found).
func (s *Service) Found(ctx context.Context, gw registry.Device) ([]registry.FoundDevice, error) {
	return s.o.Registry.LookupFound(ctx, gw)
}

// AcceptFound adds found sub-devices to the gateway's topology as Attach
// does (the gateway hears thing.topo.change) and drops them from its
// found list. Each must be in the list (registry.ErrNotFound otherwise).
func (s *Service) AcceptFound(ctx context.Context, gw registry.Device, subs []registry.Device) error {
	found, err := s.o.Registry.LookupFound(ctx, gw)
	if err != nil {
		return err
	}
	listed := map[[2]string]bool{}
	for _, f := range found {
		listed[[2]string{f.ProductKey, f.DeviceName}] = true
	}
	keys := make([][2]string, len(subs))
	for i, d := range subs {
		keys[i] = [2]string{d.ProductKey, d.DeviceName}
		if !listed[keys[i]] {
			return fmt.Errorf("%s/%s was not found by gateway %s/%s: %w", d.ProductKey, d.DeviceName, gw.ProductKey, gw.DeviceName, registry.ErrNotFound)
		}
	}
	if err := s.Attach(ctx, gw, subs); err != nil {
		return err
	}
	return s.o.Registry.RemoveFound(ctx, gw, keys)
}

// unregisterResult is one entry of thing.sub.unregister's reply.
type unregisterResult struct {
	ident
	Code    int    `json:"code"`
	Message string `json:"message,omitempty"`
}

// subUnregister deletes sub-devices of the gateway's topology at its
// request (thing.sub.unregister, params a list of {productKey,
// deviceName}); the reply lists each with its own code: 200 deleted,
// 6100 not a device of its account, 6401 not in its topology. Deleted
// devices' gateways hear thing.delete and thing.topo.change.
func (s *Service) subUnregister(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var list []ident
	if err := decodeParams(raw, &list, "a list of sub-devices"); err != nil {
		return nil, err
	}
	if len(list) == 0 || len(list) > MaxTopoAdd {
		return nil, fail(alink.CodeBadParams, "request parameter error: unregister 1 to %d sub-devices per call, got %d", MaxTopoAdd, len(list))
	}
	out := make([]unregisterResult, len(list))
	for i, id := range list {
		out[i] = unregisterResult{ident: id, Code: alink.CodeSuccess}
		if err := s.unregisterOne(ctx, gw, id); err != nil {
			var f *failure
			if !errors.As(err, &f) {
				s.log.Error("unregistering a sub-device", "gateway", gw.ProductKey+"/"+gw.DeviceName, "err", err)
				f = &failure{Code: alink.CodeInternal, Msg: "internal error"}
			}
			out[i].Code, out[i].Message = f.Code, f.Msg
		}
	}
	return out, nil
}

func (s *Service) unregisterOne(ctx context.Context, gw registry.Device, id ident) error {
	d, err := s.o.Registry.LookupDevice(ctx, id.ProductKey, id.DeviceName)
	if errors.Is(err, registry.ErrNotFound) || err == nil && d.AccountID != gw.AccountID {
		return fail(alink.CodeDeviceNotFound, "device %s/%s not found", id.ProductKey, id.DeviceName)
	}
	if err != nil {
		return err
	}
	if d.Gateway != registry.GatewayKey(gw.ProductKey, gw.DeviceName) {
		return fail(alink.CodeTopoNotExist, "topo relation not exist: %s/%s", id.ProductKey, id.DeviceName)
	}
	p := registry.Principal{AccountID: gw.AccountID, KeyID: "gateway:" + gw.ProductKey + "/" + gw.DeviceName, Role: registry.RoleOperator}
	if err := s.o.Registry.DeleteDevice(ctx, p, id.ProductKey, id.DeviceName); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return fail(alink.CodeDeviceNotFound, "device %s/%s not found", id.ProductKey, id.DeviceName)
		}
		return err
	}
	return nil
}
