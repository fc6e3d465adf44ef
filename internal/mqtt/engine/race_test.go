package engine

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// lifecycle is Hooks that check each connection's SessionStarted and
// SessionEnded: each once, the end never before the start.
type lifecycle struct {
	AllowAll
	mu      sync.Mutex
	started map[*Client]bool
	ended   map[*Client]bool
	live    int
	errs    []string
}

func newLifecycle() *lifecycle {
	return &lifecycle{started: map[*Client]bool{}, ended: map[*Client]bool{}}
}

func (h *lifecycle) SessionStarted(c *Client, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.started[c]:
		h.errs = append(h.errs, "started twice")
	case h.ended[c]:
		h.errs = append(h.errs, "started after its end")
	}
	h.started[c] = true
	h.live++
}

func (h *lifecycle) SessionEnded(c *Client, _ EndReason) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.ended[c]:
		h.errs = append(h.errs, "ended twice")
	case !h.started[c]:
		h.errs = append(h.errs, "ended before its start")
	}
	h.ended[c] = true
	h.live--
}

func (h *lifecycle) state() (live int, errs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.live, append([]string(nil), h.errs...)
}

// rawConnect dials and sends cp without waiting for anything; the
// connection is closed by the caller. Errors are returned, not fatal: it
// runs on goroutines of its own.
func rawConnect(addr string, cp *packet.Connect) (net.Conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	b, err := cp.Append(nil, cp.Version)
	if err == nil {
		_, err = nc.Write(b)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// TestTakeoverRace: CONNECTs with the same client id at the same moment,
// some racing the previous connection's own DISCONNECT (with a delayed
// will) or close, while QoS 1 messages are published to the session: one
// connection is left live, every displaced MQTT 5 connection that got a
// CONNACK is sent DISCONNECT 0x8E, each connection's start and end are
// reported once and in order, no goroutine leaks (TestMain), and every
// message reaches the session.
func TestTakeoverRace(t *testing.T) {
	h := newLifecycle()
	s, addr := start(t, Options{Hooks: h, QueueMessages: 10000})
	const id = "race"
	sub, _ := mustConnect(t, addr, persistent(packet.V5, id))
	sub.subscribe(1, nil, packet.Subscription{Filter: "race/t", QoS: 1})
	sub.send(&packet.Disconnect{})
	sub.closed()

	const msgs = 300
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := range msgs {
			if err := s.Publish(Message{Topic: "race/t", QoS: 1, Payload: fmt.Appendf(nil, "%d", i)}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()

	const rounds, racers = 40, 3
	var taken, displaced int
	var mu sync.Mutex
	for r := range rounds {
		var wg sync.WaitGroup
		for k := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := packet.V5
				if (r+k)%3 == 2 {
					v = packet.V311
				}
				cp := persistent(v, id)
				if v == packet.V5 && k == 0 {
					cp.Will = &packet.Will{Topic: "race/will", Payload: []byte("w")}
					cp.Will.Properties.WillDelay = 1
				}
				nc, err := rawConnect(addr, cp)
				if err != nil {
					t.Error(err)
					return
				}
				defer nc.Close()
				_ = nc.SetReadDeadline(time.Now().Add(wait))
				p, err := packet.Read(nc, v, 0)
				if err != nil {
					t.Errorf("round %d: no CONNACK: %v", r, err)
					return
				}
				if ack, ok := p.(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
					t.Errorf("round %d: got %+v, want CONNACK 0", r, p)
					return
				}
				switch k {
				case 0:
					if v == packet.V5 {
						// Its own end races the others' CONNECTs.
						b, _ := (&packet.Disconnect{ReasonCode: packet.DisconnectWithWill}).Append(nil, v)
						_, _ = nc.Write(b)
					}
					return
				case 1:
					return // closed at once
				}
				// Read until the connection is taken over or quiet:
				// the last one standing stays quiet.
				for {
					_ = nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
					p, err := packet.Read(nc, v, 0)
					if err != nil {
						return
					}
					if d, ok := p.(*packet.Disconnect); ok {
						mu.Lock()
						displaced++
						if d.ReasonCode == packet.SessionTakenOver {
							taken++
						}
						mu.Unlock()
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	<-pubDone
	mu.Lock()
	if taken != displaced {
		t.Errorf("%d of %d DISCONNECTs to displaced connections were 0x8E", taken, displaced)
	}
	mu.Unlock()

	// Every connection of the rounds is closed: the last one takes the
	// session and is given every message not yet acknowledged.
	c, ack := mustConnect(t, addr, persistent(packet.V5, id))
	if !ack.SessionPresent {
		t.Fatal("session lost in the races")
	}
	got := map[string]bool{}
	for len(got) < msgs {
		p, err := c.read(wait)
		if err != nil {
			t.Fatalf("%d of %d messages arrived: %v", len(got), msgs, err)
		}
		pub, ok := p.(*packet.Publish)
		if !ok {
			continue
		}
		if pub.Topic == "race/t" {
			got[string(pub.Payload)] = true
		}
		if pub.QoS > 0 {
			c.send(&packet.Puback{Ack: packet.Ack{PacketID: pub.PacketID}})
		}
	}
	eventually(t, "one live connection", func() bool { live, _ := h.state(); return live == 1 })
	if _, errs := h.state(); len(errs) > 0 {
		t.Fatalf("hooks: %v", errs)
	}
	if in, ok := s.SessionByID(id); !ok || !in.Connected {
		t.Fatalf("session %+v, %v", in, ok)
	}
}
