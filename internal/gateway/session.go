package gateway

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
)

// checkLogin verifies a sub-device login: signed by the sub-device and in
// this gateway's topology.
func (s *Service) checkLogin(ctx context.Context, gw registry.Device, si signedIdent, method string) (registry.Device, error) {
	d, err := s.checkSub(ctx, gw, si, true, method)
	if err != nil {
		return d, err
	}
	if d.Gateway != registry.GatewayKey(gw.ProductKey, gw.DeviceName) {
		return d, fail(alink.CodeTopoNotExist, "topo relation not exist: %s/%s is not in this gateway's topology; add it with thing.topo.add", d.ProductKey, d.DeviceName)
	}
	return d, nil
}

func (s *Service) loginChecked(gw registry.Device, d registry.Device) error {
	if err := s.o.Broker.LoginSub(gw.ProductKey, gw.DeviceName, d); err != nil {
		return fail(alink.CodeInternal, "login of %s/%s failed: %v", d.ProductKey, d.DeviceName, err)
	}
	return nil
}

// login is combine.login.
func (s *Service) login(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var si signedIdent
	if err := decodeParams(raw, &si, "a sub-device login"); err != nil {
		return nil, err
	}
	d, err := s.checkLogin(ctx, gw, si, "")
	if err != nil {
		return nil, err
	}
	if err := s.loginChecked(gw, d); err != nil {
		return nil, err
	}
	return ident{d.ProductKey, d.DeviceName}, nil
}

// batchLogin is combine.batch_login: every sub-device is checked first,
// then all are logged in, or none.
func (s *Service) batchLogin(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var p struct {
		DeviceList   []signedIdent `json:"deviceList"`
		SignMethod   string        `json:"signMethod"` // Link SDK C v4: one for the list
		SignMethodV3 string        `json:"signmethod"`
	}
	if err := decodeParams(raw, &p, `{"deviceList":[…]}`); err != nil {
		return nil, err
	}
	if len(p.DeviceList) == 0 || len(p.DeviceList) > MaxBatchLog {
		return nil, fail(alink.CodeBadParams, "request parameter error: log in 1 to %d sub-devices per call, got %d", MaxBatchLog, len(p.DeviceList))
	}
	ds := make([]registry.Device, 0, len(p.DeviceList))
	method := p.SignMethod
	if method == "" {
		method = p.SignMethodV3
	}
	for _, si := range p.DeviceList {
		d, err := s.checkLogin(ctx, gw, si, method)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	for _, d := range ds {
		if err := s.loginChecked(gw, d); err != nil {
			return nil, err
		}
	}
	return identsOf(ds), nil
}

// logout is combine.logout and combine.batch_logout.
func (s *Service) logout(gw registry.Device, raw json.RawMessage, batch bool) (any, error) {
	var list []ident
	if batch {
		if err := decodeParams(raw, &list, "a list of sub-devices"); err != nil {
			return nil, err
		}
		if len(list) == 0 || len(list) > MaxBatchLog {
			return nil, fail(alink.CodeBadParams, "request parameter error: log out 1 to %d sub-devices per call, got %d", MaxBatchLog, len(list))
		}
	} else {
		var one ident
		if err := decodeParams(raw, &one, "a sub-device"); err != nil {
			return nil, err
		}
		list = []ident{one}
	}
	for _, id := range list {
		if !s.o.Broker.SubLoggedIn(gw.ProductKey, gw.DeviceName, id.ProductKey, id.DeviceName) {
			return nil, fail(alink.CodeSubNotLoggedIn, "%s/%s is not logged in through this gateway", id.ProductKey, id.DeviceName)
		}
	}
	for _, id := range list {
		s.o.Broker.LogoutSub(gw.ProductKey, gw.DeviceName, id.ProductKey, id.DeviceName, "CLIENT_INITIATED_DISCONNECT")
	}
	if batch {
		return list, nil
	}
	return list[0], nil
}

var _ = errors.New
