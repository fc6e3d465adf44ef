// Package thing runs thing models on live devices: it checks property and
// event posts against the product's TSL model (a bad value is answered
// with a code naming the property, and nothing of it is stored), keeps
// devices' latest property values, and lets operators set properties and
// invoke services, asynchronously or synchronously (RRPC) with a timeout.
package thing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/tsl"
)

// Broker is what the thing service needs of the MQTT broker.
type Broker interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
	SubscribeAll(hs map[string]func(topic string, payload []byte)) (func(), error)
	Online(pk, dn string) bool
	// SubscribeFromClients is SubscribeAll for one filter without
	// corral's own publishes (v4 RRPC requests share their reply's topic).
	SubscribeFromClients(filter string, h func(topic string, payload []byte)) (func(), error)
	// UsesExtRRPC reports whether the device's session (its gateway's,
	// for a sub-device) takes sync services in the v4 form (ext=3).
	UsesExtRRPC(pk, dn string) bool
}

// Registry is what it needs of the registry.
type Registry interface {
	LookupThingModel(ctx context.Context, pk string) (*tsl.Model, error)
	SaveProperties(ctx context.Context, pk, dn string, vals []registry.PropertyValue) error
	LookupDevice(ctx context.Context, pk, dn string) (registry.Device, error)
	SetDeviceAttributes(ctx context.Context, pk, dn string, set map[string]string, del []string) (registry.Device, error)
	LatestProperties(ctx context.Context, pk, dn string) ([]registry.PropertyValue, error)
}

// Options configure the Service.
type Options struct {
	Broker   Broker
	Registry Registry
	Logger   *slog.Logger
	Now      func() time.Time
}

// Service runs thing models.
type Service struct {
	o      Options
	log    *slog.Logger
	stop   func()
	ids    atomic.Int64
	models *cache.Cache[string, *tsl.Model]

	mu      sync.Mutex
	waiters map[string]chan Reply  // "pk/dn/id" -> reply
	raw     map[string]chan []byte // "pk/dn/rrpcId" -> custom-topic RRPC answer
}

// modelTTL bounds how long a model changed on another node takes to apply
// to posts here; a change made through this node applies at once.
const modelTTL = 2 * time.Second

// New returns a Service; Start subscribes it.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{o: o, log: o.Logger, waiters: map[string]chan Reply{}, raw: map[string]chan []byte{},
		models: cache.New[string, *tsl.Model](cache.Options{TTL: modelTTL, Now: o.Now})}
	s.ids.Store(o.Now().UnixNano() / 1e6)
	return s
}

// Start subscribes to posts and replies of every device.
func (s *Service) Start() error {
	stop, err := s.o.Broker.SubscribeAll(map[string]func(string, []byte){
		"/sys/+/+/thing/event/+/post":       s.onPost, // property posts too
		"/sys/+/+/thing/service/+":          s.onReply,
		"/sys/+/+/thing/service/property/+": s.onReply,
		"/sys/+/+/rrpc/response/+":          s.onReply,
		"/ext/ntp/+/+/request":              s.onNTP,
		"/sys/+/+/thing/dsltemplate/get":    s.serve(s.dslTemplate),
		"/sys/+/+/thing/dynamicTsl/get":     s.serve(s.dslTemplate),

		"/sys/+/+/thing/event/property/batch/post":   s.serve(s.batchPost),
		"/sys/+/+/thing/event/property/pack/post":    s.serve(s.packPost),
		"/sys/+/+/thing/event/property/history/post": s.serve(s.historyPost),
		"/sys/+/+/thing/deviceinfo/update":           s.serve(s.deviceInfo),
		"/sys/+/+/thing/deviceinfo/delete":           s.serve(s.deviceInfo),
	})
	if err != nil {
		return fmt.Errorf("subscribing to thing topics: %w", err)
	}
	stops := []func(){stop}
	for f, h := range map[string]func(string, []byte){
		"/ext/rrpc/+/sys/+/+/thing/service/+": s.onExtReply,
		"/ext/rrpc/+/+/+/user/#":              s.onCustomReply,
	} {
		u, err := s.o.Broker.SubscribeFromClients(f, h)
		if err != nil {
			for _, u := range stops {
				u()
			}
			return fmt.Errorf("subscribing to RRPC topics: %w", err)
		}
		stops = append(stops, u)
	}
	s.stop = func() {
		for _, u := range stops {
			u()
		}
	}
	return nil
}

