package thing

import (
	"context"
	"encoding/json"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
)

// deviceInfo is thing.deviceinfo.update (params
// [{"attrKey":"site","attrValue":"lab"}]) and thing.deviceinfo.delete
// (params [{"attrKey":"site"}]): the device's tags are its attributes in
// the registry (GET /v1/products/{pk}/devices/{dn} shows them). Keys and
// values follow the registry's rules (registry.ValidateAttributes); a
// request names 1 to registry.MaxAttributes keys, each once; all or
// nothing.
func (s *Service) deviceInfo(ctx context.Context, r request) (any, error) {
	del := r.topic.Method() == "thing.deviceinfo.delete"
	var list []struct {
		Key   *string          `json:"attrKey"`
		Value *json.RawMessage `json:"attrValue"`
	}
	if len(r.req.Params) == 0 || json.Unmarshal(r.req.Params, &list) != nil {
		if del {
			return nil, fail(alink.CodeBadParams, `request parameter error: params must be [{"attrKey":"…"}]`)
		}
		return nil, fail(alink.CodeBadParams, `request parameter error: params must be [{"attrKey":"…","attrValue":"…"}]`)
	}
	if len(list) == 0 || len(list) > registry.MaxAttributes {
		return nil, fail(alink.CodeBadParams, "request parameter error: 1 to %d attributes per request, got %d", registry.MaxAttributes, len(list))
	}
	set := map[string]string{}
	var keys []string
	seen := map[string]bool{}
	for i, a := range list {
		if a.Key == nil {
			return nil, fail(alink.CodeBadParams, "request parameter error: params[%d] lacks attrKey", i)
		}
		k := *a.Key
		if err := registry.ValidateAttrKey("attrKey", k); err != nil {
			return nil, fail(alink.CodeBadParams, "request parameter error: params[%d].attrKey: use 1 to %d letters, digits and _.-", i, registry.MaxAttrKeyLen)
		}
		if seen[k] {
			return nil, fail(alink.CodeBadParams, "request parameter error: attrKey %s listed twice", k)
		}
		seen[k] = true
		if del {
			keys = append(keys, k)
			continue
		}
		if a.Value == nil {
			return nil, fail(alink.CodeBadParams, "request parameter error: params[%d] lacks attrValue", i)
		}
		v, ok := scalarText(*a.Value)
		if !ok {
			return nil, fail(alink.CodeBadParams, "request parameter error: params[%d].attrValue must be a string or a number", i)
		}
		set[k] = v
	}
	if _, err := s.o.Registry.SetDeviceAttributes(ctx, r.topic.ProductKey, r.topic.DeviceName, set, keys); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// scalarText reads a JSON string, or a number or boolean as its text.
func scalarText(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		if b {
			return "true", true
		}
		return "false", true
	}
	return "", false
}
