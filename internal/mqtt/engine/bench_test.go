package engine

import (
	"bufio"
	"fmt"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// BenchmarkPointToPoint: one client publishes to one subscriber over
// loopback TCP, 64-byte payloads; at QoS 1 both sides acknowledge every
// message (the publisher pipelined, not waiting for each PUBACK).
func BenchmarkPointToPoint(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			// A queue the whole run fits: the figure is of delivery, not of
			// overflow (a faster publisher's excess is dropped and counted).
			_, addr := start(b, Options{QueueMessages: 1 << 24, QueueBytes: 1 << 30})
			sub, _ := mustConnect(b, addr, conn5("bsub", true))
			sub.subscribe(1, nil, packet.Subscription{Filter: "bench", QoS: qos})
			pub, _ := mustConnect(b, addr, conn5("bpub", true))
			msg, _ := (&packet.Publish{Topic: "bench", QoS: qos, PacketID: 1, Payload: make([]byte, 64)}).Append(nil, packet.V5)
			_ = sub.c.SetReadDeadline(time.Time{})
			_ = pub.c.SetReadDeadline(time.Time{})
			errs := make(chan error, 1)
			go func() {
				// The publisher's acks are read and dropped.
				r := bufio.NewReader(pub.c)
				for {
					if _, err := packet.Read(r, packet.V5, 0); err != nil {
						return
					}
				}
			}()
			go func() {
				w := bufio.NewWriter(pub.c)
				for range b.N {
					if _, err := w.Write(msg); err != nil {
						errs <- err
						return
					}
				}
				errs <- w.Flush()
			}()
			r := bufio.NewReader(sub.c)
			w := bufio.NewWriter(sub.c)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, err := packet.Read(r, packet.V5, 0)
				if err != nil {
					b.Fatal(err)
				}
				if m := p.(*packet.Publish); m.QoS == 1 {
					ack, _ := (&packet.Puback{Ack: packet.Ack{PacketID: m.PacketID}}).Append(nil, packet.V5)
					_, _ = w.Write(ack)
					if r.Buffered() == 0 {
						_ = w.Flush()
					}
				}
			}
			b.StopTimer()
			_ = w.Flush()
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		})
	}
}
