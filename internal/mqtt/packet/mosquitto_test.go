package packet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"testing"
	"time"
)

// The codec against a real peer: Mosquitto at 127.0.0.1:1883 (.ci/run
// starts it; anonymous clients allowed). Every packet sent is encoded here
// and every answer decoded here.

const mosquittoAddr = "127.0.0.1:1883"

type peer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
	v  Version
}

func dialMosquitto(t *testing.T, v Version) *peer {
	t.Helper()
	c, err := net.DialTimeout("tcp", mosquittoAddr, time.Second)
	if err != nil {
		t.Skipf("no Mosquitto at %s (.ci/run starts it): %v", mosquittoAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, c: c, br: bufio.NewReader(c), v: v}
}

func (p *peer) send(pk Packet) {
	p.t.Helper()
	b, err := pk.Append(nil, p.v)
	if err != nil {
		p.t.Fatalf("encode %s: %v", pk.Type(), err)
	}
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("write %s: %v", pk.Type(), err)
	}
}

func (p *peer) recv() (Packet, error) {
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return Read(p.br, p.v, 0)
}

func expect[T Packet](p *peer) T {
	p.t.Helper()
	pk, err := p.recv()
	if err != nil {
		p.t.Fatalf("waiting for %T: %v", *new(T), err)
	}
	got, ok := pk.(T)
	if !ok {
		p.t.Fatalf("got %#v, want %T", pk, *new(T))
	}
	return got
}

// closed waits for the peer to close the connection.
func (p *peer) closed() {
	p.t.Helper()
	if pk, err := p.recv(); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		p.t.Fatalf("after DISCONNECT: %#v, %v; want the connection closed", pk, err)
	}
}

