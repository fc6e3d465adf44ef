package conformance

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Cases of session life, flow control ordering and enhanced
// authentication, for both versions where they apply.

func sessionCases() []testCase {
	return []testCase{
		{name: "v5/auth/unsupported_method_connack_0x8c", run: v5AuthMethodUnsupported},
		{name: "v5/auth/auth_packet_without_method_protocol_error", run: v5AuthWithoutMethod},
		{name: "v5/flow_control/order_per_qos_with_window_full", needs: needQoS(1), run: v5OrderWindowFull},
		{name: "v5/flow_control/resend_within_new_receive_maximum", needs: needQoS(1), run: v5ResendWithinReceiveMax},
		{name: "v5/session/expiry_while_running_publishes_delayed_will", needs: needAll(needQoS(1), needWillDelay), run: v5ExpiryFiresWill},
		{name: "v5/session/takeover_keeps_inflight_and_queued", needs: needQoS(1), run: func(c *ct) { takeoverKeepsMessages(c, packet.V5) }},
		{name: "v3/session/takeover_keeps_inflight_and_queued", needs: needQoS(1), run: func(c *ct) { takeoverKeepsMessages(c, packet.V311) }},
	}
}

// v5AuthMethodUnsupported: a CONNECT with an Authentication Method the
// server does not support is answered CONNACK 0x8C and closed (MQTT 5
// 4.12: the server may refuse with Bad authentication method).
func v5AuthMethodUnsupported(c *ct) {
	cl, ack := c.connect(&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: c.id("dev"),
		Properties: packet.Properties{AuthMethod: "corral-conformance-unknown-method"}})
	if ack.ReasonCode != packet.BadAuthenticationMethod {
		c.Fatalf("CONNACK %#x, want 0x8C", byte(ack.ReasonCode))
	}
	cl.closed(waitFor)
}

// v5AuthWithoutMethod: AUTH from a client whose CONNECT had no
// Authentication Method is a protocol error [MQTT-4.12.0-6]: DISCONNECT
// 0x82 (or 0x81), then the close.
func v5AuthWithoutMethod(c *ct) {
	cl := c.v5("dev")
	cl.sendRaw(b(0xf0, 0x00)) // AUTH, reason Success, no properties
	if err := closedAfterDisconnectErr(cl); err != nil {
		c.Fatal(err)
	}
}

// v5OrderWindowFull: a subscriber whose Receive Maximum is 1 is sent QoS 1
// and QoS 0 messages interleaved: never more than one QoS 1 unacknowledged,
// each QoS's messages in publication order (MQTT 5 4.6; QoS 0 may pass a
// QoS 1 waiting for quota, 4.9), none lost.
func v5OrderWindowFull(c *ct) {
	sub, _ := c.v5with("sub", func(cp *packet.Connect) { cp.Properties.ReceiveMaximum = 1 })
	pub := c.v5("pub")
	topic := c.topic("ord")
	sub.sub(1, topic)
	const n = 4
	for i := range n {
		pub.pub(topic, 1, fmt.Sprint("a", i))
		pub.pub(topic, 0, fmt.Sprint("b", i))
	}
	var got [2][]string // by QoS
	var unacked *packet.Publish
	for len(got[0])+len(got[1]) < 2*n {
		d := waitFor
		if unacked != nil {
			d = quiet // long enough for a second QoS 1 to show
		}
		pk, err := sub.read(d)
		if errors.Is(err, os.ErrDeadlineExceeded) && unacked != nil {
			sub.send(&packet.Puback{Ack: packet.Ack{PacketID: unacked.PacketID}})
			unacked = nil
			continue
		}
		if err != nil {
			c.Fatalf("after %v: %v", got, err)
		}
		p, ok := pk.(*packet.Publish)
		if !ok || p.QoS > 1 {
			c.Fatalf("got %s, want a PUBLISH at QoS 0 or 1", describe(pk))
		}
		if p.QoS == 1 {
			if unacked != nil {
				c.Fatalf("%q sent while %q was unacknowledged: Receive Maximum 1", p.Payload, unacked.Payload)
			}
			unacked = p
		}
		got[p.QoS] = append(got[p.QoS], string(p.Payload))
	}
	if unacked != nil {
		sub.send(&packet.Puback{Ack: packet.Ack{PacketID: unacked.PacketID}})
	}
	for q, prefix := range []string{"b", "a"} {
		for i, s := range got[q] {
			if s != fmt.Sprint(prefix, i) {
				c.Fatalf("QoS %d messages %v, want %s0..%s%d in order", q, got[q], prefix, prefix, n-1)
			}
		}
	}
	sub.silent()
}

