package shadowsvc

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestPresenceQueueCoalesces: a device's events waiting together leave
// its last one (reason and time with it) in the place of its first; a
// newer session's takeover end never replaces its connect; a closed
// queue takes nothing.
func TestPresenceQueueCoalesces(t *testing.T) {
	ev := func(typ, dn, reason string, ts int64) presenceEvent {
		return presenceEvent{EventType: typ, Timestamp: ts, DisconnectReason: reason, ProductKey: "pk", DeviceName: dn}
	}
	for _, tt := range []struct {
		name string
		in   []presenceEvent
		want []presenceEvent
	}{
		{"one device, connect then disconnect", []presenceEvent{ev("connected", "a", "", 1), ev("disconnected", "a", "keepalive timeout", 2)},
			[]presenceEvent{ev("disconnected", "a", "keepalive timeout", 2)}},
		{"one device, disconnect then connect", []presenceEvent{ev("disconnected", "a", "CLIENT_INITIATED_DISCONNECT", 1), ev("connected", "a", "", 2)},
			[]presenceEvent{ev("connected", "a", "", 2)}},
		{"takeover end keeps the new session's connect", []presenceEvent{ev("connected", "a", "", 1), ev("disconnected", "a", "DUPLICATE_CLIENTID", 2)},
			[]presenceEvent{ev("connected", "a", "", 1)}},
		{"devices keep their first order", []presenceEvent{ev("connected", "a", "", 1), ev("connected", "b", "", 2), ev("disconnected", "a", "", 3)},
			[]presenceEvent{ev("disconnected", "a", "", 3), ev("connected", "b", "", 2)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPresence(nil, 1)
			for _, e := range tt.in {
				b, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				p.onEvent(presenceEvents[:len(presenceEvents)-3]+e.EventType+"/pk."+e.DeviceName, b, false)
			}
			got, closed := p.queues[0].take()
			if closed || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("took %+v (closed %v), want %+v", got, closed, tt.want)
			}
			if got, _ := p.queues[0].take(); len(got) != 0 {
				t.Fatalf("took %+v again", got)
			}
		})
	}
	p := newPresence(nil, 1)
	p.close()
	if p.queues[0].put("pk/a", ev("connected", "a", "", 1)) {
		t.Fatal("a closed queue took an event")
	}
}

// TestPresenceWorkerLingers: a device's disconnect arriving soon after
// its connect woke the worker is applied with it, as one event (a short
// session costs one write); what comes after the batch is applied next.
func TestPresenceWorkerLingers(t *testing.T) {
	q := newPresence(nil, 1).queues[0]
	batches := make(chan []presenceEvent, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.work(func(evs []presenceEvent) { batches <- append([]presenceEvent(nil), evs...) })
	}()
	conn := presenceEvent{EventType: "connected", Timestamp: 1, ProductKey: "pk", DeviceName: "a"}
	disc := presenceEvent{EventType: "disconnected", Timestamp: 2, DisconnectReason: "CLIENT_INITIATED_DISCONNECT", ProductKey: "pk", DeviceName: "a"}
	q.put("pk/a", conn)
	time.Sleep(2 * time.Millisecond) // the worker is awake, lingering
	q.put("pk/a", disc)
	if got := <-batches; !reflect.DeepEqual(got, []presenceEvent{disc}) {
		t.Fatalf("first batch %+v, want the disconnect alone", got)
	}
	q.put("pk/a", conn)
	if got := <-batches; !reflect.DeepEqual(got, []presenceEvent{conn}) {
		t.Fatalf("second batch %+v, want the connect", got)
	}
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake <- struct{}{}
	<-done
}