func TestMosquittoV5(t *testing.T) {
	prefix := fmt.Sprintf("corral-codec/%d", time.Now().UnixNano())
	sub := dialMosquitto(t, V5)
	pub := dialMosquitto(t, V5)

	willProps := Properties{PayloadFormat: 1, MessageExpiry: ptr(uint32(120)), ContentType: "text/plain",
		ResponseTopic: prefix + "/will-reply", CorrelationData: []byte{9, 8, 7},
		User: []UserProperty{{"will", "1"}, {"will", "2"}}}
	pub.send(&Connect{Version: V5, CleanStart: true, KeepAlive: 30, ClientID: "",
		Properties: Properties{SessionExpiry: ptr(uint32(0)), ReceiveMaximum: 10, TopicAliasMaximum: 5,
			MaximumPacketSize: 1 << 20, RequestProblemInfo: ptr(true), RequestResponseInfo: true,
			User: []UserProperty{{"client", "codec"}}},
		Will: &Will{QoS: 1, Topic: prefix + "/will", Payload: []byte("gone"), Properties: willProps}})
	ack := expect[*Connack](pub)
	if ack.ReasonCode != Success || ack.SessionPresent {
		t.Fatalf("CONNACK %#v", ack)
	}
	// An empty client id gets one assigned (MQTT 5.0 3.2.2.3.7).
	if ack.Properties.AssignedClientID == "" {
		t.Fatalf("CONNACK without an assigned client id: %#v", ack.Properties)
	}
	// Mosquitto 2.0 advertises its receive maximum and topic alias maximum
	// (20 and 10 by default).
	if ack.Properties.ReceiveMaximum == 0 || ack.Properties.TopicAliasMaximum == 0 {
		t.Fatalf("CONNACK properties %+v", ack.Properties)
	}

	sub.send(&Connect{Version: V5, CleanStart: true, KeepAlive: 30, ClientID: fmt.Sprintf("corral-codec-sub-%d", time.Now().UnixNano())})
	if a := expect[*Connack](sub); a.ReasonCode != Success {
		t.Fatalf("CONNACK %#v", a)
	}
	sub.send(&Subscribe{PacketID: 1, Properties: Properties{SubscriptionIDs: []uint32{42}, User: []UserProperty{{"s", "1"}}},
		Subscriptions: []Subscription{
			{Filter: prefix + "/data/#", QoS: 2, RetainAsPublished: true},
			{Filter: prefix + "/will", QoS: 1},
			{Filter: prefix + "/nolocal", QoS: 1, NoLocal: true, RetainHandling: 2},
		}})
	if sa := expect[*Suback](sub); sa.PacketID != 1 || !reflect.DeepEqual(sa.ReasonCodes, []ReasonCode{GrantedQoS2, GrantedQoS1, GrantedQoS1}) {
		t.Fatalf("SUBACK %#v", sa)
	}
	// No Local: the subscriber's own message never comes back.
	sub.send(&Publish{Topic: prefix + "/nolocal", Payload: []byte("mine")})

	props := Properties{PayloadFormat: 1, MessageExpiry: ptr(uint32(300)), ContentType: "application/json",
		ResponseTopic: prefix + "/reply", CorrelationData: []byte("req-1"),
		User: []UserProperty{{"k", "v1"}, {"k", "v2"}, {"a", ""}}}
	for qos := byte(0); qos <= 2; qos++ {
		id := uint16(0)
		if qos > 0 {
			id = uint16(qos)
		}
		pub.send(&Publish{QoS: qos, PacketID: id, Topic: fmt.Sprintf("%s/data/q%d", prefix, qos), Properties: props,
			Payload: []byte(fmt.Sprintf(`{"qos":%d}`, qos))})
		switch qos {
		case 1:
			// Mosquitto answers 0x10 (no matching subscribers) or success:
			// either way a well-formed PUBACK for our id.
			if pa := expect[*Puback](pub); pa.PacketID != 1 {
				t.Fatalf("PUBACK %#v", pa)
			}
		case 2:
			if pr := expect[*Pubrec](pub); pr.PacketID != 2 || pr.ReasonCode >= 0x80 {
				t.Fatalf("PUBREC %#v", pr)
			}
			pub.send(&Pubrel{Ack{PacketID: 2}})
			if pc := expect[*Pubcomp](pub); pc.PacketID != 2 || pc.ReasonCode != Success {
				t.Fatalf("PUBCOMP %#v", pc)
			}
		}
	}

	got := map[byte]*Publish{}
	pubrels := 0
	for len(got) < 3 || pubrels < 1 {
		pk, err := sub.recv()
		if err != nil {
			t.Fatalf("subscriber waiting (have %d publishes, %d PUBRELs): %v", len(got), pubrels, err)
		}
		switch m := pk.(type) {
		case *Publish:
			if m.Topic == prefix+"/nolocal" {
				t.Fatalf("No Local subscription got its own message")
			}
			got[m.QoS] = m
			switch m.QoS {
			case 1:
				sub.send(&Puback{Ack{PacketID: m.PacketID}})
			case 2:
				sub.send(&Pubrec{Ack{PacketID: m.PacketID}})
			}
		case *Pubrel:
			if got[2] == nil || m.PacketID != got[2].PacketID {
				t.Fatalf("PUBREL %#v before its PUBLISH", m)
			}
			pubrels++
			sub.send(&Pubcomp{Ack{PacketID: m.PacketID}})
		default:
			t.Fatalf("subscriber got %#v", pk)
		}
	}
	for qos := byte(0); qos <= 2; qos++ {
		m := got[qos]
		if m == nil {
			t.Fatalf("no delivery at QoS %d", qos)
		}
		if m.Topic != fmt.Sprintf("%s/data/q%d", prefix, qos) || string(m.Payload) != fmt.Sprintf(`{"qos":%d}`, qos) {
			t.Errorf("QoS %d delivery: %q %q", qos, m.Topic, m.Payload)
		}
		p := m.Properties
		if p.MessageExpiry == nil || *p.MessageExpiry == 0 || *p.MessageExpiry > 300 {
			t.Errorf("QoS %d: message expiry %v, want counting down from 300", qos, p.MessageExpiry)
		}
		p.MessageExpiry = props.MessageExpiry
		want := props
		want.SubscriptionIDs = []uint32{42}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("QoS %d delivery properties:\n got %+v\nwant %+v", qos, p, want)
		}
	}

	sub.send(&Unsubscribe{PacketID: 3, Properties: Properties{User: []UserProperty{{"u", "1"}}}, Filters: []string{prefix + "/data/#", prefix + "/none"}})
	if ua := expect[*Unsuback](sub); ua.PacketID != 3 || !reflect.DeepEqual(ua.ReasonCodes, []ReasonCode{Success, NoSubscriptionExisted}) {
		t.Fatalf("UNSUBACK %#v", ua)
	}
	sub.send(&Pingreq{})
	expect[*Pingresp](sub)

	// The publisher goes away without DISCONNECT: its will, with its
	// properties, reaches the subscriber.
	pub.c.Close()
	w := expect[*Publish](sub)
	if w.Topic != prefix+"/will" || string(w.Payload) != "gone" || w.QoS != 1 {
		t.Fatalf("will %#v", w)
	}
	sub.send(&Puback{Ack{PacketID: w.PacketID}})
	wp := w.Properties
	if wp.MessageExpiry == nil || *wp.MessageExpiry > 120 {
		t.Errorf("will message expiry %v", wp.MessageExpiry)
	}
	wp.MessageExpiry = willProps.MessageExpiry
	wantWill := willProps
	wantWill.SubscriptionIDs = []uint32{42}
	if !reflect.DeepEqual(wp, wantWill) {
		t.Errorf("will properties:\n got %+v\nwant %+v", wp, wantWill)
	}

	sub.send(&Disconnect{ReasonCode: Success, Properties: Properties{ReasonString: "done"}})
	sub.closed()
}

