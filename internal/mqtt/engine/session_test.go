package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// TestTakeover: a second CONNECT with the same id ends the first
// connection: v5 gets DISCONNECT 0x8E, 3.1.1 a bare close; the first
// session's end is reported before the second's start.
func TestTakeover(t *testing.T) {
	h := &hooks{}
	_, addr := start(t, Options{Hooks: h})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			id := "take-" + ver.name
			old, _ := mustConnect(t, addr, persistent(ver.v, id))
			_, ack := mustConnect(t, addr, persistent(ver.v, id))
			if !ack.SessionPresent {
				t.Fatal("session present false on resume")
			}
			got := old.closed()
			if ver.v == packet.V5 {
				if len(got) != 1 {
					t.Fatalf("old connection got %d packets, want DISCONNECT", len(got))
				}
				d, ok := got[0].(*packet.Disconnect)
				if !ok || d.ReasonCode != packet.SessionTakenOver {
					t.Fatalf("got %+v", got[0])
				}
			} else if len(got) != 0 {
				t.Fatalf("3.1.1 client got %s", got[0].Type())
			}
			want := []string{"start " + id, "end " + id + " takeover", "start " + id}
			var evs []string
			for _, e := range h.log() {
				if strings.Contains(e, id) {
					evs = append(evs, e)
				}
			}
			if !equal(evs, want) {
				t.Fatalf("events %v, want %v", evs, want)
			}
		})
	}
}

// TestCleanStartDiscards: clean start drops the old session's
// subscriptions; session present is false.
func TestCleanStartDiscards(t *testing.T) {
	s, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			id := "clean-" + ver.name
			c, _ := mustConnect(t, addr, connOf(ver.v, id, false))
			c.subscribe(1, nil, packet.Subscription{Filter: "cs/" + ver.name, QoS: 1})
			c2, ack := mustConnect(t, addr, connOf(ver.v, id, true))
			if ack.SessionPresent {
				t.Fatal("session present on clean start")
			}
			if err := s.Publish(Message{Topic: "cs/" + ver.name, QoS: 1}); err != nil {
				t.Fatal(err)
			}
			c2.silent(200 * time.Millisecond)
		})
	}
}

// TestEmptyClientID: 3.1.1 needs clean session (else CONNACK 0x02); MQTT 5
// gets an Assigned Client Identifier that names the session.
func TestEmptyClientID(t *testing.T) {
	s, addr := start(t, Options{})
	t.Run("v311 persistent", func(t *testing.T) {
		_, ack := connect(t, addr, conn3("", false))
		if ack.ReasonCode != 2 {
			t.Fatalf("CONNACK %d, want 2", ack.ReasonCode)
		}
	})
	t.Run("v311 clean", func(t *testing.T) {
		mustConnect(t, addr, conn3("", true))
	})
	t.Run("v5", func(t *testing.T) {
		cp := conn5("", true)
		e := uint32(60)
		cp.Properties.SessionExpiry = &e
		c, ack := mustConnect(t, addr, cp)
		id := ack.Properties.AssignedClientID
		if id == "" {
			t.Fatal("no assigned client id")
		}
		c.subscribe(1, nil, packet.Subscription{Filter: "assigned", QoS: 1})
		c.send(&packet.Disconnect{})
		c.closed()
		if err := s.Publish(Message{Topic: "assigned", QoS: 1, Payload: []byte("q")}); err != nil {
			t.Fatal(err)
		}
		c2, ack := mustConnect(t, addr, conn5(id, false))
		if !ack.SessionPresent {
			t.Fatal("assigned id does not name the session")
		}
		if p := c2.recvPublish(); string(p.Payload) != "q" {
			t.Fatalf("got %q", p.Payload)
		}
	})
}

// persistent is a CONNECT resuming a session that outlives its connection.
func persistent(v packet.Version, id string) *packet.Connect {
	cp := connOf(v, id, false)
	if v == packet.V5 {
		e := uint32(300)
		cp.Properties.SessionExpiry = &e
	}
	return cp
}

