package engine

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// TestPubSubQoS publishes at each QoS to a QoS 2 subscriber, in both
// versions, and walks both handshakes: the publisher's acks come back with
// its packet id and the subscriber gets the message at the published QoS
// with an id of the server's own space.
func TestPubSubQoS(t *testing.T) {
	_, addr := start(t, Options{})
	for _, ver := range versions {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%s/qos%d", ver.name, qos), func(t *testing.T) {
				sub, _ := mustConnect(t, addr, connOf(ver.v, "sub-"+t.Name(), true))
				sub.subscribe(1, []packet.ReasonCode{2}, packet.Subscription{Filter: "a/+", QoS: 2})
				pub, _ := mustConnect(t, addr, connOf(ver.v, "pub-"+t.Name(), true))
				pub.send(&packet.Publish{QoS: qos, Topic: "a/b", PacketID: 77, Payload: []byte("hi"),
					Properties: packet.Properties{User: []packet.UserProperty{{Key: "k", Value: "v"}}}})
				switch qos {
				case 1:
					ack, ok := pub.recv().(*packet.Puback)
					if !ok || ack.PacketID != 77 || ack.ReasonCode != packet.Success || len(ack.Properties.User) != 0 {
						t.Fatalf("PUBACK %+v", ack)
					}
				case 2:
					rec, ok := pub.recv().(*packet.Pubrec)
					if !ok || rec.PacketID != 77 || rec.ReasonCode != packet.Success || len(rec.Properties.User) != 0 {
						t.Fatalf("PUBREC %+v", rec)
					}
					pub.send(&packet.Pubrel{Ack: packet.Ack{PacketID: 77}})
					if comp, ok := pub.recv().(*packet.Pubcomp); !ok || comp.PacketID != 77 {
						t.Fatalf("PUBCOMP %+v", comp)
					}
				}
				got := sub.recvPublish()
				if got.Topic != "a/b" || got.QoS != qos || !bytes.Equal(got.Payload, []byte("hi")) || got.Retain || got.Dup {
					t.Fatalf("delivered %+v", got)
				}
				if ver.v == packet.V5 && (len(got.Properties.User) != 1 || got.Properties.User[0].Key != "k") {
					t.Fatalf("user properties %+v", got.Properties.User)
				}
				if qos > 0 && got.PacketID == 0 {
					t.Fatal("no packet id")
				}
				switch qos {
				case 1:
					sub.send(&packet.Puback{Ack: packet.Ack{PacketID: got.PacketID}})
				case 2:
					sub.send(&packet.Pubrec{Ack: packet.Ack{PacketID: got.PacketID}})
					if rel, ok := sub.recv().(*packet.Pubrel); !ok || rel.PacketID != got.PacketID {
						t.Fatalf("PUBREL %+v", rel)
					}
					sub.send(&packet.Pubcomp{Ack: packet.Ack{PacketID: got.PacketID}})
				}
				sub.send(&packet.Pingreq{})
				if _, ok := sub.recv().(*packet.Pingresp); !ok {
					t.Fatal("no PINGRESP")
				}
			})
		}
	}
}

// TestInboundQoS2Dup: a DUP resend of a QoS 2 PUBLISH before PUBREL is
// answered PUBREC success and not delivered twice; PUBREL of an unknown id
// is answered PUBCOMP 0x92 (v5).
func TestInboundQoS2Dup(t *testing.T) {
	_, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			sub, _ := mustConnect(t, addr, connOf(ver.v, "s"+ver.name, true))
			sub.subscribe(1, nil, packet.Subscription{Filter: "q2/" + ver.name})
			pub, _ := mustConnect(t, addr, connOf(ver.v, "p"+ver.name, true))
			p := &packet.Publish{QoS: 2, Topic: "q2/" + ver.name, PacketID: 9, Payload: []byte("x")}
			pub.send(p)
			if rec, ok := pub.recv().(*packet.Pubrec); !ok || rec.ReasonCode != packet.Success {
				t.Fatalf("PUBREC %+v", rec)
			}
			p.Dup = true
			pub.send(p)
			if rec, ok := pub.recv().(*packet.Pubrec); !ok || rec.ReasonCode != packet.Success || rec.PacketID != 9 {
				t.Fatalf("PUBREC to DUP %+v", rec)
			}
			pub.send(&packet.Pubrel{Ack: packet.Ack{PacketID: 9}})
			if comp, ok := pub.recv().(*packet.Pubcomp); !ok || comp.ReasonCode != packet.Success {
				t.Fatalf("PUBCOMP %+v", comp)
			}
			pub.send(&packet.Pubrel{Ack: packet.Ack{PacketID: 10}})
			comp, ok := pub.recv().(*packet.Pubcomp)
			want := packet.Success
			if ver.v == packet.V5 {
				want = packet.PacketIdentifierNotFound
			}
			if !ok || comp.ReasonCode != want {
				t.Fatalf("PUBCOMP of unknown id %+v", comp)
			}
			sub.recvPublish()
			sub.silent(200 * time.Millisecond)
		})
	}
}

