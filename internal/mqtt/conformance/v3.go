package conformance

import (
	"fmt"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// MQTT 3.1.1 cases.

func v3Cases() []testCase {
	cs := malformedCases(packet.V311)
	for q := byte(0); q <= 2; q++ {
		cs = append(cs, testCase{name: fmt.Sprintf("v3/pubsub/qos%d", q), needs: needQoS(q), run: func(c *ct) { v3PubSub(c, q) }})
	}
	return append(cs,
		testCase{name: "v3/retained/set_replace_clear", needs: needAll(needRetain, needQoS(1)), run: v3Retained},
		testCase{name: "v3/retained/live_delivery_retain_0", needs: needRetain, run: v3RetainedLive},
		testCase{name: "v3/topics/dollar_not_matched_by_wildcards", run: v3DollarTopics},
		testCase{name: "v3/keepalive/closed_and_will_published", needs: needQoS(1), run: func(c *ct) { v3KeepAlive(c, false) }},
		testCase{name: "v3/keepalive/closed_within_1.5x", needs: needQoS(1), run: func(c *ct) { v3KeepAlive(c, true) }},
		testCase{name: "v3/session/offline_queueing", needs: needQoS(2), run: v3OfflineQueue},
		testCase{name: "v3/session/present_flag", run: v3SessionPresent},
		testCase{name: "v3/session/redelivery_on_reconnect_dup_in_order", needs: needQoS(1), run: v3Redelivery},
		testCase{name: "v3/session/pubrel_resent_on_reconnect", needs: needQoS(2), run: v3PubrelResent},
		testCase{name: "v3/session/takeover_closes_old_without_disconnect", needs: needQoS(1), run: v3Takeover},
		testCase{name: "v3/will/published_on_takeover", needs: needQoS(1), run: v3WillOnTakeover},
		testCase{name: "v3/publish/qos2_dup_before_pubrel_delivered_once", needs: needQoS(2), run: func(c *ct) { qos2Dup(c, packet.V311) }},
		testCase{name: "v3/subscribe/overlapping", needs: needQoS(2), run: v3Overlapping},
		testCase{name: "v3/subscribe/failure_0x80", needs: needRefused, run: v3SubscribeFailure},
		testCase{name: "v3/subscribe/qos_downgraded_to_granted", needs: needQoS(1), run: v3Downgrade},
		testCase{name: "v3/unsubscribe", run: v3Unsubscribe},
		testCase{name: "v3/connect/zero_length_client_id", run: v3ZeroLengthID},
		testCase{name: "v3/ping", run: v3Ping},
	)
}

func needRefused(f Features) string {
	if f.RefusedFilter == "" {
		return "declares no filter it refuses"
	}
	return ""
}

func v3PubSub(c *ct, q byte) {
	sub, pub := c.v3("sub"), c.v3("pub")
	topic := c.topic("a/b")
	sub.sub(q, topic)
	pub.pub(topic, q, "hello")
	p := sub.want(topic, q, "hello")
	if p.Retain || p.Dup {
		c.Errorf("live delivery retain %v dup %v, want neither", p.Retain, p.Dup)
	}
	if q > 0 && p.PacketID == 0 {
		c.Errorf("QoS %d delivery without a packet id", q)
	}
	if q == 2 {
		// The PUBREL for our PUBREC, then nothing more.
		rel := expect[*packet.Pubrel](sub)
		if rel.PacketID != p.PacketID {
			c.Fatalf("PUBREL id %d, want %d", rel.PacketID, p.PacketID)
		}
		sub.send(&packet.Pubcomp{Ack: packet.Ack{PacketID: rel.PacketID}})
	}
	sub.silent()
}

func v3Retained(c *ct) {
	pub := c.v3("pub")
	topic := c.topic("state")
	c.Cleanup(func() { c.clearRetained(topic) })
	pub.publish(&packet.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("one")})
	pub.publish(&packet.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("two")})

	s1 := c.v3("s1")
	s1.sub(1, c.topic("#"))
	p := s1.want(topic, 1, "two")
	if !p.Retain {
		c.Errorf("retained message sent on subscribe with RETAIN 0")
	}
	s1.silent()

	// An empty retained payload clears it, and is delivered to the live
	// subscriber as an ordinary (empty) message.
	pub.publish(&packet.Publish{Topic: topic, QoS: 1, Retain: true})
	if p := s1.want(topic, 1, ""); p.Retain {
		c.Errorf("live delivery of the clearing message with RETAIN 1")
	}
	s2 := c.v3("s2")
	s2.sub(1, c.topic("#"))
	s2.silent()
}