// TestOfflineQueue: QoS 1 and 2 messages published while a persistent
// session is offline are delivered when it reconnects; QoS 0 is not (by
// default) and is counted.
func TestOfflineQueue(t *testing.T) {
	s, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			id, topic := "off-"+ver.name, "off/"+ver.name
			c, _ := mustConnect(t, addr, persistent(ver.v, id))
			c.subscribe(1, nil, packet.Subscription{Filter: topic, QoS: 2})
			c.send(&packet.Disconnect{})
			c.closed()
			eventually(t, "disconnected", func() bool { return !s.Connected(id) })
			before := s.Stats().Drops[DropOfflineQoS0]
			for i, q := range []byte{1, 0, 2} {
				if err := s.Publish(Message{Topic: topic, QoS: q, Payload: []byte{byte('0' + i)}}); err != nil {
					t.Fatal(err)
				}
			}
			c2, ack := mustConnect(t, addr, persistent(ver.v, id))
			if !ack.SessionPresent {
				t.Fatal("no session present")
			}
			if p := c2.recvPublish(); p.QoS != 1 || string(p.Payload) != "0" {
				t.Fatalf("first %+v", p)
			}
			if p := c2.recvPublish(); p.QoS != 2 || string(p.Payload) != "2" {
				t.Fatalf("second %+v", p)
			}
			if got := s.Stats().Drops[DropOfflineQoS0] - before; got != 1 {
				t.Fatalf("offline QoS 0 drops %d, want 1", got)
			}
		})
	}
}

// TestRedeliveryDUP: unacknowledged messages are resent on reconnect with
// DUP, the same packet ids, in their original order; a PUBREC'd QoS 2 one
// gets its PUBREL again.
func TestRedeliveryDUP(t *testing.T) {
	s, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			id, topic := "dup-"+ver.name, "dup/"+ver.name
			c, _ := mustConnect(t, addr, persistent(ver.v, id))
			c.subscribe(1, nil, packet.Subscription{Filter: topic, QoS: 2})
			for i := range 5 {
				if err := s.Publish(Message{Topic: topic, QoS: 1 + byte(i%2), Payload: []byte{byte('a' + i)}}); err != nil {
					t.Fatal(err)
				}
			}
			var ids []uint16
			for range 5 {
				ids = append(ids, c.recvPublish().PacketID)
			}
			c.send(&packet.Pubrec{Ack: packet.Ack{PacketID: ids[1]}}) // 'b' is QoS 2
			if rel, ok := c.recv().(*packet.Pubrel); !ok || rel.PacketID != ids[1] {
				t.Fatalf("PUBREL %+v", rel)
			}
			c.c.Close()
			eventually(t, "disconnected", func() bool { return !s.Connected(id) })
			c2, _ := mustConnect(t, addr, persistent(ver.v, id))
			for i, want := range ids {
				p := c2.recv()
				if i == 1 {
					if rel, ok := p.(*packet.Pubrel); !ok || rel.PacketID != want {
						t.Fatalf("resend %d: %+v, want PUBREL %d", i, p, want)
					}
					continue
				}
				pub, ok := p.(*packet.Publish)
				if !ok || !pub.Dup || pub.PacketID != want || pub.Payload[0] != byte('a'+i) {
					t.Fatalf("resend %d: %+v", i, p)
				}
			}
		})
	}
}

