package engine

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// TestRetained: RETAIN=1 on subscribe, 0 on live delivery, replace, clear
// with an empty payload.
func TestRetained(t *testing.T) {
	_, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			topic := "ret/" + ver.name
			p, _ := mustConnect(t, addr, connOf(ver.v, "rp"+ver.name, true))
			p.send(&packet.Publish{Topic: topic, Retain: true, Payload: []byte("one")})
			p.send(&packet.Publish{Topic: topic, Retain: true, Payload: []byte("two")})
			p.send(&packet.Pingreq{})
			p.recv()
			s, _ := mustConnect(t, addr, connOf(ver.v, "rs"+ver.name, true))
			s.subscribe(1, nil, packet.Subscription{Filter: "ret/#"})
			if m := s.recvPublish(); !m.Retain || string(m.Payload) != "two" {
				t.Fatalf("retained %+v", m)
			}
			p.send(&packet.Publish{Topic: topic, Retain: true, Payload: []byte("three")})
			if m := s.recvPublish(); m.Retain || string(m.Payload) != "three" {
				t.Fatalf("live %+v", m)
			}
			p.send(&packet.Publish{Topic: topic, Retain: true})
			if m := s.recvPublish(); m.Retain || len(m.Payload) != 0 {
				t.Fatalf("clear delivered %+v", m)
			}
			s2, _ := mustConnect(t, addr, connOf(ver.v, "rs2"+ver.name, true))
			s2.subscribe(1, nil, packet.Subscription{Filter: topic})
			s2.silent(200 * time.Millisecond)
		})
	}
}

// TestRetainOptions: retain handling 0/1/2 and retain as published.
func TestRetainOptions(t *testing.T) {
	srv, addr := start(t, Options{})
	if err := srv.Publish(Message{Topic: "ro", Retain: true, Payload: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	c, _ := mustConnect(t, addr, conn5("ro", true))
	c.subscribe(1, nil, packet.Subscription{Filter: "ro", RetainHandling: 2})
	c.silent(100 * time.Millisecond)
	c.subscribe(2, nil, packet.Subscription{Filter: "ro", RetainHandling: 1})
	c.silent(100 * time.Millisecond) // not new
	c.subscribe(3, nil, packet.Subscription{Filter: "ro", RetainHandling: 0, RetainAsPublished: true})
	if m := c.recvPublish(); !m.Retain {
		t.Fatal("retain handling 0 sent nothing")
	}
	if err := srv.Publish(Message{Topic: "ro", Retain: true, Payload: []byte("r2")}); err != nil {
		t.Fatal(err)
	}
	if m := c.recvPublish(); !m.Retain {
		t.Fatal("retain as published lost RETAIN")
	}
	c.subscribe(4, nil, packet.Subscription{Filter: "ro/+", RetainHandling: 1})
	c.silent(100 * time.Millisecond)
}

// TestTopicAliasesInbound: a client sets and uses an alias; an unknown one
// is DISCONNECT 0x82, one above the maximum 0x94.
func TestTopicAliasesInbound(t *testing.T) {
	_, addr := start(t, Options{TopicAliasMaximum: 4})
	s, _ := mustConnect(t, addr, conn5("as", true))
	s.subscribe(1, nil, packet.Subscription{Filter: "al/#"})
	c, ack := mustConnect(t, addr, conn5("ac", true))
	if ack.Properties.TopicAliasMaximum != 4 {
		t.Fatalf("advertised %d", ack.Properties.TopicAliasMaximum)
	}
	pub := func(topic string, alias uint16) {
		c.send(&packet.Publish{Topic: topic, Properties: packet.Properties{TopicAlias: alias}, Payload: []byte(topic)})
	}
	pub("al/x", 1)
	pub("", 1)
	for range 2 {
		if m := s.recvPublish(); m.Topic != "al/x" || m.Properties.TopicAlias != 0 {
			t.Fatalf("got %+v", m)
		}
	}
	pub("", 2)
	got := c.closed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.ProtocolError {
		t.Fatalf("unknown alias: %v", got)
	}
	c2, _ := mustConnect(t, addr, conn5("ac2", true))
	c2.send(&packet.Publish{Topic: "al/y", Properties: packet.Properties{TopicAlias: 5}})
	got = c2.closed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.TopicAliasInvalid {
		t.Fatalf("alias above max: %v", got)
	}
}

// TestTopicAliasesOutbound: the server uses aliases up to the client's
// Topic Alias Maximum.
func TestTopicAliasesOutbound(t *testing.T) {
	srv, addr := start(t, Options{})
	cp := conn5("ao", true)
	cp.Properties.TopicAliasMaximum = 1
	c, _ := mustConnect(t, addr, cp)
	c.subscribe(1, nil, packet.Subscription{Filter: "ao/#"})
	for _, tp := range []string{"ao/a", "ao/a", "ao/b"} {
		if err := srv.Publish(Message{Topic: tp}); err != nil {
			t.Fatal(err)
		}
	}
	if m := c.recvPublish(); m.Topic != "ao/a" || m.Properties.TopicAlias != 1 {
		t.Fatalf("first %+v", m)
	}
	if m := c.recvPublish(); m.Topic != "" || m.Properties.TopicAlias != 1 {
		t.Fatalf("second %+v", m)
	}
	if m := c.recvPublish(); m.Topic != "ao/b" || m.Properties.TopicAlias != 0 {
		t.Fatalf("third %+v", m)
	}
}

// TestMaximumPacketSize: advertised; a larger packet from the client is
// DISCONNECT 0x95 (3.1.1: closed); a message larger than the client's
// maximum is dropped and counted.
func TestMaximumPacketSize(t *testing.T) {
	srv, addr := start(t, Options{MaxPacketSize: 1000})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			c, ack := mustConnect(t, addr, connOf(ver.v, "mps"+ver.name, true))
			if ver.v == packet.V5 && ack.Properties.MaximumPacketSize != 1000 {
				t.Fatalf("advertised %d", ack.Properties.MaximumPacketSize)
			}
			c.send(&packet.Publish{Topic: "big", Payload: make([]byte, 1000)})
			got := c.closed()
			if ver.v == packet.V5 && (len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.PacketTooLarge) {
				t.Fatalf("got %v", got)
			}
			if ver.v == packet.V311 && len(got) != 0 {
				t.Fatalf("3.1.1 got %v", got)
			}
		})
	}
	cp := conn5("small", true)
	cp.Properties.MaximumPacketSize = 100
	c, _ := mustConnect(t, addr, cp)
	c.subscribe(1, nil, packet.Subscription{Filter: "sz"})
	before := srv.Stats().Drops[DropTooLarge]
	for _, n := range []int{200, 10} {
		if err := srv.Publish(Message{Topic: "sz", Payload: make([]byte, n)}); err != nil {
			t.Fatal(err)
		}
	}
	if m := c.recvPublish(); len(m.Payload) != 10 {
		t.Fatalf("got %d bytes", len(m.Payload))
	}
	if srv.Stats().Drops[DropTooLarge]-before != 1 {
		t.Fatal("too-large drop not counted")
	}
}

