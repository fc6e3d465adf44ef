package gateway

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// registered is a sub-device's triple in a registration reply.
type registered struct {
	IotID        string `json:"iotId"`
	ProductKey   string `json:"productKey"`
	DeviceName   string `json:"deviceName"`
	DeviceSecret string `json:"deviceSecret"`
}

// codeOf maps a registration refusal to an Alink reply code.
func codeOf(err error) int {
	switch {
	case errors.Is(err, provision.ErrInvalid):
		return alink.CodeBadParams
	case errors.Is(err, provision.ErrUnknownProduct):
		return alink.CodeProductNotFound
	case errors.Is(err, provision.ErrUnknownDevice):
		return alink.CodeDeviceNotFound
	case errors.Is(err, provision.ErrDisabled), errors.Is(err, provision.ErrDistributed):
		return alink.CodeDeviceDisabled
	case errors.Is(err, provision.ErrBadSignature):
		return alink.CodeAuthFailed
	case errors.Is(err, provision.ErrRateLimited):
		return alink.CodeTooMany
	}
	var pe *provision.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return alink.CodeInternal
}

// subRegister is thing.sub.register: pre-created sub-devices get their
// secrets, once; all or none.
func (s *Service) subRegister(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var list []ident
	if err := decodeParams(raw, &list, "a list of sub-devices"); err != nil {
		return nil, err
	}
	if len(list) == 0 || len(list) > MaxTopoAdd {
		return nil, fail(alink.CodeBadParams, "request parameter error: register 1 to %d sub-devices per call, got %d", MaxTopoAdd, len(list))
	}
	out := make([]registered, 0, len(list))
	for _, id := range list {
		res, err := s.o.Provisioner.ProxyRegister(ctx, provision.Request{ProductKey: id.ProductKey, DeviceName: id.DeviceName, Source: "gateway " + gw.ProductKey + "/" + gw.DeviceName}, gw.AccountID, false)
		if err != nil {
			// The provisioner's reason is meant for devices; only the names are clipped.
			return out, &failure{Code: codeOf(err), Msg: alink.Clip(id.ProductKey) + "/" + alink.Clip(id.DeviceName) + ": " + err.Error()}
		}
		out = append(out, registered{res.Device.IotID, res.Device.ProductKey, res.Device.DeviceName, res.Device.DeviceSecret})
	}
	return out, nil
}

// productRegister is thing.proxy.provisioning.product_register: each
// sub-device is signed with its product's secret; auto mode creates it.
// Successes and failures are reported per device.
func (s *Service) productRegister(ctx context.Context, gw registry.Device, raw json.RawMessage) (any, error) {
	var p struct {
		Proxieds []struct {
			ProductKey   string `json:"productKey"`
			DeviceName   string `json:"deviceName"`
			Random       string `json:"random"`
			Sign         string `json:"sign"`
			SignMethod   string `json:"signMethod"`
			SignMethodV3 string `json:"signmethod"`
		} `json:"proxieds"`
	}
	if err := decodeParams(raw, &p, `{"proxieds":[…]}`); err != nil {
		return nil, err
	}
	if len(p.Proxieds) == 0 || len(p.Proxieds) > MaxTopoAdd {
		return nil, fail(alink.CodeBadParams, "request parameter error: register 1 to %d sub-devices per call, got %d", MaxTopoAdd, len(p.Proxieds))
	}
	type failed struct {
		ProductKey string `json:"productKey"`
		DeviceName string `json:"deviceName"`
		Code       int    `json:"code"`
		Message    string `json:"message"`
	}
	out := struct {
		Successes []registered `json:"successes"`
		Failures  []failed     `json:"failures"`
	}{Successes: []registered{}, Failures: []failed{}}
	for _, x := range p.Proxieds {
		method := x.SignMethod
		if method == "" {
			method = x.SignMethodV3
		}
		if method == "" {
			method = "hmacsha256"
		}
		res, err := s.o.Provisioner.ProxyRegister(ctx, provision.Request{ProductKey: x.ProductKey, DeviceName: x.DeviceName, Random: x.Random,
			Sign: x.Sign, SignMethod: method, Source: "gateway " + gw.ProductKey + "/" + gw.DeviceName}, gw.AccountID, true)
		if err != nil {
			out.Failures = append(out.Failures, failed{x.ProductKey, x.DeviceName, codeOf(err), err.Error()})
			continue
		}
		out.Successes = append(out.Successes, registered{res.Device.IotID, res.Device.ProductKey, res.Device.DeviceName, res.Device.DeviceSecret})
	}
	return out, nil
}
