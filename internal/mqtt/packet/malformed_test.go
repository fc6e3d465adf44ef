package packet

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

// pkt builds a packet from its first byte and body, computing the
// remaining length.
func pkt(first byte, body ...byte) []byte {
	return append(appendVarint([]byte{first}, len(body)), body...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func str(s string) []byte { return appendString(nil, s) }

// connectBody is a CONNECT's body: protocol name and level, flags, keep
// alive 0, then rest.
func connectBody(name string, level, flags byte, rest ...byte) []byte {
	return cat(str(name), []byte{level, flags, 0, 0}, rest)
}

func TestMalformedInputs(t *testing.T) {
	cases := []struct {
		name string
		v    Version
		wire []byte
		want ReasonCode
	}{
		// Fixed header.
		{"reserved type 0", V5, pkt(0x00), MalformedPacket},
		{"CONNECT flags not 0", V5, pkt(0x11, connectBody("MQTT", 4, 0x02, str("c")...)...), MalformedPacket},
		{"PUBREL flags 0", V5, pkt(0x60, 0, 1), MalformedPacket},
		{"SUBSCRIBE flags 0", V311, pkt(0x80, cat([]byte{0, 1}, str("a"), []byte{0})...), MalformedPacket},
		{"UNSUBSCRIBE flags 0", V311, pkt(0xA0, cat([]byte{0, 1}, str("a"))...), MalformedPacket},
		{"PINGREQ flags", V311, pkt(0xC1), MalformedPacket},
		{"PUBLISH QoS 3", V311, pkt(0x36, cat(str("t"), []byte{0, 1})...), MalformedPacket},
		{"remaining length over 4 bytes", V311, []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, MalformedPacket},
		{"remaining length not minimal", V311, []byte{0x30, 0x80, 0x00}, MalformedPacket},
		{"AUTH in 3.1.1", V311, pkt(0xF0), MalformedPacket},
		{"packet before CONNECT", 0, pkt(0xC0), ProtocolError},
		// Lengths.
		{"PINGREQ with a body", V5, pkt(0xC0, 0), MalformedPacket},
		{"3.1.1 DISCONNECT with a body", V311, pkt(0xE0, 0), MalformedPacket},
		{"3.1.1 PUBACK of 3 bytes", V311, pkt(0x40, 0, 1, 0), MalformedPacket},
		{"3.1.1 UNSUBACK with codes", V311, pkt(0xB0, 0, 1, 0), MalformedPacket},
		{"string longer than the packet", V311, pkt(0x30, 0, 5, 'a'), MalformedPacket},
		{"PUBACK without packet id", V5, pkt(0x40, 0), MalformedPacket},
		{"property length over the packet", V5, pkt(0x30, cat(str("t"), []byte{5})...), MalformedPacket},
		{"property value cut", V5, pkt(0x30, cat(str("t"), []byte{2, 0x02, 0})...), MalformedPacket},
		// Strings.
		{"invalid UTF-8 in a topic", V311, pkt(0x30, 0, 2, 0xC3, 0x28), MalformedPacket},
		{"UTF-16 surrogate in a topic", V311, pkt(0x30, 0, 3, 0xED, 0xA0, 0x80), MalformedPacket},
		{"U+0000 in a topic", V311, pkt(0x30, 0, 2, 'a', 0), MalformedPacket},
		{"U+0000 in a user property", V5, pkt(0x30, cat(str("t"), []byte{7, 0x26}, str("\x00"), str("v"))...), MalformedPacket},
		{"invalid UTF-8 in a client id", V5, pkt(0x10, connectBody("MQTT", 5, 0x02, 0, 0, 1, 0xFF)...), MalformedPacket},
		// PUBLISH.
		{"wildcard in a topic name", V311, pkt(0x30, str("a/+")...), TopicNameInvalid},
		{"# in a topic name", V5, pkt(0x30, cat(str("#"), []byte{0})...), TopicNameInvalid},
		{"empty topic in 3.1.1", V311, pkt(0x30, str("")...), TopicNameInvalid},
		{"empty topic without alias", V5, pkt(0x30, cat(str(""), []byte{0})...), ProtocolError},
		{"packet id 0 at QoS 1", V311, pkt(0x32, cat(str("t"), []byte{0, 0})...), ProtocolError},
		{"DUP at QoS 0", V311, pkt(0x38, str("t")...), ProtocolError},
		// Properties.
		{"property not allowed in PUBLISH", V5, pkt(0x30, cat(str("t"), []byte{5, 0x11, 0, 0, 0, 1})...), MalformedPacket},
		{"will delay in CONNECT properties", V5, pkt(0x10, connectBody("MQTT", 5, 0x02, 5, 0x18, 0, 0, 0, 1, 0, 0)...), MalformedPacket},
		{"unknown property", V5, pkt(0x30, cat(str("t"), []byte{2, 0x7F, 0})...), MalformedPacket},
		{"reason string in PUBLISH", V5, pkt(0x30, cat(str("t"), []byte{4, 0x1F}, str("r"))...), MalformedPacket},
		{"repeated payload format", V5, pkt(0x30, cat(str("t"), []byte{4, 1, 1, 1, 1})...), ProtocolError},
		{"repeated reason string", V5, pkt(0x40, cat([]byte{0, 1, 0x80, 8, 0x1F}, str("a"), []byte{0x1F}, str("b"))...), ProtocolError},
		{"two subscription ids in SUBSCRIBE", V5, pkt(0x82, cat([]byte{0, 1, 4, 0x0B, 1, 0x0B, 2}, str("a"), []byte{0})...), ProtocolError},
		{"subscription id 0", V5, pkt(0x30, cat(str("t"), []byte{2, 0x0B, 0})...), ProtocolError},
		{"payload format 2", V5, pkt(0x30, cat(str("t"), []byte{2, 1, 2})...), ProtocolError},
		{"topic alias 0", V5, pkt(0x30, cat(str("t"), []byte{3, 0x23, 0, 0})...), ProtocolError},
		{"receive maximum 0", V5, pkt(0x20, 0, 0, 3, 0x21, 0, 0), ProtocolError},
		{"maximum packet size 0", V5, pkt(0x20, 0, 0, 5, 0x27, 0, 0, 0, 0), ProtocolError},
		{"maximum QoS 2", V5, pkt(0x20, 0, 0, 2, 0x24, 2), ProtocolError},
		{"request problem information 2", V5, pkt(0x10, connectBody("MQTT", 5, 0x02, 2, 0x17, 2, 0, 0)...), ProtocolError},
		{"wildcard in response topic", V5, pkt(0x30, cat(str("t"), []byte{6, 0x08}, str("r/#"))...), ProtocolError},
		{"auth data without method", V5, pkt(0x10, connectBody("MQTT", 5, 0x02, 4, 0x16, 0, 1, 'x', 0, 0)...), ProtocolError},
		// CONNECT.
		{"protocol name MQIsdp", V5, pkt(0x10, connectBody("MQIsdp", 3, 0x02, str("c")...)...), UnsupportedProtocolVersion},
		{"protocol level 3", V5, pkt(0x10, connectBody("MQTT", 3, 0x02, str("c")...)...), UnsupportedProtocolVersion},
		{"protocol level 6", V5, pkt(0x10, connectBody("MQTT", 6, 0x02, str("c")...)...), UnsupportedProtocolVersion},
		{"reserved connect flag", V5, pkt(0x10, connectBody("MQTT", 4, 0x03, str("c")...)...), MalformedPacket},
		{"will QoS without will", V5, pkt(0x10, connectBody("MQTT", 4, 0x08, str("c")...)...), MalformedPacket},
		{"will retain without will", V5, pkt(0x10, connectBody("MQTT", 4, 0x20, str("c")...)...), MalformedPacket},
		{"will QoS 3", V5, pkt(0x10, connectBody("MQTT", 4, 0x1C, cat(str("c"), str("w"), str("x"))...)...), MalformedPacket},
		{"3.1.1 password without user name", V5, pkt(0x10, connectBody("MQTT", 4, 0x40, cat(str("c"), str("p"))...)...), MalformedPacket},
		{"will topic with a wildcard", V5, pkt(0x10, connectBody("MQTT", 4, 0x04, cat(str("c"), str("w/#"), str("x"))...)...), TopicNameInvalid},
		{"user name flag without a user name", V5, pkt(0x10, connectBody("MQTT", 4, 0x80, str("c")...)...), MalformedPacket},
		{"bytes after the password", V5, pkt(0x10, connectBody("MQTT", 4, 0xC0, cat(str("c"), str("u"), str("p"), []byte{0})...)...), MalformedPacket},
		// CONNACK.
		{"reserved acknowledge flags", V311, pkt(0x20, 0x02, 0), MalformedPacket},
		{"3.1.1 return code 6", V311, pkt(0x20, 0, 6), MalformedPacket},
		// SUBSCRIBE / UNSUBSCRIBE.
		{"empty SUBSCRIBE 3.1.1", V311, pkt(0x82, 0, 1), ProtocolError},
		{"empty SUBSCRIBE 5", V5, pkt(0x82, 0, 1, 0), ProtocolError},
		{"SUBSCRIBE packet id 0", V311, pkt(0x82, cat([]byte{0, 0}, str("a"), []byte{0})...), ProtocolError},
		{"subscription QoS 3", V311, pkt(0x82, cat([]byte{0, 1}, str("a"), []byte{3})...), MalformedPacket},
		{"3.1.1 subscription option bits", V311, pkt(0x82, cat([]byte{0, 1}, str("a"), []byte{0x04})...), MalformedPacket},
		{"5.0 reserved subscription option bits", V5, pkt(0x82, cat([]byte{0, 1, 0}, str("a"), []byte{0x40})...), MalformedPacket},
		{"retain handling 3", V5, pkt(0x82, cat([]byte{0, 1, 0}, str("a"), []byte{0x30})...), ProtocolError},
		{"no local on a shared subscription", V5, pkt(0x82, cat([]byte{0, 1, 0}, str("$share/g/a"), []byte{0x04})...), ProtocolError},
		{"options missing", V311, pkt(0x82, cat([]byte{0, 1}, str("a"))...), MalformedPacket},
		{"empty UNSUBSCRIBE", V311, pkt(0xA2, 0, 1), ProtocolError},
		{"SUBACK without codes", V5, pkt(0x90, 0, 1, 0), ProtocolError},
		{"3.1.1 SUBACK code 3", V311, pkt(0x90, 0, 1, 3), MalformedPacket},
		// Reason codes outside their packet's set.
		{"AUTH reason 5", V5, pkt(0xF0, 5), MalformedPacket},
		{"PUBACK reason 0x01", V5, pkt(0x40, 0, 1, 0x01), MalformedPacket},
		{"PUBREC reason 0x92", V5, pkt(0x50, 0, 1, 0x92), MalformedPacket},
		{"PUBREL reason 0x10", V5, pkt(0x62, 0, 1, 0x10), MalformedPacket},
		{"PUBCOMP reason 0x87", V5, pkt(0x70, 0, 1, 0x87, 0), MalformedPacket},
		{"5.0 CONNACK reason 0x01", V5, pkt(0x20, 0, 0x01, 0), MalformedPacket},
		{"5.0 SUBACK reason 0x05", V5, pkt(0x90, 0, 1, 0, 0x00, 0x05), MalformedPacket},
		{"UNSUBACK reason 0x01", V5, pkt(0xB0, 0, 1, 0, 0x01), MalformedPacket},
		{"DISCONNECT reason 0x01", V5, pkt(0xE0, 0x01), MalformedPacket},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Decode(tc.wire, tc.v, 0)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(% x) = %v, want an *Error", tc.wire, err)
			}
			if e.Code != tc.want || Reason(err) != tc.want {
				t.Fatalf("Decode(% x) = %v, want reason 0x%02X", tc.wire, err, byte(tc.want))
			}
			if !errors.Is(err, &Error{Code: tc.want}) {
				t.Fatalf("errors.Is does not match the code")
			}
			// Read refuses it the same way.
			if _, err := Read(bytes.NewReader(tc.wire), tc.v, 0); Reason(err) != tc.want {
				t.Fatalf("Read(% x) = %v", tc.wire, err)
			}
		})
	}
}