// TestMessageExpiry: the interval counts down, none is added when the
// publisher set none, and a message expiring while queued is dropped.
func TestMessageExpiry(t *testing.T) {
	srv, addr := start(t, Options{})
	c, _ := mustConnect(t, addr, persistent(packet.V5, "mx"))
	c.subscribe(1, nil, packet.Subscription{Filter: "mx", QoS: 1})
	c.send(&packet.Disconnect{})
	c.closed()
	eventually(t, "offline", func() bool { return !srv.Connected("mx") })
	one, ten := uint32(1), uint32(10)
	for _, m := range []Message{
		{Topic: "mx", QoS: 1, Payload: []byte("short"), Props: &Props{MessageExpiry: &one}},
		{Topic: "mx", QoS: 1, Payload: []byte("long"), Props: &Props{MessageExpiry: &ten}},
		{Topic: "mx", QoS: 1, Payload: []byte("none")},
	} {
		if err := srv.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	c2, _ := mustConnect(t, addr, persistent(packet.V5, "mx"))
	m := c2.recvPublish()
	if string(m.Payload) != "long" || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry > 9 {
		t.Fatalf("long %+v (expiry %v)", m, m.Properties.MessageExpiry)
	}
	m = c2.recvPublish()
	if string(m.Payload) != "none" || m.Properties.MessageExpiry != nil {
		t.Fatalf("none %+v", m)
	}
	if srv.Stats().Drops[DropExpired] != 1 {
		t.Fatalf("expired drops %d", srv.Stats().Drops[DropExpired])
	}
}

// TestSubscriptionOptions: no local, subscription identifiers of every
// matching subscription, one copy per client at the highest QoS.
func TestSubscriptionOptions(t *testing.T) {
	_, addr := start(t, Options{})
	c, _ := mustConnect(t, addr, conn5("so", true))
	c.send(&packet.Subscribe{PacketID: 1, Properties: packet.Properties{SubscriptionIDs: []uint32{7}},
		Subscriptions: []packet.Subscription{{Filter: "so/+", QoS: 1}}})
	c.recv()
	c.send(&packet.Subscribe{PacketID: 2, Properties: packet.Properties{SubscriptionIDs: []uint32{9}},
		Subscriptions: []packet.Subscription{{Filter: "so/#", QoS: 2}, {Filter: "so/nl", NoLocal: true}}})
	c.recv()
	c.send(&packet.Publish{Topic: "so/x", QoS: 2, PacketID: 1, Payload: []byte("p")})
	var m *packet.Publish
	for m == nil {
		switch p := c.recv().(type) {
		case *packet.Publish:
			m = p
		case *packet.Pubrec:
		}
	}
	ids := m.Properties.SubscriptionIDs
	if m.QoS != 2 || len(ids) != 2 || ids[0]+ids[1] != 16 {
		t.Fatalf("delivery QoS %d ids %v", m.QoS, ids)
	}
	// No Local: a client's own message does not come back on a no-local
	// subscription.
	c2, _ := mustConnect(t, addr, conn5("so2", true))
	c2.subscribe(1, nil, packet.Subscription{Filter: "nl", NoLocal: true})
	c2.send(&packet.Publish{Topic: "nl", Payload: []byte("self")})
	c2.silent(200 * time.Millisecond)
}

// TestSharedSubscription: each message goes to one member of a group;
// request/response properties and user properties pass unchanged.
func TestSharedSubscription(t *testing.T) {
	srv, addr := start(t, Options{})
	a, _ := mustConnect(t, addr, conn5("sa", true))
	b, _ := mustConnect(t, addr, conn5("sb", true))
	a.subscribe(1, nil, packet.Subscription{Filter: "$share/g/job", QoS: 1})
	b.subscribe(1, nil, packet.Subscription{Filter: "$share/g/job", QoS: 1})
	props := &Props{ResponseTopic: "reply", CorrelationData: []byte{1, 2}, ContentType: "text/plain",
		PayloadFormat: 1, User: []packet.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}}
	for range 4 {
		if err := srv.Publish(Message{Topic: "job", Payload: []byte("j"), Props: props}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, c := range []*client{a, b} {
		for {
			p, err := c.read(200 * time.Millisecond)
			if err != nil {
				break
			}
			m := p.(*packet.Publish)
			if m.Properties.ResponseTopic != "reply" || !bytes.Equal(m.Properties.CorrelationData, []byte{1, 2}) ||
				m.Properties.ContentType != "text/plain" || m.Properties.PayloadFormat != 1 ||
				len(m.Properties.User) != 2 || m.Properties.User[1].Value != "2" {
				t.Fatalf("properties %+v", m.Properties)
			}
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d deliveries, want 4 (one per message)", n)
	}
}

// TestUnsupportedVersionAndAuth: protocol level 3 gets CONNACK 0x01; an MQTT
// 5 CONNECT with an authentication method 0x8C; a refused one the hook's
// code in both versions.
func TestUnsupportedVersionAndAuth(t *testing.T) {
	_, addr := start(t, Options{Hooks: refuser{}})
	c := dialRaw(t, addr, packet.V311)
	b := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 3, 2, 0, 60, 0, 0}
	if _, err := c.c.Write(b); err != nil {
		t.Fatal(err)
	}
	if ack, ok := c.recv().(*packet.Connack); !ok || ack.ReasonCode != 1 {
		t.Fatalf("got %+v", ack)
	}
	cp := conn5("auth", true)
	cp.Properties.AuthMethod = "SCRAM"
	if _, ack := connect(t, addr, cp); ack.ReasonCode != packet.BadAuthenticationMethod {
		t.Fatalf("CONNACK 0x%02X", byte(ack.ReasonCode))
	}
	if _, ack := connect(t, addr, conn5("bad", true)); ack.ReasonCode != packet.BadUsernameOrPassword ||
		ack.Properties.ReasonString != "no" {
		t.Fatalf("CONNACK %+v", ack)
	}
	if _, ack := connect(t, addr, conn3("bad", true)); ack.ReasonCode != 4 {
		t.Fatalf("CONNACK %+v", ack)
	}
}

type refuser struct{ AllowAll }

func (refuser) Authenticate(_ context.Context, _ ConnInfo, c *packet.Connect) (any, packet.ReasonCode, string) {
	if c.ClientID == "bad" {
		return nil, packet.BadUsernameOrPassword, "no"
	}
	return nil, packet.Success, ""
}