// TestRefusedPublish: MayPublish's refusal is PUBACK 0x87 / PUBREC 0x87 with
// a reason string under MQTT 5, a plain ack under 3.1.1, and the message
// goes nowhere.
func TestRefusedPublish(t *testing.T) {
	_, addr := start(t, Options{Hooks: &hooks{denyPublish: "deny"}})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			sub, _ := mustConnect(t, addr, connOf(ver.v, "s"+ver.name, true))
			sub.subscribe(1, nil, packet.Subscription{Filter: "#", QoS: 2})
			pub, _ := mustConnect(t, addr, connOf(ver.v, "p"+ver.name, true))
			want, wantReason := packet.ReasonCode(packet.Success), false
			if ver.v == packet.V5 {
				want, wantReason = packet.NotAuthorized, true
			}
			pub.send(&packet.Publish{QoS: 1, Topic: "deny", PacketID: 1})
			ack, ok := pub.recv().(*packet.Puback)
			if !ok || ack.ReasonCode != want || (ack.Properties.ReasonString != "") != wantReason {
				t.Fatalf("PUBACK %+v", ack)
			}
			pub.send(&packet.Publish{QoS: 2, Topic: "deny", PacketID: 2})
			rec, ok := pub.recv().(*packet.Pubrec)
			if !ok || rec.ReasonCode != want {
				t.Fatalf("PUBREC %+v", rec)
			}
			sub.silent(200 * time.Millisecond)
		})
	}
}

// TestSubscribeRefusals: a bad filter is 0x8F (v5) / 0x80, a refused one
// 0x87 / 0x80, and for $share the filter inside is what is checked.
func TestSubscribeRefusals(t *testing.T) {
	_, addr := start(t, Options{Hooks: &hooks{denySub: "secret/#"}})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			c, _ := mustConnect(t, addr, connOf(ver.v, "c"+ver.name, true))
			bad, denied := packet.ReasonCode(0x80), packet.ReasonCode(0x80)
			if ver.v == packet.V5 {
				bad, denied = packet.TopicFilterInvalid, packet.NotAuthorized
			}
			c.subscribe(1, []packet.ReasonCode{bad, denied, denied, 1},
				packet.Subscription{Filter: "a/#/b"},
				packet.Subscription{Filter: "secret/#", QoS: 1},
				packet.Subscription{Filter: "$share/g/secret/#", QoS: 1},
				packet.Subscription{Filter: "$share/g/open/#", QoS: 1})
			if ver.v == packet.V5 {
				c.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "secret/#"}}})
				if ack := c.recv().(*packet.Suback); ack.Properties.ReasonString == "" {
					t.Fatal("refusal without a reason string")
				}
			}
		})
	}
}