// Stop unsubscribes.
func (s *Service) Stop() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// ProductChanged implements registry.ProductObserver: a changed (or
// deleted) product's model is read again on the next post.
func (s *Service) ProductChanged(_ context.Context, _ registry.ProductEventKind, pk string) {
	s.models.Delete(pk)
}

func (s *Service) model(ctx context.Context, pk string) (*tsl.Model, error) {
	return s.models.GetOrLoad(pk, func() (*tsl.Model, error) { return s.o.Registry.LookupThingModel(ctx, pk) })
}

// onPost checks a property or event post and answers it on …_reply.
func (s *Service) onPost(topic string, payload []byte) {
	t, err := alink.ParseTopic(topic)
	if err != nil || t.Reply {
		return
	}
	parts := strings.Split(t.Rest, "/") // thing/event/{id}/post
	if len(parts) != 4 {
		return
	}
	event := parts[2]
	method := "thing.event." + event + ".post"
	req, err := alink.DecodeRequest(payload)
	if err != nil {
		// The id is echoed whenever it could be read, even when refused.
		s.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Message: "request parameter error: " + err.Error(), Method: method + "_reply", Version: "1.0"})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep := alink.Reply{ID: req.ID, Code: alink.CodeSuccess, Message: "success", Method: method + "_reply", Version: "1.0", Data: struct{}{}}
	if err := s.check(ctx, t, event, req); err != nil {
		var te *tsl.Error
		switch {
		case errors.As(err, &te):
			rep.Code, rep.Message = tsl.Code(err), "tsl check failed: "+te.Error()
			rep.Data = map[string]string{"identifier": te.Identifier}
		case errors.Is(err, registry.ErrNoModel):
			rep.Code, rep.Message = tsl.CodeNoModel, "the product has no thing model"
		default:
			s.log.Error("checking a post", "topic", topic, "err", err)
			rep.Code, rep.Message = alink.CodeInternal, "internal error"
		}
	}
	if req.WantsReply() {
		s.reply(topic, rep)
	}
}

func (s *Service) check(ctx context.Context, t alink.Topic, event string, req alink.Request) error {
	m, err := s.model(ctx, t.ProductKey)
	if err != nil {
		return err
	}
	if m == nil {
		return registry.ErrNoModel
	}
	if event != "property" {
		return m.ValidateEvent(event, req.Params)
	}
	vals, err := m.ValidateProperties(req.Params)
	if err != nil {
		return err
	}
	now := s.o.Now()
	out := make([]registry.PropertyValue, 0, len(vals))
	for id, v := range vals {
		at := now
		if v.Time > 0 {
			at = time.UnixMilli(v.Time)
		}
		out = append(out, registry.PropertyValue{Identifier: id, Value: v.Value, Time: at})
	}
	return s.o.Registry.SaveProperties(ctx, t.ProductKey, t.DeviceName, out)
}

func (s *Service) reply(topic string, r alink.Reply) {
	if err := s.o.Broker.Publish(topic+"_reply", alink.EncodeReply(r), false, 0); err != nil {
		s.log.Warn("replying", "topic", topic, "err", err)
	}
}

// Reply is a device's answer to a property set or service call.
type Reply struct {
	ID      string          `json:"id"`
	Code    int             `json:"code"`
	Data    json.RawMessage `json:"data,omitempty"`
	Message string          `json:"message,omitempty"`
}

// onReply hands a device's answer to whoever waits for it.
func (s *Service) onReply(topic string, payload []byte) {
	t, err := alink.ParseTopic(topic)
	if err != nil {
		return
	}
	if !t.Reply && !strings.HasPrefix(t.Rest, "rrpc/response/") {
		return // our own request
	}
	r, ok := decodeReply(payload, false)
	if !ok {
		return
	}
	s.deliver(t.ProductKey+"/"+t.DeviceName+"/"+r.ID, r)
}

// decodeReply reads a device's Alink answer; false when it is none: not
// JSON, no id, or, when needCode, no code (on a topic shared by request
// and answer, a request).
func decodeReply(payload []byte, needCode bool) (Reply, bool) {
	var r Reply
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	var raw struct {
		ID      json.RawMessage `json:"id"`
		Code    *int            `json:"code"`
		Data    json.RawMessage `json:"data"`
		Message string          `json:"message"`
	}
	if dec.Decode(&raw) != nil || (needCode && raw.Code == nil) {
		return r, false
	}
	r.ID, _ = alink.ParseID(raw.ID)
	if r.ID == "" {
		return r, false
	}
	if raw.Code != nil {
		r.Code = *raw.Code
	}
	r.Data, r.Message = raw.Data, raw.Message
	return r, true
}

