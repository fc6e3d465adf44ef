package thing

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/tsl"
)

// failure is a refused device request (alink.Failure); fail makes one.
type failure = alink.Failure

var fail = alink.Fail

// request is a device's request on its own /sys/{pk}/{dn}/… topic.
type request struct {
	topic alink.Topic
	req   alink.Request
}

// handler answers one kind of device request with the reply's data.
type handler func(ctx context.Context, r request) (any, error)

// serve wraps a handler: it decodes the request, answers on …_reply with
// the request's id (also for refusals, whenever the id can be read) and
// maps errors to codes.
func (s *Service) serve(h handler) func(string, []byte) {
	return func(topic string, payload []byte) {
		t, err := alink.ParseTopic(topic)
		if err != nil || t.Reply || t.Kind != "sys" {
			return
		}
		method := t.Method()
		req, err := alink.DecodeRequest(payload)
		if err != nil {
			s.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Message: "request parameter error: " + err.Error(), Method: method + "_reply", Version: "1.0"})
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		data, err := h(ctx, request{topic: t, req: req})
		rep := alink.Reply{ID: req.ID, Code: alink.CodeSuccess, Data: data, Message: "success", Method: method + "_reply", Version: "1.0"}
		if err != nil {
			rep.Code, rep.Message, rep.Data = s.codeOf(topic, err)
		}
		if req.WantsReply() {
			s.reply(topic, rep)
		}
	}
}

// codeOf maps an error to a reply code, message and data.
func (s *Service) codeOf(topic string, err error) (int, string, any) {
	var f *failure
	var te *tsl.Error
	var ve *registry.ValidationError
	switch {
	case errors.As(err, &f):
		return f.Code, f.Msg, f.Data
	case errors.As(err, &te):
		return tsl.Code(err), "tsl check failed: " + te.Error(), map[string]string{"identifier": te.Identifier}
	case errors.Is(err, registry.ErrNoModel):
		return tsl.CodeNoModel, "the product has no thing model", nil
	case errors.As(err, &ve):
		return alink.CodeBadParams, "request parameter error: " + alink.Clip(ve.Error()), nil
	case errors.Is(err, registry.ErrNotFound):
		return alink.CodeDeviceNotFound, "device not found", nil
	}
	s.log.Error("device request failed", "topic", topic, "err", err)
	return alink.CodeInternal, "internal error", nil
}

// tslData is the product's thing model as a reply's data, with
// profile.productKey filled in when the stored model lacks it.
func (s *Service) tslData(ctx context.Context, pk string) (any, error) {
	m, err := s.model(ctx, pk)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, registry.ErrNoModel
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	var profile map[string]any
	json.Unmarshal(out["profile"], &profile)
	if profile == nil {
		profile = map[string]any{}
	}
	if _, ok := profile["productKey"]; !ok {
		profile["productKey"] = pk
		out["profile"], _ = json.Marshal(profile)
	}
	return out, nil
}

// dslTemplate is thing.dsltemplate.get (params {} or "{}") and
// thing.dynamicTsl.get (the Link SDK C sends
// {"nodes":["type","identifier"],"addDefault":false} and loads the reply's
// data as a TSL, as it does dsltemplate's): both answer the product's TSL.
func (s *Service) dslTemplate(ctx context.Context, r request) (any, error) {
	return s.tslData(ctx, r.topic.ProductKey)
}