// TestReceiveMaximum: with the client's Receive Maximum 2, six QoS 1
// messages all arrive, two at a time, each ack returning quota.
func TestReceiveMaximum(t *testing.T) {
	s, addr := start(t, Options{})
	cp := conn5("rm", true)
	cp.Properties.ReceiveMaximum = 2
	c, _ := mustConnect(t, addr, cp)
	c.subscribe(1, nil, packet.Subscription{Filter: "rm", QoS: 1})
	for i := range 6 {
		if err := s.Publish(Message{Topic: "rm", QoS: 1, Payload: []byte{byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 6; i += 2 {
		a, b := c.recvPublish(), c.recvPublish()
		if a.Payload[0] != byte('0'+i) || b.Payload[0] != byte('1'+i) {
			t.Fatalf("order %q %q", a.Payload, b.Payload)
		}
		c.silent(100 * time.Millisecond)
		c.send(&packet.Puback{Ack: packet.Ack{PacketID: a.PacketID}})
		c.send(&packet.Puback{Ack: packet.Ack{PacketID: b.PacketID}})
	}
}

// TestInboundReceiveMaximum: more unreleased QoS 2 messages than the
// advertised Receive Maximum is DISCONNECT 0x93.
func TestInboundReceiveMaximum(t *testing.T) {
	_, addr := start(t, Options{ReceiveMaximum: 2})
	c, ack := mustConnect(t, addr, conn5("irm", true))
	if ack.Properties.ReceiveMaximum != 2 {
		t.Fatalf("advertised %d", ack.Properties.ReceiveMaximum)
	}
	for i := range 3 {
		c.send(&packet.Publish{QoS: 2, Topic: "x", PacketID: uint16(i + 1)})
	}
	c.recv()
	c.recv()
	got := c.closed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.ReceiveMaximumExceeded {
		t.Fatalf("got %v", got)
	}
}

// TestQueueOverflow: a subscriber that does not read never blocks the
// publisher; past the queue bound QoS 0 messages go first, then new ones,
// each counted.
func TestQueueOverflow(t *testing.T) {
	var dropped []string
	s, addr := start(t, Options{QueueMessages: 3, MaxInflight: 1,
		OnDrop: func(id string, r DropReason) { dropped = append(dropped, r.String()) }})
	c, _ := mustConnect(t, addr, conn3("slow", true))
	c.subscribe(1, nil, packet.Subscription{Filter: "slow", QoS: 1})
	pub := func(q byte, b byte) {
		if err := s.Publish(Message{Topic: "slow", QoS: q, Payload: []byte{b}}); err != nil {
			t.Fatal(err)
		}
	}
	pub(1, 'a') // in flight
	eventually(t, "a in flight", func() bool { in, _ := s.SessionByID("slow"); return in.Inflight == 1 })
	pub(1, 'c') // held back by the window, and holds b behind it
	pub(0, 'b')
	pub(1, 'd') // queue: c b d
	pub(1, 'e') // evicts b
	pub(1, 'f') // dropped
	want := []string{"queue_full_qos0", "queue_full"}
	if fmt.Sprint(dropped) != fmt.Sprint(want) {
		t.Fatalf("drops %v, want %v", dropped, want)
	}
	var got []byte
	for range 4 {
		p := c.recvPublish()
		got = append(got, p.Payload[0])
		c.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
	}
	if string(got) != "acde" {
		t.Fatalf("delivered %q", got)
	}
}

// TestSessionExpiry: an MQTT 5 session with expiry 1 s is gone after it.
func TestSessionExpiry(t *testing.T) {
	s, addr := start(t, Options{})
	cp := conn5("exp", false)
	e := uint32(1)
	cp.Properties.SessionExpiry = &e
	c, _ := mustConnect(t, addr, cp)
	c.send(&packet.Disconnect{})
	c.closed()
	eventually(t, "offline", func() bool { in, ok := s.SessionByID("exp"); return ok && !in.Connected })
	eventually(t, "expired", func() bool { _, ok := s.SessionByID("exp"); return !ok })
	_, ack := mustConnect(t, addr, conn5("exp", false))
	if ack.SessionPresent {
		t.Fatal("expired session present")
	}
}

// TestSlowSubscriber: a subscriber that stops reading neither blocks the
// publisher nor delays another subscriber; its overflow is counted, and
// Close still ends it promptly.
func TestSlowSubscriber(t *testing.T) {
	s, addr := start(t, Options{})
	slow, _ := mustConnect(t, addr, conn3("stalled", true))
	slow.subscribe(1, nil, packet.Subscription{Filter: "fan", QoS: 1})
	fast, _ := mustConnect(t, addr, conn5("fast", true))
	fast.subscribe(1, nil, packet.Subscription{Filter: "fan", QoS: 1})
	pub, _ := mustConnect(t, addr, conn5("fanpub", true))
	const n = 3000
	payload := make([]byte, 8<<10)
	done := make(chan error, 1)
	go func() {
		for i := range n {
			fp, err := fast.read(wait)
			if err != nil {
				done <- err
				return
			}
			m := fp.(*packet.Publish)
			if int(m.Payload[0])|int(m.Payload[1])<<8 != i {
				done <- fmt.Errorf("message %d out of order", i)
				return
			}
			fast.send(&packet.Puback{Ack: packet.Ack{PacketID: m.PacketID}})
		}
		done <- nil
	}()
	for i := range n {
		payload[0], payload[1] = byte(i), byte(i>>8)
		pub.send(&packet.Publish{Topic: "fan", QoS: 1, PacketID: uint16(i%60000 + 1), Payload: payload})
		if _, ok := pub.recv().(*packet.Puback); !ok {
			t.Fatal("no PUBACK")
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Stats().Drops[DropQueueFull] == 0 {
		t.Fatal("the stalled subscriber's overflow was not counted")
	}
}

// TestResendWithinReceiveMaximum: a session resumed with a Receive Maximum
// smaller than its in-flight window is resent only what the new maximum
// allows (DUP, the same ids, in order), the rest as acknowledgements
// return quota, then what was queued.
func TestResendWithinReceiveMaximum(t *testing.T) {
	s, addr := start(t, Options{})
	cp := persistent(packet.V5, "rw")
	cp.Properties.ReceiveMaximum = 4
	c, _ := mustConnect(t, addr, cp)
	c.subscribe(1, nil, packet.Subscription{Filter: "rw", QoS: 1})
	for i := range 6 {
		if err := s.Publish(Message{Topic: "rw", QoS: 1, Payload: []byte{byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	ids := map[byte]uint16{}
	for range 4 {
		p := c.recvPublish()
		ids[p.Payload[0]] = p.PacketID
	}
	c.c.Close()
	eventually(t, "offline", func() bool { return !s.Connected("rw") })

	cp = persistent(packet.V5, "rw")
	cp.Properties.ReceiveMaximum = 2
	c, _ = mustConnect(t, addr, cp)
	var unacked []*packet.Publish
	for i := range 6 {
		if len(unacked) == 2 {
			c.silent(100 * time.Millisecond) // the window is full
			c.send(&packet.Puback{Ack: packet.Ack{PacketID: unacked[0].PacketID}})
			unacked = unacked[1:]
		}
		p := c.recvPublish()
		if p.Payload[0] != byte('0'+i) {
			t.Fatalf("got %q, want %d", p.Payload, i)
		}
		if i < 4 && (!p.Dup || p.PacketID != ids[p.Payload[0]]) {
			t.Fatalf("resend of %d: DUP %v id %d, want DUP and id %d", i, p.Dup, p.PacketID, ids[p.Payload[0]])
		}
		unacked = append(unacked, p)
	}
	for _, p := range unacked {
		c.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
	}
	c.silent(100 * time.Millisecond)
	eventually(t, "nothing in flight", func() bool { in, _ := s.SessionByID("rw"); return in.Inflight == 0 && in.Queued == 0 })
}

// TestQuickReconnectKeepsNewSubscriptions: a client that disconnects and
// comes straight back with the same id (a new clean session) keeps the
// subscriptions it makes then: the old session's end, finishing late,
// does not remove them.
func TestQuickReconnectKeepsNewSubscriptions(t *testing.T) {
	srv, addr := start(t, Options{})
	for i := range 300 {
		old, _ := mustConnect(t, addr, conn3("again", true))
		old.subscribe(1, nil, packet.Subscription{Filter: "q"})
		old.send(&packet.Disconnect{})
		old.c.Close()
		cl, _ := mustConnect(t, addr, conn3("again", true))
		cl.subscribe(2, nil, packet.Subscription{Filter: "q"})
		time.Sleep(time.Millisecond) // the old session's end has come by now, early or late
		if err := srv.Publish(Message{Topic: "q", Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if p, err := cl.read(wait); err != nil {
			t.Fatalf("round %d: the new session's subscription is gone: %v", i, err)
		} else if _, ok := p.(*packet.Publish); !ok {
			t.Fatalf("round %d: got %v", i, p)
		}
		cl.c.Close()
	}
}