func TestMaximumPacketSize(t *testing.T) {
	b, _ := (&Publish{Topic: "t", Payload: make([]byte, 100)}).Append(nil, V5)
	if _, _, err := Decode(b, V5, len(b)); err != nil {
		t.Fatalf("packet of exactly the maximum refused: %v", err)
	}
	// Refused from the header alone, before the body has arrived.
	if _, _, err := Decode(b[:3], V5, len(b)-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode over the maximum: %v", err)
	}
	if _, err := Read(bytes.NewReader(b[:3]), V5, len(b)-1); !errors.Is(err, ErrTooLarge) || Reason(err) != PacketTooLarge {
		t.Fatalf("Read over the maximum: %v", err)
	}
}

func TestReadEndings(t *testing.T) {
	if _, err := Read(bytes.NewReader(nil), V5, 0); err != io.EOF {
		t.Fatalf("Read at the end: %v, want io.EOF", err)
	}
	b, _ := (&Publish{Topic: "t", Payload: []byte("abc")}).Append(nil, V5)
	for i := 1; i < len(b); i++ {
		if _, err := Read(bytes.NewReader(b[:i]), V5, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Read of %d of %d bytes: %v", i, len(b), err)
		}
	}
	// A reader without ReadByte works too.
	p, err := Read(io.MultiReader(bytes.NewReader(b[:2]), bytes.NewReader(b[2:])), V5, 0)
	if err != nil || string(p.(*Publish).Payload) != "abc" {
		t.Fatal(p, err)
	}
}

