package shadowsvc

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
)

// presenceEvents are the broker's session events,
// $aws/events/presence/{connected|disconnected}/{clientId}, published as
// a device's session starts and ends (sub-devices' too).
const presenceEvents = "$aws/events/presence/+/+"

// presence writes sessions' starts and ends into devices' classic
// shadows (reported.connected, when their product keeps it: the Service
// decides) and, as a session starts, delivers what waits for the device.
// The broker publishes its events from the session's own goroutine, so
// they are queued here: one device always to the same worker, in order.
// A queue never makes a session wait: it holds one event a device (the
// last: a connect and a disconnect waiting together leave the one that
// came last, with its reason and time), so it is bounded by the devices.
type presence struct {
	m      *MQTT
	queues []*presenceQueue
	wg     sync.WaitGroup
}

// presenceEvent is what is used of the broker's event.
type presenceEvent struct {
	EventType        string `json:"eventType"`
	Timestamp        int64  `json:"timestamp"` // epoch milliseconds
	DisconnectReason string `json:"disconnectReason"`
	ProductKey       string `json:"productKey"`
	DeviceName       string `json:"deviceName"`
	// AccountID and ThingName are the device's as the broker read them
	// at CONNECT (absent from older events: the device is read then).
	AccountID string `json:"accountId"`
	ThingName string `json:"thingName"`
}

// presenceQueue is one worker's events, coalesced per device.
type presenceQueue struct {
	wake chan struct{} // capacity 1: something was queued, or closed

	mu     sync.Mutex
	events map[string]presenceEvent // "pk/dn" -> its last event
	order  []string                 // keys of events, first queued first
	closed bool
}

func newPresence(m *MQTT, workers int) *presence {
	p := &presence{m: m, queues: make([]*presenceQueue, workers)}
	for i := range p.queues {
		p.queues[i] = &presenceQueue{wake: make(chan struct{}, 1), events: map[string]presenceEvent{}}
	}
	return p
}

// put queues ev, replacing what waits for its device; false once closed.
func (q *presenceQueue) put(key string, ev presenceEvent) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if _, ok := q.events[key]; !ok {
		q.order = append(q.order, key)
	}
	q.events[key] = ev
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// take returns what waits, in order, and whether the queue is closed.
func (q *presenceQueue) take() ([]presenceEvent, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := make([]presenceEvent, 0, len(q.order))
	for _, k := range q.order {
		evs = append(evs, q.events[k])
	}
	clear(q.events)
	q.order = q.order[:0]
	return evs, q.closed
}

func (p *presence) start() {
	for _, q := range p.queues {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			q.work(p.apply)
		}()
	}
}

// work hands apply what is queued, in batches of at most
// maxPresenceBatch, until the queue is closed.
func (q *presenceQueue) work(apply func([]presenceEvent)) {
	for range q.wake {
		// What arrives meanwhile joins the batch: a short session's
		// connect and disconnect become one write.
		time.Sleep(presenceLinger)
		evs, closed := q.take()
		for len(evs) > 0 {
			n := min(len(evs), maxPresenceBatch)
			apply(evs[:n])
			evs = evs[n:]
		}
		if closed {
			return
		}
	}
}

// close ends the workers once they have applied what they hold; call it
// after unsubscribing.
func (p *presence) close() {
	for _, q := range p.queues {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	p.wg.Wait()
}

// onEvent queues a broker event published as JSON on presenceEvents,
// for a Broker without OnPresence.
func (p *presence) onEvent(topic string, payload []byte, fromDevice bool) {
	if fromDevice {
		return // only corral publishes presence (broker rights); be strict anyway
	}
	var ev presenceEvent
	if json.Unmarshal(payload, &ev) != nil || ev.ProductKey == "" || ev.DeviceName == "" {
		return
	}
	if !strings.HasSuffix(topic, "/"+ev.ProductKey+"."+ev.DeviceName) {
		return
	}
	p.queue(ev)
}

// onPresence queues a session's start or end the broker hands over as it
// is (OnPresence): the same event as onEvent's, without its JSON.
func (p *presence) onPresence(r registry.Presence) {
	ev := presenceEvent{EventType: "disconnected", Timestamp: r.At.UnixMilli(), DisconnectReason: r.Reason,
		ProductKey: r.ProductKey, DeviceName: r.DeviceName, AccountID: r.AccountID, ThingName: r.ThingName}
	if r.Online {
		ev.EventType = "connected"
	}
	if ev.ProductKey == "" || ev.DeviceName == "" {
		return
	}
	p.queue(ev)
}

// queue queues an event for its device's worker.
func (p *presence) queue(ev presenceEvent) {
	if ev.EventType == "disconnected" && ev.DisconnectReason == "DUPLICATE_CLIENTID" {
		// A newer session of the device took over: nothing to write, and
		// it must not replace that session's connect waiting here.
		return
	}
	key := ev.ProductKey + "/" + ev.DeviceName
	h := fnv.New32a()
	h.Write([]byte(key))
	p.queues[h.Sum32()%uint32(len(p.queues))].put(key, ev)
}

// presenceLinger is how long a worker woken by an event waits for more
// before it takes what is queued.
const presenceLinger = 10 * time.Millisecond

// maxPresenceBatch bounds the events of one worker written in one store
// transaction.
const maxPresenceBatch = 256

// apply writes a worker's events (one a device), their shadows in one
// store transaction. A session that ends because a newer one of the same
// device took over (DUPLICATE_CLIENTID), or whose device is online again
// by now, leaves the shadow connected.
func (p *presence) apply(evs []presenceEvent) {
	m := p.m
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws := make([]presenceWrite, 0, len(evs))
	var starts []*sessionStart
	for _, ev := range evs {
		if ev.AccountID != "" && ev.ThingName != "" {
			m.svc.knowDevice(ev.ProductKey, ev.DeviceName, deviceInfo{AccountID: ev.AccountID, ThingName: ev.ThingName})
		}
		at := time.UnixMilli(ev.Timestamp)
		switch ev.EventType {
		case "connected":
			// What waits first, then the presence (whose event tells that
			// both are done); one read of the shadow serves both, unless
			// the product does not keep presence.
			st := &sessionStart{pk: ev.ProductKey, dn: ev.DeviceName}
			starts = append(starts, st)
			ws = append(ws, presenceWrite{pk: ev.ProductKey, dn: ev.DeviceName, connected: true, at: at, read: func(doc shadow.Document, live bool) {
				st.read = true
				if live {
					m.deliverDoc(ctx, ev.ProductKey, ev.DeviceName, "", doc, true, true)
				}
			}})
		case "disconnected":
			if ev.DisconnectReason == "DUPLICATE_CLIENTID" || m.b.Online(ev.ProductKey, ev.DeviceName) {
				continue
			}
			ws = append(ws, presenceWrite{pk: ev.ProductKey, dn: ev.DeviceName, reason: ev.DisconnectReason, at: at})
		}
	}
	if len(ws) == 0 {
		return
	}
	for _, err := range m.svc.setConnectedAll(ctx, ws) {
		if err != nil {
			m.log.Warn("recording presence in the shadow", "err", err)
		}
	}
	for _, st := range starts {
		if !st.read {
			m.deliverPending(ctx, st.pk, st.dn, "", true, true)
		}
	}
}

// sessionStart is a connect being applied: whether its shadow was read
// (and what waits delivered from that read).
type sessionStart struct {
	pk, dn string
	read   bool
}
