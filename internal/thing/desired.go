package thing

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/registry"
)

// DesiredRegistry is what the desired-value service needs of the registry.
type DesiredRegistry interface {
	LookupDesired(ctx context.Context, pk, dn string) ([]registry.DesiredValue, error)
	DeviceDeleteDesired(ctx context.Context, pk, dn string, versions map[string]int64, all bool) ([]string, error)
	MarkDesiredDelivered(ctx context.Context, pk, dn string, versions map[string]int64) error
}

// undeliveredKnower is what a DesiredRegistry may know besides (the
// registry does): MaybeUndeliveredDesired is false when a device is known
// to hold no desired value it has not acknowledged, so that its session
// start reads nothing.
type undeliveredKnower interface {
	MaybeUndeliveredDesired(ctx context.Context, pk, dn string) bool
}

// Desired serves devices' desired property values: the device reads them
// (thing.property.desired.get) and clears what it applied
// (thing.property.desired.delete); values it has not acknowledged are
// sent to it as a property set when it comes online, or at once when an
// operator sets them while it is online, so no command is lost while it
// is away. A property set the device answers with 200 marks those
// versions delivered.
type Desired struct {
	b    Broker
	reg  DesiredRegistry
	log  *slog.Logger
	stop func()
	ids  atomic.Int64

	mu   sync.Mutex
	sent map[string]pushed // "pk/dn/id" of a property set sent -> its versions

	// Session starts are pushed to by one worker, off the goroutine of the
	// session (and so off its CONNACK): a device waits once however often
	// it came online meanwhile, so the set is bounded by the devices.
	wake    chan struct{} // capacity 1
	done    chan struct{} // closed by Stop
	worker  sync.WaitGroup
	cmu     sync.Mutex
	waiting map[[2]string]struct{} // devices whose session started
	order   [][2]string            // the same, first come first
}

type pushed struct {
	versions map[string]int64
	at       time.Time
}

// NewDesired returns the service; Start subscribes it.
func NewDesired(b Broker, reg DesiredRegistry, log *slog.Logger) *Desired {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Desired{b: b, reg: reg, log: log, sent: map[string]pushed{},
		wake: make(chan struct{}, 1), done: make(chan struct{}), waiting: map[[2]string]struct{}{}}
	d.ids.Store(time.Now().UnixMilli())
	return d
}

// presenceConnected is where the broker announces a session's start:
// $aws/events/presence/connected/{pk}.{dn}.
const presenceConnected = "$aws/events/presence/connected/"

// presenceSource is a Broker that hands session starts to in-process
// observers as they are (broker.OnPresence), without their JSON; without
// it, Desired subscribes to presenceConnected.
type presenceSource interface {
	OnPresence(f func(registry.Presence)) (stop func())
}

// Start subscribes to devices' desired-value requests, their answers to
// property sets, and session starts.
func (d *Desired) Start() error {
	hs := map[string]func(string, []byte){
		"/sys/+/+/thing/property/desired/get":       d.onGet,
		"/sys/+/+/thing/property/desired/delete":    d.onDelete,
		"/sys/+/+/thing/service/property/set_reply": d.onSetReply,
	}
	ps, typed := d.b.(presenceSource)
	if !typed {
		hs[presenceConnected+"+"] = d.onConnected
	}
	stop, err := d.b.SubscribeAll(hs)
	if err != nil {
		return fmt.Errorf("subscribing to desired-value topics: %w", err)
	}
	d.stop = stop
	if typed {
		stopPresence := ps.OnPresence(d.onPresence)
		d.stop = func() { stopPresence(); stop() }
	}
	d.worker.Add(1)
	go d.pushConnected()
	return nil
}

// Stop unsubscribes and ends the worker once it has pushed to the
// devices whose sessions started before.
func (d *Desired) Stop() {
	if d.stop != nil {
		d.stop()
		d.stop = nil
		close(d.done)
		d.worker.Wait()
	}
}

// pushConnected pushes to the devices whose sessions started, until Stop.
func (d *Desired) pushConnected() {
	defer d.worker.Done()
	for {
		select {
		case <-d.wake:
			d.pushWaiting()
		case <-d.done:
			d.pushWaiting()
			return
		}
	}
}

