package packet

import (
	"bytes"
	"reflect"
	"testing"
)

// fuzzSeeds are valid packets of every type in both versions, and a few
// refusals, for the fuzzers to mutate.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, ctx := range allCtx {
		if b, err := host(ctx, merged(ctx)).Append(nil, V5); err == nil {
			seeds = append(seeds, b)
		}
	}
	for _, p := range []Packet{
		&Connect{Version: V311, ClientID: "c", Will: &Will{QoS: 1, Topic: "w"}, UsernameFlag: true, PasswordFlag: true},
		&Connack{SessionPresent: true}, &Publish{QoS: 2, PacketID: 1, Topic: "a/b", Payload: []byte("x")},
		&Puback{Ack{PacketID: 1}}, &Pubrec{Ack{PacketID: 1}}, &Pubrel{Ack{PacketID: 1}}, &Pubcomp{Ack{PacketID: 1}},
		&Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/#", QoS: 1}}},
		&Suback{PacketID: 1, ReasonCodes: []ReasonCode{0x80}}, &Unsubscribe{PacketID: 1, Filters: []string{"a"}},
		&Unsuback{PacketID: 1}, &Pingreq{}, &Pingresp{}, &Disconnect{},
	} {
		b, _ := p.Append(nil, V311)
		seeds = append(seeds, b)
	}
	return append(seeds, []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, 't'}, []byte{0xF0, 0x01, 0x05})
}

// FuzzDecode: no input panics Decode or Read; both agree; whatever decodes
// encodes, and the encoding decodes to an equal packet.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, byte(V311))
		f.Add(s, byte(V5))
	}
	f.Fuzz(func(t *testing.T, data []byte, vb byte) {
		v := V311
		if vb&1 == 1 {
			v = V5
		}
		p, n, err := Decode(data, v, 0)
		rp, rerr := Read(bytes.NewReader(data), v, 0)
		if err == ErrIncomplete {
			if rerr == nil {
				t.Fatalf("Read decoded what Decode found incomplete")
			}
			return
		}
		if (err == nil) != (rerr == nil) || Reason(err) != Reason(rerr) {
			t.Fatalf("Decode: %v; Read: %v", err, rerr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(p, rp) {
			t.Fatalf("Decode and Read differ:\n%#v\n%#v", p, rp)
		}
		b, err := p.Append(nil, v)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", p, err)
		}
		if len(b) > n {
			t.Fatalf("re-encoding grew from %d to %d bytes", n, len(b))
		}
		p2, n2, err := Decode(b, v, 0)
		if err != nil || n2 != len(b) {
			t.Fatalf("decode of the re-encoding % x: %v", b, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the packet:\n%#v\n%#v", p, p2)
		}
	})
}

// FuzzTopic: the topic helpers never panic, a valid name never contains a
// wildcard, and a filter equal to a valid name matches it.
func FuzzTopic(f *testing.F) {
	for _, s := range []string{"a/b", "#", "+/+", "$share/g/a/#", "$SYS/x", "a//b", "/"} {
		f.Add(s, "a/b")
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		ValidTopicFilter(filter)
		ParseShared(filter)
		Match(filter, topic)
		if ValidTopicName(topic) == nil {
			if ValidTopicFilter(topic) != nil {
				t.Fatalf("valid name %q is not a valid filter", topic)
			}
			if !IsSystemTopic(topic) && !Match("#", topic) {
				t.Fatalf("# does not match %q", topic)
			}
			if !Match(topic, topic) {
				t.Fatalf("%q does not match itself", topic)
			}
		}
	})
}