func v3RetainedLive(c *ct) {
	sub, pub := c.v3("sub"), c.v3("pub")
	topic := c.topic("live")
	c.Cleanup(func() { c.clearRetained(topic) })
	sub.sub(0, topic)
	pub.publish(&packet.Publish{Topic: topic, Retain: true, Payload: []byte("x")})
	if p := sub.want(topic, 0, "x"); p.Retain {
		c.Errorf("a retained message published to a live subscriber arrives with RETAIN 1, want 0")
	}
}

func v3DollarTopics(c *ct) {
	sub, pub := c.v3("sub"), c.v3("pub")
	dollar := "$" + c.prefix + "/x"
	marker := c.topic("x")
	// "+/…" and "#" match any first level but one starting with '$'.
	_, rest, _ := strings.Cut(c.prefix, "/")
	sub.sub(0, "+/"+rest+"/x", "#")
	pub.pub(dollar, 0, "hidden")
	pub.pub(marker, 0, "seen")
	for _, p := range sub.drainUntil(marker) {
		if p.Topic == dollar {
			c.Fatalf("%q delivered to a subscriber of a wildcard filter", dollar)
		}
	}
}

// v3KeepAlive: a silent client is closed after its keep alive and its will
// published; strict also requires the close within 1.5 × keep alive (with a
// second for brokers with whole-second clocks), and not before it.
func v3KeepAlive(c *ct, strict bool) {
	sub := c.v3("sub")
	will := c.topic("will")
	sub.sub(1, will)
	const ka = 1
	dev := c.dial(packet.V311)
	dev.send(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: ka, ClientID: c.id("dev"),
		Will: &packet.Will{QoS: 1, Topic: will, Payload: []byte("lost")}})
	start := time.Now()
	expect[*packet.Connack](dev)
	dev.closed(10 * ka * time.Second)
	took := time.Since(start)
	c.Logf("closed %v after the last packet, keep alive %ds", took.Round(time.Millisecond), ka)
	if strict && (took > ka*1500*time.Millisecond+time.Second || took < ka*time.Second) {
		c.Errorf("closed %v after the last packet, keep alive %ds: want after 1× and within 1.5× (and 1 s of timer granularity)", took.Round(time.Millisecond), ka)
	}
	sub.want(will, 1, "lost")
}

func v3OfflineQueue(c *ct) {
	id := c.id("sub")
	c.Cleanup(func() { c.endSession(packet.V311, id) })
	connect := &packet.Connect{Version: packet.V311, KeepAlive: 30, ClientID: id}
	sub := c.connectOK(connect)
	sub.sub(2, c.topic("q/#"))
	sub.bye()

	pub := c.v3("pub")
	for i := 0; i < 3; i++ {
		pub.pub(c.topic(fmt.Sprintf("q/%d", i)), 1, fmt.Sprint(i))
		pub.pub(c.topic(fmt.Sprintf("q/%d", i)), 2, fmt.Sprint(i))
	}
	sub, ack := c.connect(connect)
	if ack.ReasonCode != 0 || !ack.SessionPresent {
		c.Fatalf("CONNACK code %#x present %v, want 0 and session present", byte(ack.ReasonCode), ack.SessionPresent)
	}
	for i := 0; i < 3; i++ {
		sub.want(c.topic(fmt.Sprintf("q/%d", i)), 1, fmt.Sprint(i))
		sub.want(c.topic(fmt.Sprintf("q/%d", i)), 2, fmt.Sprint(i))
	}
}