// pushWaiting pushes to the devices waiting now.
func (d *Desired) pushWaiting() {
	d.cmu.Lock()
	devs := d.order
	d.order = nil
	clear(d.waiting)
	d.cmu.Unlock()
	ctx := context.Background()
	k, knows := d.reg.(undeliveredKnower)
	for _, dev := range devs {
		if !knows || k.MaybeUndeliveredDesired(ctx, dev[0], dev[1]) {
			d.Push(ctx, dev[0], dev[1])
		}
	}
}

func (d *Desired) reply(topic string, r alink.Reply) {
	if err := d.b.Publish(topic+"_reply", alink.EncodeReply(r), false, 0); err != nil {
		d.log.Warn("replying", "topic", topic, "err", err)
	}
}

// onGet answers thing.property.desired.get: params a list of property
// identifiers (none: all), data {"id":{"value":…,"version":N}} for those
// that have a desired value.
func (d *Desired) onGet(topic string, payload []byte) {
	t, req, ok := d.request(topic, payload)
	if !ok {
		return
	}
	var ids []string
	if len(req.Params) > 0 && string(req.Params) != "null" {
		if err := json.Unmarshal(req.Params, &ids); err != nil {
			d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Data: map[string]any{}, Message: "params must be a list of property identifiers"})
			return
		}
	}
	vals, err := d.reg.LookupDesired(context.Background(), t.ProductKey, t.DeviceName)
	if err != nil {
		d.log.Error("reading desired values", "err", err)
		d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeInternal, Data: map[string]any{}, Message: "internal error"})
		return
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	data := map[string]any{}
	for _, v := range vals {
		if len(ids) == 0 || want[v.Identifier] {
			data[v.Identifier] = map[string]any{"value": v.Value, "version": v.Version}
		}
	}
	if req.WantsReply() {
		d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeSuccess, Data: data, Method: "thing.property.desired.get"})
	}
}

// onDelete answers thing.property.desired.delete: params
// {"id":{"version":N}}; a property is deleted when N is its version (or
// no version is given).
func (d *Desired) onDelete(topic string, payload []byte) {
	t, req, ok := d.request(topic, payload)
	if !ok {
		return
	}
	var params map[string]struct {
		Version *json.Number `json:"version"`
	}
	if err := json.Unmarshal(req.Params, &params); err != nil || len(params) == 0 {
		d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Data: map[string]any{}, Message: `params must be {"identifier":{"version":N},…}`})
		return
	}
	versions := make(map[string]int64, len(params))
	for id, p := range params {
		if p.Version == nil {
			versions[id] = 0
			continue
		}
		n, err := p.Version.Int64()
		if err != nil || n < 1 {
			d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Data: map[string]any{}, Message: "version of " + id + " must be a positive integer"})
			return
		}
		versions[id] = n
	}
	if _, err := d.reg.DeviceDeleteDesired(context.Background(), t.ProductKey, t.DeviceName, versions, false); err != nil {
		d.log.Error("deleting desired values", "err", err)
		d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeInternal, Data: map[string]any{}, Message: "internal error"})
		return
	}
	if req.WantsReply() {
		d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeSuccess, Data: map[string]any{}, Method: "thing.property.desired.delete"})
	}
}

// request parses a device's request on its own topic.
func (d *Desired) request(topic string, payload []byte) (alink.Topic, alink.Request, bool) {
	t, err := alink.ParseTopic(topic)
	if err != nil || t.Reply {
		return t, alink.Request{}, false
	}
	req, err := alink.DecodeRequest(payload)
	if err != nil {
		d.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Data: map[string]any{}, Message: "malformed request"})
		return t, req, false
	}
	return t, req, true
}

// onConnected queues a session start published on presenceConnected.
func (d *Desired) onConnected(topic string, _ []byte) {
	pk, dn, ok := strings.Cut(strings.TrimPrefix(topic, presenceConnected), ".")
	if !ok {
		return
	}
	d.connected(pk, dn)
}

