package thing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
)

// Limits of one batch, pack or history post.
const (
	MaxPostDevices = 50  // the gateway and its sub-devices, or history entries
	MaxPostValues  = 500 // property and event values in all
)

// identity names a device in pack and history posts.
type identity struct {
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
}

// entry is one device's values in a batch, pack or history post: for each
// identifier, its values, each plain or {"value":…,"time":…}.
type entry struct {
	id     identity
	live   bool // a pack post: a sub-device must be logged in
	props  map[string][]json.RawMessage
	events map[string][]json.RawMessage
}

func (e *entry) add(props bool, id string, v json.RawMessage) {
	m := &e.events
	if props {
		m = &e.props
	}
	if *m == nil {
		*m = map[string][]json.RawMessage{}
	}
	(*m)[id] = append((*m)[id], v)
}

// postFailure is an entry of a post that was not stored.
type postFailure struct {
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
	Code       int    `json:"code"`
	Message    string `json:"message"`
}

func decodeJSON(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// batchPost is thing.event.property.batch.post: params
// {"properties":{id:[{value,time},…]},"events":{id:[{value,time},…]}}.
func (s *Service) batchPost(ctx context.Context, r request) (any, error) {
	var p struct {
		Properties map[string][]json.RawMessage `json:"properties"`
		Events     map[string][]json.RawMessage `json:"events"`
	}
	if len(r.req.Params) == 0 || decodeJSON(r.req.Params, &p) != nil {
		return nil, fail(alink.CodeBadParams, `request parameter error: params must be {"properties":{"id":[{"value":…,"time":…}]},"events":{…}}`)
	}
	e := entry{id: identity{r.topic.ProductKey, r.topic.DeviceName}, props: p.Properties, events: p.Events}
	return s.storeEntries(ctx, r.topic, []entry{e})
}

// packPost is thing.event.property.pack.post: a gateway's own values and
// its sub-devices', params {"properties":{id:{value,time}},"events":{…},
// "subDevices":[{"identity":{productKey,deviceName},"properties":{…},"events":{…}}]}.
func (s *Service) packPost(ctx context.Context, r request) (any, error) {
	type values struct {
		Identity   *identity                  `json:"identity"`
		Properties map[string]json.RawMessage `json:"properties"`
		Events     map[string]json.RawMessage `json:"events"`
	}
	var p struct {
		values
		SubDevices []values `json:"subDevices"`
	}
	if len(r.req.Params) == 0 || decodeJSON(r.req.Params, &p) != nil {
		return nil, fail(alink.CodeBadParams, `request parameter error: params must be {"properties":{…},"events":{…},"subDevices":[{"identity":{…},"properties":{…},"events":{…}}]}`)
	}
	if len(p.SubDevices)+1 > MaxPostDevices {
		return nil, fail(alink.CodeBadParams, "request parameter error: at most %d devices per post, got %d", MaxPostDevices, len(p.SubDevices)+1)
	}
	own := identity{r.topic.ProductKey, r.topic.DeviceName}
	var es []entry
	for i, v := range append([]values{p.values}, p.SubDevices...) {
		e := entry{id: own, live: true}
		if i > 0 {
			if v.Identity == nil {
				return nil, fail(alink.CodeBadParams, "request parameter error: subDevices[%d] lacks identity", i-1)
			}
			e.id = *v.Identity
		}
		for id, raw := range v.Properties {
			e.add(true, id, raw)
		}
		for id, raw := range v.Events {
			e.add(false, id, raw)
		}
		if i == 0 && len(e.props)+len(e.events) == 0 {
			continue // only sub-devices' values
		}
		es = append(es, e)
	}
	return s.storeEntries(ctx, r.topic, es)
}

// historyPost is thing.event.property.history.post: params a list of
// {"identity":{productKey,deviceName},"properties":[{id:{value,time},…}],"events":[{id:{value,time}}]}
// for the device itself or, from a gateway, its sub-devices.
func (s *Service) historyPost(ctx context.Context, r request) (any, error) {
	var p []struct {
		Identity   *identity                    `json:"identity"`
		Properties []map[string]json.RawMessage `json:"properties"`
		Events     []map[string]json.RawMessage `json:"events"`
	}
	if len(r.req.Params) == 0 || decodeJSON(r.req.Params, &p) != nil {
		return nil, fail(alink.CodeBadParams, `request parameter error: params must be [{"identity":{…},"properties":[{"id":{"value":…,"time":…}}],"events":[…]}]`)
	}
	if len(p) == 0 || len(p) > MaxPostDevices {
		return nil, fail(alink.CodeBadParams, "request parameter error: 1 to %d entries per post, got %d", MaxPostDevices, len(p))
	}
	es := make([]entry, 0, len(p))
	for _, v := range p {
		e := entry{id: identity{r.topic.ProductKey, r.topic.DeviceName}}
		if v.Identity != nil && (v.Identity.ProductKey != "" || v.Identity.DeviceName != "") {
			e.id = *v.Identity
		}
		for _, set := range v.Properties {
			for id, raw := range set {
				e.add(true, id, raw)
			}
		}
		for _, set := range v.Events {
			for id, raw := range set {
				e.add(false, id, raw)
			}
		}
		es = append(es, e)
	}
	return s.storeEntries(ctx, r.topic, es)
}

// storeEntries checks and stores each entry on its own: an entry breaking
// the model, or naming a device that is not the poster nor one of its
// sub-devices (topology), is not stored and is listed in the reply's
// data.failures; the reply's code is 200 only when every entry was stored,
// else the first failure's.
func (s *Service) storeEntries(ctx context.Context, t alink.Topic, es []entry) (any, error) {
	n := 0
	for _, e := range es {
		for _, vs := range e.props {
			n += len(vs)
		}
		for _, vs := range e.events {
			n += len(vs)
		}
	}
	if n == 0 {
		return nil, fail(alink.CodeBadParams, "request parameter error: the post holds no values")
	}
	if n > MaxPostValues {
		return nil, fail(alink.CodeBadParams, "request parameter error: at most %d values per post, got %d", MaxPostValues, n)
	}
	var failures []postFailure
	for _, e := range es {
		if err := s.storeEntry(ctx, t, e); err != nil {
			code, msg, _ := s.codeOf(t.Method(), err)
			failures = append(failures, postFailure{alink.Clip(e.id.ProductKey), alink.Clip(e.id.DeviceName), code, msg})
			if code == alink.CodeNoSession || code == alink.CodeTopoNotExist {
				s.reportSubError(t, e.id, code, msg)
			}
		}
	}
	if len(failures) == 0 {
		return struct{}{}, nil
	}
	f := &failure{Code: failures[0].Code, Data: map[string]any{"failures": failures}}
	f.Msg = fmt.Sprintf("%d of %d devices' values not stored: %s/%s: %s", len(failures), len(es), failures[0].ProductKey, failures[0].DeviceName, failures[0].Message)
	return nil, f
}

// errNotSub refuses values of a device that is not the poster's sub-device.
var errNotSub = errors.New("not a sub-device of this gateway")

// storeEntry checks one device's values against its product's model and
// stores the properties (each identifier's latest value, at the device's
// time, unless a newer one is stored already). Events are checked only, as
// event posts are.
func (s *Service) storeEntry(ctx context.Context, t alink.Topic, e entry) error {
	if e.id.ProductKey == "" || e.id.DeviceName == "" {
		return fail(alink.CodeBadParams, "request parameter error: identity needs productKey and deviceName")
	}
	if e.id.ProductKey != t.ProductKey || e.id.DeviceName != t.DeviceName {
		d, err := s.o.Registry.LookupDevice(ctx, e.id.ProductKey, e.id.DeviceName)
		if errors.Is(err, registry.ErrNotFound) || err == nil && d.Gateway != registry.GatewayKey(t.ProductKey, t.DeviceName) {
			return fail(alink.CodeTopoNotExist, "topo relation not exist: %s/%s is not a sub-device of this gateway", e.id.ProductKey, e.id.DeviceName)
		}
		if err != nil {
			return err
		}
		if e.live && !s.o.Broker.Online(e.id.ProductKey, e.id.DeviceName) {
			return fail(alink.CodeNoSession, "sub-device %s/%s is not logged in through this gateway; log it in with combine.login", e.id.ProductKey, e.id.DeviceName)
		}
	}
	m, err := s.model(ctx, e.id.ProductKey)
	if err != nil {
		return err
	}
	if m == nil {
		return registry.ErrNoModel
	}
	now := s.o.Now()
	latest := map[string]registry.PropertyValue{}
	for id, vs := range e.props {
		for _, raw := range vs {
			one, _ := json.Marshal(map[string]json.RawMessage{id: raw})
			vals, err := m.ValidateProperties(one)
			if err != nil {
				return err
			}
			v := vals[id]
			at := now
			if v.Time > 0 {
				at = time.UnixMilli(v.Time)
			}
			if old, ok := latest[id]; !ok || !at.Before(old.Time) {
				latest[id] = registry.PropertyValue{Identifier: id, Value: v.Value, Time: at}
			}
		}
	}
	for id, vs := range e.events {
		for _, raw := range vs {
			if err := m.ValidateEvent(id, raw); err != nil {
				return err
			}
		}
	}
	if len(latest) == 0 {
		return nil
	}
	// Values older than the stored ones (a history post, a late batch) are
	// checked but do not replace them.
	stored, err := s.o.Registry.LatestProperties(ctx, e.id.ProductKey, e.id.DeviceName)
	if err != nil {
		return err
	}
	for _, v := range stored {
		if l, ok := latest[v.Identifier]; ok && l.Time.Before(v.Time) {
			delete(latest, v.Identifier)
		}
	}
	out := make([]registry.PropertyValue, 0, len(latest))
	for _, v := range latest {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identifier < out[j].Identifier })
	return s.o.Registry.SaveProperties(ctx, e.id.ProductKey, e.id.DeviceName, out)
}

// reportSubError tells the gateway on /ext/error/{gwPk}/{gwDn} that values
// of a sub-device were refused for its session or topology (520 makes the
// Link SDK log the sub-device in again), besides the failure in the reply.
func (s *Service) reportSubError(gw alink.Topic, sub identity, code int, msg string) {
	id := strconv.FormatInt(s.ids.Add(1), 10)
	b := alink.SubDeviceError(id, code, msg, alink.Clip(sub.ProductKey), alink.Clip(sub.DeviceName))
	if err := s.o.Broker.Publish(alink.ErrorTopic(gw.ProductKey, gw.DeviceName), b, false, 0); err != nil {
		s.log.Warn("publishing /ext/error", "gateway", gw.ProductKey+"/"+gw.DeviceName, "err", err)
	}
}