// deliver hands an answer to the call waiting under key, if any.
func (s *Service) deliver(key string, r Reply) {
	s.mu.Lock()
	ch := s.waiters[key]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r:
		default:
		}
	}
}

// Errors of operator calls.
var (
	// ErrOffline means the device has no live session.
	ErrOffline = errors.New("device is offline")
	// ErrTimeout means the device did not answer in time.
	ErrTimeout = errors.New("device did not answer in time")
	// ErrBadTopic means a custom-topic call named no custom topic.
	ErrBadTopic = errors.New("not a custom topic (user/…) without wildcards")
)

// Call is an operator's property set or service call.
type Call struct {
	ProductKey string
	DeviceName string
	Service    string // "property.set" or a service identifier
	Params     json.RawMessage
	// Sync waits for the answer (RRPC for services) up to Timeout.
	Sync    bool
	Timeout time.Duration
}

// Result is the outcome of a call.
type Result struct {
	MessageID string          `json:"messageId"`
	Replied   bool            `json:"replied"`
	Code      int             `json:"code,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Message   string          `json:"message,omitempty"`
}

// Invoke checks a call against the model and sends it to the device;
// synchronous calls wait for the answer.
func (s *Service) Invoke(ctx context.Context, c Call) (Result, error) {
	m, err := s.model(ctx, c.ProductKey)
	if err != nil {
		return Result{}, err
	}
	if m == nil {
		return Result{}, fmt.Errorf("%s: %w", c.ProductKey, registry.ErrNoModel)
	}
	if len(c.Params) == 0 {
		c.Params = json.RawMessage("{}")
	}
	var topic, method string
	if c.Service == "property.set" {
		if _, err := m.ValidatePropertySet(c.Params); err != nil {
			return Result{}, err
		}
		topic, method = alink.SysTopic(c.ProductKey, c.DeviceName, "thing/service/property/set"), "thing.service.property.set"
	} else {
		svc, err := m.ValidateServiceInput(c.Service, c.Params)
		if err != nil {
			return Result{}, err
		}
		if svc.CallType == "sync" {
			c.Sync = true
		}
		topic, method = alink.SysTopic(c.ProductKey, c.DeviceName, "thing/service/"+c.Service), "thing.service."+c.Service
	}
	if !s.o.Broker.Online(c.ProductKey, c.DeviceName) {
		return Result{}, fmt.Errorf("%s/%s: %w", c.ProductKey, c.DeviceName, ErrOffline)
	}
	id := strconv.FormatInt(s.ids.Add(1), 10)
	if c.Sync && c.Service != "property.set" {
		topic = s.syncTopic(c, id)
	}
	body, _ := json.Marshal(map[string]any{"id": id, "version": "1.0", "params": c.Params, "method": method})
	res := Result{MessageID: id}
	if !c.Sync {
		return res, s.o.Broker.Publish(topic, body, false, 1)
	}
	r, err := s.await(ctx, c.ProductKey+"/"+c.DeviceName+"/"+id, topic, body, c.Timeout)
	if err != nil {
		return res, fmt.Errorf("%s: %w", c.Service, err)
	}
	res.Replied, res.Code, res.Data, res.Message = true, r.Code, r.Data, r.Message
	return res, nil
}

// syncTopic is where a synchronous service call goes: the v4 RRPC form
// to a session that asked for it (ext=3; a sub-device's gateway's), the
// v3 one otherwise.
func (s *Service) syncTopic(c Call, id string) string {
	if s.o.Broker.UsesExtRRPC(c.ProductKey, c.DeviceName) {
		return ExtRRPCTopic(id, alink.SysTopic(c.ProductKey, c.DeviceName, "thing/service/"+c.Service))
	}
	return alink.SysTopic(c.ProductKey, c.DeviceName, "rrpc/request/"+id) // the RRPC pattern
}

// await publishes a request and waits up to timeout (5 s when 0) for the
// answer delivered under key.
func (s *Service) await(ctx context.Context, key, topic string, body []byte, timeout time.Duration) (Reply, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ch := make(chan Reply, 1)
	s.mu.Lock()
	s.waiters[key] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, key)
		s.mu.Unlock()
	}()
	if err := s.o.Broker.Publish(topic, body, false, 1); err != nil {
		return Reply{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-t.C:
		return Reply{}, fmt.Errorf("after %v: %w", timeout, ErrTimeout)
	case <-ctx.Done():
		return Reply{}, ctx.Err()
	}
}
