package codec

import (
	"bytes"
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/packets"
)

// A typical device uplink: a 100-byte MQTT 5 QoS 1 PUBLISH on an Alink
// property topic with a payload format indicator (paho.golang speaks MQTT
// 5 only, so both codecs run at v5).
const topic = "/sys/a1B2c3D4e5F/device-0001/thing/event/property/post"

func corralPublish() *packet.Publish {
	p := &packet.Publish{QoS: 1, PacketID: 4242, Topic: topic, Properties: packet.Properties{PayloadFormat: 1}}
	b, _ := p.Append(nil, packet.V5)
	p.Payload = bytes.Repeat([]byte{'x'}, 100-len(b))
	return p
}

func wire(b *testing.B) []byte {
	w, err := corralPublish().Append(nil, packet.V5)
	if err != nil || len(w) != 100 {
		b.Fatalf("%d bytes, %v", len(w), err)
	}
	return w
}

func BenchmarkDecode(b *testing.B) {
	w := wire(b)
	b.Run("corral/Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := packet.Decode(w, packet.V5, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("corral/Read", func(b *testing.B) {
		r := bytes.NewReader(w)
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(w)
			if _, err := packet.Read(r, packet.V5, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("paho/ReadPacket", func(b *testing.B) {
		r := bytes.NewReader(w)
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(w)
			cp, err := packets.ReadPacket(r)
			if err != nil || cp.Content.(*packets.Publish).Topic != topic {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	w := wire(b)
	b.Run("corral/Append", func(b *testing.B) {
		p := corralPublish()
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = p.Append(buf[:0], packet.V5)
		}
	})
	b.Run("paho/WriteTo", func(b *testing.B) {
		one := byte(1)
		cp := packets.NewControlPacket(packets.PUBLISH)
		pp := cp.Content.(*packets.Publish)
		pp.QoS, pp.PacketID, pp.Topic = 1, 4242, topic
		pp.Properties = &packets.Properties{PayloadFormat: &one}
		pp.Payload = corralPublish().Payload
		var out bytes.Buffer
		if _, err := cp.WriteTo(&out); err != nil || !bytes.Equal(out.Bytes(), w) {
			b.Fatalf("paho encodes differently:\n% x\n% x", out.Bytes(), w)
		}
		b.ReportAllocs()
		for b.Loop() {
			out.Reset()
			if _, err := cp.WriteTo(&out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
