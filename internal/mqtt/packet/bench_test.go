package packet

import (
	"bytes"
	"testing"
)

// benchPublish is a typical device uplink: a 100-byte QoS 1 PUBLISH on an
// Alink property topic, under v.
func benchPublish(v Version) *Publish {
	p := &Publish{QoS: 1, PacketID: 4242, Topic: "/sys/a1B2c3D4e5F/device-0001/thing/event/property/post"}
	if v == V5 {
		p.Properties.PayloadFormat = 1
	}
	b, _ := p.Append(nil, v)
	p.Payload = bytes.Repeat([]byte{'x'}, 100-len(b))
	return p
}

func BenchmarkPublishQoS1(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		p := benchPublish(v)
		wire, _ := p.Append(nil, v)
		if len(wire) != 100 {
			b.Fatalf("%d-byte packet", len(wire))
		}
		name := map[Version]string{V311: "v311", V5: "v5"}[v]
		b.Run("decode/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				if _, _, err := Decode(wire, v, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("read/"+name, func(b *testing.B) {
			r := bytes.NewReader(wire)
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				r.Reset(wire)
				if _, err := Read(r, v, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("encode/"+name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				var err error
				if buf, err = p.Append(buf[:0], v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