func TestMosquittoV311(t *testing.T) {
	prefix := fmt.Sprintf("corral-codec/%d", time.Now().UnixNano())
	c := dialMosquitto(t, V311)
	c.send(&Connect{Version: V311, CleanStart: true, KeepAlive: 30, ClientID: fmt.Sprintf("corral-codec-v4-%d", time.Now().UnixNano()),
		UsernameFlag: true, Username: "anyone",
		Will: &Will{QoS: 1, Retain: false, Topic: prefix + "/will", Payload: []byte("bye")}})
	if a := expect[*Connack](c); a.ReasonCode != 0 || a.SessionPresent {
		t.Fatalf("CONNACK %#v", a)
	}
	c.send(&Subscribe{PacketID: 5, Subscriptions: []Subscription{{Filter: prefix + "/v4/#", QoS: 1}, {Filter: prefix + "/v4/+/x", QoS: 2}}})
	if sa := expect[*Suback](c); sa.PacketID != 5 || !reflect.DeepEqual(sa.ReasonCodes, []ReasonCode{1, 2}) {
		t.Fatalf("SUBACK %#v", sa)
	}
	// MQTT 5 properties on a message are left out for a 3.1.1 peer.
	c.send(&Publish{QoS: 1, PacketID: 6, Topic: prefix + "/v4/a", Payload: []byte("one"),
		Properties: Properties{ContentType: "dropped", User: []UserProperty{{"k", "v"}}}})
	var delivered, acked int
	for delivered < 1 || acked < 1 {
		switch m := must(c.recv())(t).(type) {
		case *Puback:
			if m.PacketID != 6 {
				t.Fatalf("PUBACK %#v", m)
			}
			acked++
		case *Publish:
			if m.Topic != prefix+"/v4/a" || string(m.Payload) != "one" || m.QoS != 1 || !reflect.DeepEqual(m.Properties, Properties{}) {
				t.Fatalf("delivery %#v", m)
			}
			c.send(&Puback{Ack{PacketID: m.PacketID}})
			delivered++
		default:
			t.Fatalf("got %#v", m)
		}
	}
	// QoS 2 both ways: the message matches both filters (QoS 1 and 2);
	// Mosquitto delivers one copy at the highest granted QoS.
	c.send(&Publish{QoS: 2, PacketID: 7, Topic: prefix + "/v4/b/x", Payload: []byte("two")})
	var pubcomp, got2 bool
	for !pubcomp || !got2 {
		switch m := must(c.recv())(t).(type) {
		case *Pubrec:
			c.send(&Pubrel{Ack{PacketID: m.PacketID}})
		case *Pubcomp:
			if m.PacketID != 7 {
				t.Fatalf("PUBCOMP %#v", m)
			}
			pubcomp = true
		case *Publish:
			if string(m.Payload) != "two" || m.QoS != 2 {
				t.Fatalf("delivery %#v", m)
			}
			c.send(&Pubrec{Ack{PacketID: m.PacketID}})
		case *Pubrel:
			c.send(&Pubcomp{Ack{PacketID: m.PacketID}})
			got2 = true
		default:
			t.Fatalf("got %#v", m)
		}
	}
	c.send(&Unsubscribe{PacketID: 8, Filters: []string{prefix + "/v4/#"}})
	if ua := expect[*Unsuback](c); ua.PacketID != 8 || ua.ReasonCodes != nil {
		t.Fatalf("UNSUBACK %#v", ua)
	}
	c.send(&Pingreq{})
	expect[*Pingresp](c)
	c.send(&Disconnect{ReasonCode: ServerBusy}) // the reason is left out under 3.1.1
	c.closed()
}

// TestMosquittoUnsupportedLevel: the peer reads our CONNECT of an unknown
// level as such, and we decode its 3.1.1 CONNACK return code 1.
func TestMosquittoUnsupportedLevel(t *testing.T) {
	c := dialMosquitto(t, V311)
	b := pkt(0x10, connectBody("MQTT", 3, 0x02, str("x")...)...)
	if _, err := c.c.Write(b); err != nil {
		t.Fatal(err)
	}
	pk, err := c.recv()
	if err == nil {
		if a, ok := pk.(*Connack); !ok || a.ReasonCode != 1 {
			t.Fatalf("answer %#v", pk)
		}
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
}

func must(p Packet, err error) func(*testing.T) Packet {
	return func(t *testing.T) Packet {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}