// TestUnsubscribe: after UNSUBSCRIBE nothing arrives; v5 codes say which
// filters existed.
func TestUnsubscribe(t *testing.T) {
	_, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			c, _ := mustConnect(t, addr, connOf(ver.v, "u"+ver.name, true))
			c.subscribe(1, nil, packet.Subscription{Filter: "u/" + ver.name})
			c.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"u/" + ver.name, "none"}})
			ack, ok := c.recv().(*packet.Unsuback)
			if !ok || ack.PacketID != 2 {
				t.Fatalf("UNSUBACK %+v", ack)
			}
			if ver.v == packet.V5 && !equal(ack.ReasonCodes, []packet.ReasonCode{0, packet.NoSubscriptionExisted}) {
				t.Fatalf("UNSUBACK codes %v", ack.ReasonCodes)
			}
			p, _ := mustConnect(t, addr, connOf(ver.v, "up"+ver.name, true))
			p.send(&packet.Publish{Topic: "u/" + ver.name})
			c.silent(200 * time.Millisecond)
		})
	}
}

// TestSysTopics: '#' and '+' at the start do not match '$' topics.
func TestSysTopics(t *testing.T) {
	s, addr := start(t, Options{})
	c, _ := mustConnect(t, addr, conn3("sys", true))
	c.subscribe(1, nil, packet.Subscription{Filter: "#"}, packet.Subscription{Filter: "+/x"})
	if err := s.Publish(Message{Topic: "$SYS/x"}); err != nil {
		t.Fatal(err)
	}
	c.silent(200 * time.Millisecond)
}

// TestRequestProblemInfo: a client asking for no problem information gets
// refusals without reason strings.
func TestRequestProblemInfo(t *testing.T) {
	_, addr := start(t, Options{Hooks: &hooks{denyPublish: "deny"}})
	cp := conn5("npi", true)
	no := false
	cp.Properties.RequestProblemInfo = &no
	c, _ := mustConnect(t, addr, cp)
	c.send(&packet.Publish{QoS: 1, Topic: "deny", PacketID: 1})
	ack, ok := c.recv().(*packet.Puback)
	if !ok || ack.ReasonCode != packet.NotAuthorized || ack.Properties.ReasonString != "" {
		t.Fatalf("PUBACK %+v", ack)
	}
}

// TestOutboundPubrecFailure: a subscriber answering PUBREC with a failure
// code ends the QoS 2 exchange: no PUBREL, and the window's slot returns.
func TestOutboundPubrecFailure(t *testing.T) {
	s, addr := start(t, Options{})
	cp := conn5("prf", true)
	cp.Properties.ReceiveMaximum = 1
	c, _ := mustConnect(t, addr, cp)
	c.subscribe(1, nil, packet.Subscription{Filter: "prf", QoS: 2})
	for _, b := range []byte("ab") {
		if err := s.Publish(Message{Topic: "prf", QoS: 2, Payload: []byte{b}}); err != nil {
			t.Fatal(err)
		}
	}
	m := c.recvPublish()
	c.send(&packet.Pubrec{Ack: packet.Ack{PacketID: m.PacketID, ReasonCode: packet.UnspecifiedError}})
	if next := c.recvPublish(); string(next.Payload) != "b" {
		t.Fatalf("got %+v, want the second message", next)
	}
}

// TestPublishAPIRefusals: the server's Publish checks its topic and QoS.
func TestPublishAPIRefusals(t *testing.T) {
	s := New(Options{})
	defer s.Close(t.Context())
	for _, m := range []Message{{Topic: ""}, {Topic: "a/+"}, {Topic: "a", QoS: 3}} {
		if err := s.Publish(m); err == nil {
			t.Errorf("Publish(%+v) accepted", m)
		}
	}
}

// TestSharedOffline: a shared group's message goes to the member that is
// online when another has gone offline.
func TestSharedOffline(t *testing.T) {
	s, addr := start(t, Options{})
	on, _ := mustConnect(t, addr, conn5("on", true))
	on.subscribe(1, nil, packet.Subscription{Filter: "$share/g/so", QoS: 1})
	off, _ := mustConnect(t, addr, persistent(packet.V5, "off"))
	off.subscribe(1, nil, packet.Subscription{Filter: "$share/g/so", QoS: 1})
	off.send(&packet.Disconnect{})
	off.closed()
	eventually(t, "offline", func() bool { return !s.Connected("off") })
	for range 4 {
		if err := s.Publish(Message{Topic: "so", QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		m := on.recvPublish()
		on.send(&packet.Puback{Ack: packet.Ack{PacketID: m.PacketID}})
	}
}