func v3SessionPresent(c *ct) {
	id := c.id("dev")
	c.Cleanup(func() { c.endSession(packet.V311, id) })
	for i, step := range []struct {
		clean, present bool
	}{{false, false}, {false, true}, {true, false}, {false, false}} {
		cl, ack := c.connect(&packet.Connect{Version: packet.V311, CleanStart: step.clean, KeepAlive: 30, ClientID: id})
		if ack.ReasonCode != 0 || ack.SessionPresent != step.present {
			c.Fatalf("connect %d (clean session %v): code %#x present %v, want 0 and %v", i, step.clean, byte(ack.ReasonCode), ack.SessionPresent, step.present)
		}
		cl.bye()
	}
}

func v3Redelivery(c *ct) {
	id := c.id("sub")
	c.Cleanup(func() { c.endSession(packet.V311, id) })
	connect := &packet.Connect{Version: packet.V311, KeepAlive: 30, ClientID: id}
	sub := c.connectOK(connect)
	topic := c.topic("r")
	sub.sub(1, topic)
	pub := c.v3("pub")
	var ids []uint16
	for i := 0; i < 3; i++ {
		pub.pub(topic, 1, fmt.Sprint(i))
		p := sub.nextRaw() // not acknowledged
		if p.Dup || string(p.Payload) != fmt.Sprint(i) {
			c.Fatalf("first delivery %d: dup %v payload %q", i, p.Dup, p.Payload)
		}
		ids = append(ids, p.PacketID)
	}
	sub.nc.Close()

	sub, ack := c.connect(connect)
	if !ack.SessionPresent {
		c.Fatal("session not present on reconnect")
	}
	for i := 0; i < 3; i++ {
		p := sub.next()
		if !p.Dup || p.PacketID != ids[i] || string(p.Payload) != fmt.Sprint(i) || p.QoS != 1 {
			c.Fatalf("redelivery %d: dup %v id %d payload %q qos %d, want dup, id %d, %q, qos 1", i, p.Dup, p.PacketID, p.Payload, p.QoS, ids[i], fmt.Sprint(i))
		}
	}
	sub.silent()
}

func v3PubrelResent(c *ct) {
	id := c.id("sub")
	c.Cleanup(func() { c.endSession(packet.V311, id) })
	connect := &packet.Connect{Version: packet.V311, KeepAlive: 30, ClientID: id}
	sub := c.connectOK(connect)
	topic := c.topic("r2")
	sub.sub(2, topic)
	pub := c.v3("pub")
	pub.pub(topic, 2, "once")
	p := sub.nextRaw()
	sub.send(&packet.Pubrec{Ack: packet.Ack{PacketID: p.PacketID}})
	expect[*packet.Pubrel](sub) // not completed
	sub.nc.Close()

	sub, _ = c.connect(connect)
	rel := expect[*packet.Pubrel](sub)
	if rel.PacketID != p.PacketID {
		c.Fatalf("PUBREL id %d, want %d", rel.PacketID, p.PacketID)
	}
	sub.send(&packet.Pubcomp{Ack: packet.Ack{PacketID: rel.PacketID}})
	sub.silent() // the message itself is not sent again
}

func v3Takeover(c *ct) {
	id := c.id("dev")
	c.Cleanup(func() { c.endSession(packet.V311, id) })
	connect := &packet.Connect{Version: packet.V311, KeepAlive: 30, ClientID: id}
	old := c.connectOK(connect)
	topic := c.topic("t")
	old.sub(1, topic)
	nu, ack := c.connect(connect)
	if ack.ReasonCode != 0 || !ack.SessionPresent {
		c.Fatalf("takeover CONNACK code %#x present %v, want 0 and present", byte(ack.ReasonCode), ack.SessionPresent)
	}
	// 3.1.1 has no server DISCONNECT: the old connection just closes.
	old.closed(waitFor)
	pub := c.v3("pub")
	pub.pub(topic, 1, "to the new one")
	nu.want(topic, 1, "to the new one")
}