// v5ExpiryFiresWill: a session whose expiry (2 s) passes while the server
// runs ends then: its will, delayed 60 s, is published at the expiry
// (MQTT 5 3.1.3.2.2), and a reconnection finds no session.
func v5ExpiryFiresWill(c *ct) {
	sub := c.v5("sub")
	will := c.topic("will")
	sub.sub(1, will)
	dev, _ := willConnect(c, "dev", will, packet.Properties{WillDelay: 60}, 2)
	dev.sub(1, c.topic("dev/#"))
	dev.nc.Close()
	start := time.Now()
	if err := silentErr(sub, time.Second); err != nil {
		c.Fatalf("within 1 s of a 2 s session expiry: %v", err)
	}
	sub.wantWithin(lateWill, will, 1, "gone") // how late: see v5WillDelay
	c.Logf("will after %v, session expiry 2 s", time.Since(start))
	time.Sleep(quiet)
	dev, ack := c.persistent("dev", false, 0)
	if ack.SessionPresent {
		c.Fatal("session present after its expiry")
	}
	dev.bye()
}

// takeoverKeepsMessages: a persistent session taken over by a new
// connection keeps what its old one had not acknowledged (in flight,
// resent with DUP) and what was still queued behind it, in order.
func takeoverKeepsMessages(c *ct, v packet.Version) {
	topic := c.topic("tk")
	id := c.id("dev")
	cp := func() *packet.Connect {
		cp := &packet.Connect{Version: v, KeepAlive: 30, ClientID: id}
		if v == packet.V5 {
			cp.Properties.SessionExpiry = ptr(uint32(60))
			cp.Properties.ReceiveMaximum = 2
		}
		return cp
	}
	first := cp()
	first.CleanStart = v == packet.V5 // a 3.1.1 clean session would end with the connection
	old := c.connectOK(first)
	c.Cleanup(func() { c.endSession(v, id) })
	old.sub(1, topic)
	pub := c.v5("pub")
	const n = 6
	for i := range n {
		pub.pub(topic, 1, fmt.Sprint(i))
	}
	// The old connection reads two and acknowledges none.
	for i := range 2 {
		if p := old.nextRaw(); string(p.Payload) != fmt.Sprint(i) {
			c.Fatalf("old connection got %q, want %d", p.Payload, i)
		}
	}
	cl, ack := c.connect(cp())
	if ack.ReasonCode != packet.Success || !ack.SessionPresent {
		c.Fatalf("CONNACK %#x session present %v, want 0 and true", byte(ack.ReasonCode), ack.SessionPresent)
	}
	for i := range n {
		p := cl.next()
		if p.Topic != topic || string(p.Payload) != fmt.Sprint(i) {
			c.Fatalf("got %q, want %d: in flight first (DUP), then queued, in order", p.Payload, i)
		}
		if i < 2 && !p.Dup {
			c.Errorf("message %d resent without DUP", i)
		}
	}
	cl.silent()
	cl.bye()
}

// v5ResendWithinReceiveMax: a session resumed with a smaller Receive
// Maximum than the messages it had in flight is resent no more than the
// new maximum at a time (MQTT 5 4.9), all of them in the end, in order.
func v5ResendWithinReceiveMax(c *ct) {
	topic := c.topic("rw")
	id := c.id("dev")
	cp := func(clean bool, rm uint16) *packet.Connect {
		return &packet.Connect{Version: packet.V5, KeepAlive: 30, ClientID: id, CleanStart: clean,
			Properties: packet.Properties{SessionExpiry: ptr(uint32(60)), ReceiveMaximum: rm}}
	}
	old := c.connectOK(cp(true, 4))
	c.Cleanup(func() { c.endSession(packet.V5, id) })
	old.sub(1, topic)
	pub := c.v5("pub")
	const n = 6
	for i := range n {
		pub.pub(topic, 1, fmt.Sprint(i))
	}
	for i := range 4 {
		if p := old.nextRaw(); string(p.Payload) != fmt.Sprint(i) {
			c.Fatalf("got %q, want %d", p.Payload, i)
		}
	}
	old.nc.Close()
	time.Sleep(quiet)
	cl := c.connectOK(cp(false, 2))
	var unacked []*packet.Publish
	for i := range n {
		if len(unacked) == 2 {
			if err := silentErr(cl, quiet); err != nil {
				c.Fatalf("with 2 unacknowledged, Receive Maximum 2: %v", err)
			}
			cl.send(&packet.Puback{Ack: packet.Ack{PacketID: unacked[0].PacketID}})
			unacked = unacked[1:]
		}
		p := cl.nextRaw()
		if string(p.Payload) != fmt.Sprint(i) {
			c.Fatalf("got %q, want %d in order", p.Payload, i)
		}
		unacked = append(unacked, p)
	}
	for _, p := range unacked {
		cl.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
	}
	cl.silent()
	cl.bye()
}
