package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/engine"
	"github.com/corral-iot/corral/internal/registry"
)

// presenceEvent is AWS IoT's lifecycle event, plus the Alibaba identity.
type presenceEvent struct {
	ClientID            string `json:"clientId"`
	Timestamp           int64  `json:"timestamp"`
	EventType           string `json:"eventType"`
	SessionIdentifier   string `json:"sessionIdentifier,omitempty"`
	PrincipalIdentifier string `json:"principalIdentifier,omitempty"`
	DisconnectReason    string `json:"disconnectReason,omitempty"`
	VersionNumber       int64  `json:"versionNumber"`
	ProductKey          string `json:"productKey"`
	DeviceName          string `json:"deviceName"`
	IPAddress           string `json:"ipAddress,omitempty"`
	// AccountID and ThingName are the device's, as read at CONNECT: the
	// shadow service writes presence without reading the device again.
	AccountID string `json:"accountId,omitempty"`
	ThingName string `json:"thingName,omitempty"`
}

// publishPresence tells a device's connect or disconnect to the
// in-process presence observers (OnPresence) as a registry.Presence, and
// announces it on $aws/events/presence/{connected|disconnected}/{clientId}
// when a subscription would receive it (only application clients of the
// device's account may subscribe): the JSON is built only then.
func (b *Broker) publishPresence(s *session, eventType, reason string, at time.Time) {
	p := registry.Presence{ProductKey: s.id.productKey, DeviceName: s.id.deviceName, Online: eventType == "connected", At: at,
		Reason: reason, AccountID: s.id.accountID, ThingName: s.id.thingName}
	for _, o := range b.presObs.load() {
		o.f(p)
	}
	topic := presencePrefix + eventType + "/" + s.id.clientID
	if !b.eng.Subscribed(topic) {
		return
	}
	ev := presenceEvent{ClientID: s.id.clientID, Timestamp: at.UnixMilli(), EventType: eventType, DisconnectReason: reason,
		VersionNumber: at.UnixMilli(), ProductKey: s.id.productKey, DeviceName: s.id.deviceName, IPAddress: hostOf(s.remote()),
		PrincipalIdentifier: s.id.productKey + "/" + s.id.deviceName, AccountID: s.id.accountID, ThingName: s.id.thingName}
	data, _ := json.Marshal(ev)
	b.PublishEvent(topic, data)
}

// OnPresence hands f every device session's start and end (sub-devices'
// through their gateways too, and a session's end by takeover, with the
// reason DUPLICATE_CLIENTID), synchronously on the session's goroutine
// in its order, before the event is published: f must not block. It is
// what the presence events carry, without their JSON. The returned
// function stops it.
func (b *Broker) OnPresence(f func(registry.Presence)) (stop func()) { return b.presObs.add(f) }

// presenceObservers are the OnPresence functions, read without a lock
// by every session start and end.
type presenceObservers struct {
	mu   sync.Mutex // serialises add and stop
	next int
	fs   atomic.Pointer[[]presenceObserver]
}

type presenceObserver struct {
	id int
	f  func(registry.Presence)
}

func (o *presenceObservers) load() []presenceObserver {
	if fs := o.fs.Load(); fs != nil {
		return *fs
	}
	return nil
}

func (o *presenceObservers) add(f func(registry.Presence)) func() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	id := o.next
	fs := append(slices.Clone(o.load()), presenceObserver{id: id, f: f})
	o.fs.Store(&fs)
	return func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		fs := slices.DeleteFunc(slices.Clone(o.load()), func(p presenceObserver) bool { return p.id == id })
		o.fs.Store(&fs)
	}
}

// PublishEvent publishes a corral event on a topic that names its
// ProductKey ($aws/events/presence/{type}/{pk}.{dn},
// $corral/events/{kind}/{pk}/…): only application clients of the
// product's account receive it.
func (b *Broker) PublishEvent(topic string, payload []byte) {
	if err := b.eng.Publish(engine.Message{Topic: topic, Payload: payload}); err != nil {
		b.log.Warn("publishing event", "topic", topic, "err", err)
	}
}

func hostOf(remote string) string {
	for i := len(remote) - 1; i >= 0; i-- {
		if remote[i] == ':' {
			return remote[:i]
		}
	}
	return remote
}

// presenceWriter batches presence changes into few registry writes, so a
// burst of CONNECTs costs one transaction rather than one fsync each.
type presenceWriter struct {
	reg  Registry
	log  *slog.Logger
	wait time.Duration

	mu      sync.Mutex
	pending []registry.Presence
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func newPresenceWriter(reg Registry, log *slog.Logger, wait time.Duration) *presenceWriter {
	return &presenceWriter{reg: reg, log: log, wait: wait, kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
}

func (w *presenceWriter) record(p registry.Presence) {
	w.mu.Lock()
	w.pending = append(w.pending, p)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *presenceWriter) run() {
	defer close(w.stopped)
	for {
		select {
		case <-w.kick:
			select {
			case <-time.After(w.wait):
			case <-w.done:
			}
			w.flush()
		case <-w.done:
			w.flush()
			return
		}
	}
}

func (w *presenceWriter) flush() {
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.reg.RecordPresence(ctx, batch); err != nil {
		w.log.Error("recording presence", "devices", len(batch), "err", err)
	}
}

// flushNow writes pending presence at once (tests, shutdown).
func (w *presenceWriter) flushNow() { w.flush() }

func (w *presenceWriter) stop() {
	w.once.Do(func() { close(w.done) })
	select {
	case <-w.stopped:
	case <-time.After(10 * time.Second):
	}
}