// A 5-byte header claiming 256 MB allocates what arrives, not what is
// claimed.
func TestClaimedLengthDoesNotAllocate(t *testing.T) {
	hdr := []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}
	body := cat(str("t"), make([]byte, 1000))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := Read(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(body)), V5, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatal(err)
		}
		if _, _, err := Decode(cat(hdr, body), V5, 0); err != ErrIncomplete {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("10 reads of a 256 MB claim allocated %d bytes", got)
	}
}

// The encoder refuses what the decoder would: the engine cannot write a
// reason code its packet does not carry (mochi-mqtt's PUBACK 0x01).
func TestEncodeRefusesForeignReasonCodes(t *testing.T) {
	for _, tc := range []struct {
		p Packet
		v Version
	}{
		{&Puback{Ack{PacketID: 1, ReasonCode: 0x01}}, V5},
		{&Pubrec{Ack{PacketID: 1, ReasonCode: PacketIdentifierNotFound}}, V5},
		{&Pubrel{Ack{PacketID: 1, ReasonCode: NotAuthorized}}, V5},
		{&Connack{ReasonCode: NotAuthorized}, V311},
		{&Connack{ReasonCode: 0x01}, V5},
		{&Suback{PacketID: 1, ReasonCodes: []ReasonCode{NotAuthorized}}, V311},
		{&Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1}}, V5},
		{&Disconnect{ReasonCode: NoMatchingSubscribers}, V5},
		{&Auth{ReasonCode: NotAuthorized}, V5},
	} {
		if _, err := tc.p.Append(nil, tc.v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%#v encoded under v%d: %v", tc.p, tc.v, err)
		}
	}
}
