package shadowsvc

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strings"
	"sync"
	"time"
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
type presence struct {
	m      *MQTT
	queues []chan presenceEvent
	wg     sync.WaitGroup

	// mu guards closed: onEvent sends (holding it shared) only while the
	// queues are open; close takes it to close them.
	mu     sync.RWMutex
	closed bool
}

// presenceEvent is what is used of the broker's event.
type presenceEvent struct {
	EventType        string `json:"eventType"`
	Timestamp        int64  `json:"timestamp"` // epoch milliseconds
	DisconnectReason string `json:"disconnectReason"`
	ProductKey       string `json:"productKey"`
	DeviceName       string `json:"deviceName"`
}

// presenceQueue is how many events one worker holds before the sessions
// that publish them wait.
const presenceQueue = 1024

func newPresence(m *MQTT, workers int) *presence {
	p := &presence{m: m, queues: make([]chan presenceEvent, workers)}
	for i := range p.queues {
		p.queues[i] = make(chan presenceEvent, presenceQueue)
	}
	return p
}

func (p *presence) start() {
	for _, q := range p.queues {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for ev := range q {
				p.apply(ev)
			}
		}()
	}
}

// close ends the workers once they have applied what they hold; call it
// after unsubscribing.
func (p *presence) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, q := range p.queues {
			close(q)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// onEvent queues a broker event for its device's worker.
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
	h := fnv.New32a()
	h.Write([]byte(ev.ProductKey + "/" + ev.DeviceName))
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.closed {
		p.queues[h.Sum32()%uint32(len(p.queues))] <- ev
	}
}

// apply writes one event. A session that ends because a newer one of the
// same device took over (DUPLICATE_CLIENTID), or whose device is online
// again by now, leaves the shadow connected.
func (p *presence) apply(ev presenceEvent) {
	m := p.m
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	at := time.UnixMilli(ev.Timestamp)
	switch ev.EventType {
	case "connected":
		// What waits first, then the presence (whose event tells that
		// both are done).
		m.deliverPending(ctx, ev.ProductKey, ev.DeviceName, "", true, true)
		if err := m.svc.SetConnected(ctx, ev.ProductKey, ev.DeviceName, true, "", at); err != nil {
			m.log.Warn("recording presence in the shadow", "err", err)
		}
	case "disconnected":
		if ev.DisconnectReason == "DUPLICATE_CLIENTID" || m.b.Online(ev.ProductKey, ev.DeviceName) {
			return
		}
		if err := m.svc.SetConnected(ctx, ev.ProductKey, ev.DeviceName, false, ev.DisconnectReason, at); err != nil {
			m.log.Warn("recording presence in the shadow", "err", err)
		}
	}
}