// onPresence queues a session start the broker hands over (OnPresence).
func (d *Desired) onPresence(p registry.Presence) {
	if p.Online {
		d.connected(p.ProductKey, p.DeviceName)
	}
}

// connected has the worker deliver what a device that just came online
// has not acknowledged; it runs on the session's goroutine, so it only
// queues.
func (d *Desired) connected(pk, dn string) {
	dev := [2]string{pk, dn}
	d.cmu.Lock()
	if _, ok := d.waiting[dev]; !ok {
		d.waiting[dev] = struct{}{}
		d.order = append(d.order, dev)
	}
	d.cmu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// DeviceSubscribed implements broker.SubscribeObserver: a device (or a
// gateway, for a sub-device) that subscribes its property-set topic
// itself, after its session started, gets what was waiting then.
func (d *Desired) DeviceSubscribed(pk, dn, filter string) {
	devs := [][2]string{{pk, dn}}
	if named := deviceOfFilter(filter); named[0] != "" && named != devs[0] && !strings.ContainsAny(named[0]+named[1], "+#") {
		devs = append(devs, named)
	}
	for _, dev := range devs {
		if packet.Match(filter, alink.SysTopic(dev[0], dev[1], "thing/service/property/set")) {
			d.Push(context.Background(), dev[0], dev[1])
		}
	}
}

// deviceOfFilter reads the device a /sys/{pk}/{dn}/… filter names.
func deviceOfFilter(f string) [2]string {
	rest, ok := strings.CutPrefix(f, "/sys/")
	if !ok {
		return [2]string{}
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 {
		return [2]string{}
	}
	return [2]string{parts[0], parts[1]}
}

// DesiredChanged implements registry.DesiredObserver: an online device
// gets new desired values at once.
func (d *Desired) DesiredChanged(ctx context.Context, pk, dn string) {
	if d.b.Online(pk, dn) {
		d.Push(ctx, pk, dn)
	}
}

// Push sends a device its unacknowledged desired values as one property
// set (thing.service.property.set); nothing when there are none.
func (d *Desired) Push(ctx context.Context, pk, dn string) {
	vals, err := d.reg.LookupDesired(ctx, pk, dn)
	if err != nil {
		d.log.Error("reading desired values", "err", err)
		return
	}
	params := map[string]json.RawMessage{}
	versions := map[string]int64{}
	for _, v := range vals {
		if v.Delivered < v.Version {
			params[v.Identifier] = v.Value
			versions[v.Identifier] = v.Version
		}
	}
	if len(params) == 0 {
		return
	}
	id := strconv.FormatInt(d.ids.Add(1), 10)
	body, _ := json.Marshal(map[string]any{"id": id, "version": "1.0", "params": params, "method": "thing.service.property.set"})
	now := time.Now()
	d.mu.Lock()
	for k, p := range d.sent { // answers come within seconds or never
		if now.Sub(p.at) > time.Hour {
			delete(d.sent, k)
		}
	}
	d.sent[pk+"/"+dn+"/"+id] = pushed{versions: versions, at: now}
	d.mu.Unlock()
	if err := d.b.Publish(alink.SysTopic(pk, dn, "thing/service/property/set"), body, false, 1); err != nil {
		d.log.Warn("sending desired values", "err", err)
	}
}

// onSetReply marks the versions a device acknowledged.
func (d *Desired) onSetReply(topic string, payload []byte) {
	t, err := alink.ParseTopic(topic)
	if err != nil {
		return
	}
	var r struct {
		ID   json.RawMessage `json:"id"`
		Code int             `json:"code"`
	}
	if json.Unmarshal(payload, &r) != nil {
		return
	}
	key := t.ProductKey + "/" + t.DeviceName + "/" + strings.Trim(string(r.ID), `"`)
	d.mu.Lock()
	p, ok := d.sent[key]
	delete(d.sent, key)
	d.mu.Unlock()
	if !ok || r.Code != alink.CodeSuccess {
		return
	}
	if err := d.reg.MarkDesiredDelivered(context.Background(), t.ProductKey, t.DeviceName, p.versions); err != nil {
		d.log.Error("recording delivered desired values", "err", err)
	}
}
