package packet

import (
	"bytes"
	"reflect"
	"testing"
)

// Golden encodings computed by hand from the specifications' figures.
func TestGolden(t *testing.T) {
	cases := []struct {
		name string
		v    Version
		p    Packet
		wire []byte
	}{
		{"3.1.1 CONNECT, clean session, keep alive 60, client id abc", V311,
			&Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "abc"},
			[]byte{0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 3, 'a', 'b', 'c'}},
		{"5.0 CONNECT with session expiry 3600", V5,
			&Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "abc", Properties: Properties{SessionExpiry: ptr(uint32(3600))}},
			[]byte{0x10, 0x15, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 5, 0x11, 0, 0, 0x0E, 0x10, 0, 3, 'a', 'b', 'c'}},
		{"3.1.1 CONNECT with will QoS 1 retained, user name and password", V311,
			&Connect{Version: V311, ClientID: "c", Will: &Will{QoS: 1, Retain: true, Topic: "w", Payload: []byte("x")},
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p")},
			[]byte{0x10, 0x19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xEC, 0, 0, 0, 1, 'c', 0, 1, 'w', 0, 1, 'x', 0, 1, 'u', 0, 1, 'p'}},
		{"5.0 CONNACK, session present, receive maximum 20, topic alias maximum 10", V5,
			&Connack{SessionPresent: true, Properties: Properties{ReceiveMaximum: 20, TopicAliasMaximum: 10}},
			[]byte{0x20, 0x09, 0x01, 0x00, 0x06, 0x21, 0, 20, 0x22, 0, 10}},
		{"3.1.1 PUBLISH QoS 1", V311,
			&Publish{QoS: 1, Topic: "a/b", PacketID: 10, Payload: []byte("hi")},
			[]byte{0x32, 0x09, 0, 3, 'a', '/', 'b', 0, 10, 'h', 'i'}},
		{"5.0 PUBLISH retained, payload format and a user property", V5,
			&Publish{Retain: true, Topic: "t", Properties: Properties{PayloadFormat: 1, User: []UserProperty{{"k", "v"}}}, Payload: []byte("x")},
			[]byte{0x31, 0x0E, 0, 1, 't', 0x09, 0x01, 0x01, 0x26, 0, 1, 'k', 0, 1, 'v', 'x'}},
		{"remaining length 128 takes two bytes", V311,
			&Publish{Topic: "t", Payload: bytes.Repeat([]byte{'z'}, 125)},
			append([]byte{0x30, 0x80, 0x01, 0, 1, 't'}, bytes.Repeat([]byte{'z'}, 125)...)},
		{"5.0 PUBACK with a reason code and no properties", V5,
			&Puback{Ack{PacketID: 5, ReasonCode: NoMatchingSubscribers}},
			[]byte{0x40, 0x03, 0, 5, 0x10}},
		{"5.0 PUBREL, success, short form", V5, &Pubrel{Ack{PacketID: 5}}, []byte{0x62, 0x02, 0, 5}},
		{"5.0 SUBSCRIBE with every option and a subscription identifier", V5,
			&Subscribe{PacketID: 1, Properties: Properties{SubscriptionIDs: []uint32{5}},
				Subscriptions: []Subscription{{Filter: "a/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}},
			[]byte{0x82, 0x0B, 0, 1, 0x02, 0x0B, 0x05, 0, 3, 'a', '/', '#', 0x2D}},
		{"3.1.1 SUBACK", V311, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{1, 0x80}}, []byte{0x90, 0x04, 0, 1, 0x01, 0x80}},
		{"3.1.1 UNSUBSCRIBE", V311, &Unsubscribe{PacketID: 7, Filters: []string{"a"}}, []byte{0xA2, 0x05, 0, 7, 0, 1, 'a'}},
		{"3.1.1 UNSUBACK", V311, &Unsuback{PacketID: 7}, []byte{0xB0, 0x02, 0, 7}},
		{"5.0 UNSUBACK", V5, &Unsuback{PacketID: 7, ReasonCodes: []ReasonCode{0x11}}, []byte{0xB0, 0x04, 0, 7, 0, 0x11}},
		{"PINGREQ", V311, &Pingreq{}, []byte{0xC0, 0}},
		{"PINGRESP", V5, &Pingresp{}, []byte{0xD0, 0}},
		{"3.1.1 DISCONNECT", V311, &Disconnect{}, []byte{0xE0, 0}},
		{"5.0 DISCONNECT session taken over", V5, &Disconnect{ReasonCode: SessionTakenOver}, []byte{0xE0, 0x01, 0x8E}},
		{"5.0 AUTH continue", V5, &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{AuthMethod: "m"}},
			[]byte{0xF0, 0x06, 0x18, 0x04, 0x15, 0, 1, 'm'}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.p.Append(nil, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tc.wire) {
				t.Fatalf("encoded\n% x\nwant\n% x", b, tc.wire)
			}
			got, n, err := Decode(tc.wire, tc.v, 0)
			if err != nil || n != len(tc.wire) {
				t.Fatalf("decode: %v (%d bytes)", err, n)
			}
			if !reflect.DeepEqual(got, tc.p) {
				t.Fatalf("decoded %#v\nwant %#v", got, tc.p)
			}
		})
	}
}

// Two packets back to back, and every prefix of them: Decode takes one
// packet at a time and asks for more inside one.
func TestDecodeStream(t *testing.T) {
	b, _ := (&Publish{QoS: 1, PacketID: 1, Topic: "a", Payload: []byte("xyz")}).Append(nil, V5)
	b, _ = (&Pingreq{}).Append(b, V5)
	for i := range len(b) {
		_, n, err := Decode(b[:i], V5, 0)
		if i < len(b)-2 && err != ErrIncomplete {
			t.Fatalf("prefix of %d bytes: %d, %v", i, n, err)
		}
	}
	p, n, err := Decode(b, V5, 0)
	if err != nil || p.Type() != TypePublish {
		t.Fatal(p, err)
	}
	p, m, err := Decode(b[n:], V5, 0)
	if err != nil || p.Type() != TypePingreq || n+m != len(b) {
		t.Fatal(p, err)
	}
}
