package conformance

import (
	"fmt"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Malformed packets and protocol errors: the connection is closed, under
// MQTT 5 after an optional DISCONNECT 0x81 or 0x82, under 3.1.1 with no
// packet at all.

// malformed builds a bad packet from a topic name of the case.
type malformed struct {
	name string
	b    func(topic string) []byte
}

func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func pkt(first byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append([]byte{first, byte(len(body))}, body...)
}

func b(x ...byte) []byte { return x }

var malformedV3 = []malformed{
	{"publish_qos_3", func(t string) []byte { return pkt(0x36, str(t), b(0, 1, 'x')) }},
	{"publish_wildcard_topic", func(t string) []byte { return pkt(0x30, str(t+"/#"), b('x')) }},
	{"publish_qos1_packet_id_0", func(t string) []byte { return pkt(0x32, str(t), b(0, 0, 'x')) }},
	{"publish_invalid_utf8_topic", func(t string) []byte { return pkt(0x30, str(t+"\xff"), b('x')) }},
	{"subscribe_reserved_flags", func(t string) []byte { return pkt(0x80, b(0, 1), str(t), b(0)) }},
	{"subscribe_no_filters", func(t string) []byte { return pkt(0x82, b(0, 1)) }},
	{"subscribe_qos_3", func(t string) []byte { return pkt(0x82, b(0, 1), str(t), b(3)) }},
	{"remaining_length_5_bytes", func(string) []byte { return b(0xc0, 0x80, 0x80, 0x80, 0x80, 0x01) }},
	{"reserved_type_0", func(string) []byte { return b(0x00, 0x00) }},
	{"auth_type_15", func(string) []byte { return b(0xf0, 0x00) }},
	{"second_connect", func(t string) []byte {
		b, _ := (&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 30, ClientID: "x"}).Append(nil, packet.V311)
		return b
	}},
}

var malformedV5 = []malformed{
	{"publish_qos_3", func(t string) []byte { return pkt(0x36, str(t), b(0, 1, 0, 'x')) }},
	{"publish_topic_alias_0", func(t string) []byte { return pkt(0x30, str(t), b(3, 0x23, 0, 0, 'x')) }},
	{"publish_property_length_beyond_packet", func(t string) []byte { return pkt(0x30, str(t), b(9, 0x01)) }},
	{"publish_duplicate_property", func(t string) []byte { return pkt(0x30, str(t), b(4, 0x01, 1, 0x01, 1, 'x')) }},
	{"publish_invalid_utf8_topic", func(t string) []byte { return pkt(0x30, str(t+"\xff"), b(0, 'x')) }},
	{"subscribe_no_local_on_shared", func(t string) []byte { return pkt(0x82, b(0, 1, 0), str("$share/g/"+t), b(0x05)) }},
	{"subscribe_retain_handling_3", func(t string) []byte { return pkt(0x82, b(0, 1, 0), str(t), b(0x31)) }},
	{"remaining_length_5_bytes", func(string) []byte { return b(0xc0, 0x80, 0x80, 0x80, 0x80, 0x01) }},
	{"puback_unknown_property", func(string) []byte { return b(0x40, 0x05, 0, 1, 0, 1, 0x7f) }},
	{"second_connect", func(t string) []byte {
		b, _ := (&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: "x"}).Append(nil, packet.V5)
		return b
	}},
}

func malformedCases(v packet.Version) []testCase {
	list, prefix := malformedV3, "v3/malformed/"
	if v == packet.V5 {
		list, prefix = malformedV5, "v5/malformed/"
	}
	var cs []testCase
	for _, m := range list {
		cs = append(cs, testCase{name: prefix + m.name, run: func(c *ct) {
			cl := c.connectOK(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 30, ClientID: c.id("dev")})
			cl.sendRaw(m.b(c.topic("m")))
			if v == packet.V311 {
				cl.closed(waitFor)
				return
			}
			if err := closedAfterDisconnectErr(cl); err != nil {
				c.Fatal(err)
			}
		}})
	}
	return cs
}

// closedAfterDisconnectErr says whether the connection closes, after at
// most a DISCONNECT 0x81 or 0x82.
func closedAfterDisconnectErr(cl *client) error {
	pk, err := cl.read(waitFor)
	if err == nil {
		d, ok := pk.(*packet.Disconnect)
		if !ok || (d.ReasonCode != packet.MalformedPacket && d.ReasonCode != packet.ProtocolError) {
			return fmt.Errorf("got %s, want DISCONNECT 0x81 or 0x82, or the close", describe(pk))
		}
		return closedErr(cl, waitFor)
	}
	if isClosed(err) {
		return nil
	}
	return err
}