func v3Overlapping(c *ct) {
	sub, pub := c.v3("sub"), c.v3("pub")
	topic := c.topic("o/a/b")
	for i, code := range sub.subscribe(packet.Properties{},
		packet.Subscription{Filter: c.topic("o/#"), QoS: 1},
		packet.Subscription{Filter: c.topic("o/+/b"), QoS: 2}) {
		if code != packet.ReasonCode(i+1) {
			c.Fatalf("SUBACK %#x for subscription %d", byte(code), i)
		}
	}
	pub.pub(topic, 2, "x")
	marker := c.topic("o/marker")
	pub.pub(marker, 0, "m")
	got := sub.drainUntil(marker)
	// One copy at the highest granted QoS, or one per subscription
	// (MQTT 3.1.1 3.3.5): QoS 2 and QoS 1.
	switch {
	case len(got) == 1 && got[0].QoS == 2:
	case len(got) == 2 && got[0].QoS+got[1].QoS == 3:
	default:
		var qs []byte
		for _, p := range got {
			qs = append(qs, p.QoS)
		}
		c.Fatalf("deliveries at QoS %v, want one at QoS 2 or one at each of 1 and 2", qs)
	}
}

func v3SubscribeFailure(c *ct) {
	sub := c.v3("sub")
	codes := sub.subscribe(packet.Properties{},
		packet.Subscription{Filter: c.topic("ok"), QoS: 1},
		packet.Subscription{Filter: c.tg.Features.RefusedFilter, QoS: 1})
	if codes[0] != 1 || codes[1] != 0x80 {
		c.Fatalf("SUBACK %v, want [1 0x80]", codes)
	}
}

func v3Downgrade(c *ct) {
	sub, pub := c.v3("sub"), c.v3("pub")
	topic := c.topic("d")
	sub.sub(0, topic)
	pub.pub(topic, 1, "x")
	sub.want(topic, 0, "x")
}

func v3Unsubscribe(c *ct) {
	sub, pub := c.v3("sub"), c.v3("pub")
	gone, marker := c.topic("gone"), c.topic("marker")
	sub.sub(0, gone, marker)
	id := sub.id()
	sub.send(&packet.Unsubscribe{PacketID: id, Filters: []string{gone}})
	if ua := expect[*packet.Unsuback](sub); ua.PacketID != id {
		c.Fatalf("UNSUBACK id %d, want %d", ua.PacketID, id)
	}
	pub.pub(gone, 0, "x")
	pub.pub(marker, 0, "m")
	if got := sub.drainUntil(marker); len(got) != 0 {
		c.Fatalf("%d messages after unsubscribing", len(got))
	}
}

func v3ZeroLengthID(c *ct) {
	cl, ack := c.connect(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 30})
	if ack.ReasonCode != 0 {
		c.Fatalf("empty client id with clean session: CONNACK %#x, want 0", byte(ack.ReasonCode))
	}
	cl.send(&packet.Pingreq{})
	expect[*packet.Pingresp](cl)
	cl.bye()

	cl, ack = c.connect(&packet.Connect{Version: packet.V311, CleanStart: false, KeepAlive: 30})
	if ack.ReasonCode != 0x02 {
		c.Fatalf("empty client id without clean session: CONNACK %#x, want 0x02 (identifier rejected)", byte(ack.ReasonCode))
	}
	cl.closed(waitFor)
}

func v3Ping(c *ct) {
	cl := c.v3("dev")
	for i := 0; i < 3; i++ {
		cl.send(&packet.Pingreq{})
		expect[*packet.Pingresp](cl)
	}
}

// v3WillOnTakeover: the server closing a taken-over connection publishes
// its will (3.1.1 3.1.2.5: closed by the server).
func v3WillOnTakeover(c *ct) {
	sub := c.v3("sub")
	will := c.topic("will")
	sub.sub(1, will)
	connect := &packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 30, ClientID: c.id("dev"),
		Will: &packet.Will{QoS: 1, Topic: will, Payload: []byte("taken")}}
	old := c.connectOK(connect)
	connect.Will = nil
	c.connectOK(connect)
	old.closed(waitFor)
	sub.want(will, 1, "taken")
}
