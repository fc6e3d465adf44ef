package engine

import (
	"bufio"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/persist/memory"
)

// BenchmarkFanInDurable: 8 publishers send QoS 1 (64-byte payloads,
// pipelined) to one topic that one persistent subscriber (MQTT 5, session
// expiry 300 s) reads and acknowledges, over loopback TCP; with no store,
// the memory adapter and SQLite (synchronous FULL, in t.TempDir()). One op
// is one message delivered to the subscriber and PUBACKed to its publisher.
func BenchmarkFanInDurable(b *testing.B) {
	const pubs = 8
	for _, st := range []struct {
		name string
		open func(testing.TB) persist.Store
	}{
		{"off", func(testing.TB) persist.Store { return nil }},
		{"memory", func(testing.TB) persist.Store { return memory.New() }},
		{"sqlite", func(t testing.TB) persist.Store { return openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db")) }},
	} {
		b.Run(st.name, func(b *testing.B) {
			n := startNode(b, Options{Store: st.open(b), QueueMessages: 1 << 24, QueueBytes: 1 << 30})
			sub, _ := mustConnect(b, n.address(), persistentConnect(packet.V5, "bsub"))
			sub.subscribe(1, nil, packet.Subscription{Filter: "bench", QoS: 1})
			_ = sub.c.SetReadDeadline(time.Time{})
			errs, acked := make(chan error, pubs), make(chan error, pubs)
			per := (b.N + pubs - 1) / pubs
			clients := make([]*client, pubs)
			for i := range clients {
				clients[i], _ = mustConnect(b, n.address(), conn5(fmt.Sprintf("bpub%d", i), true))
				_ = clients[i].c.SetReadDeadline(time.Time{})
			}
			b.ResetTimer()
			for _, pub := range clients {
				go func() {
					// The publisher's acks are counted: the run ends when
					// every message is PUBACKed (stored) and delivered.
					r := bufio.NewReader(pub.c)
					for range per {
						if _, err := packet.Read(r, packet.V5, 0); err != nil {
							acked <- err
							return
						}
					}
					acked <- nil
				}()
				go func() {
					w := bufio.NewWriter(pub.c)
					for i := range per {
						msg, _ := (&packet.Publish{Topic: "bench", QoS: 1, PacketID: uint16(i%65535 + 1),
							Payload: make([]byte, 64)}).Append(nil, packet.V5)
						if _, err := w.Write(msg); err != nil {
							errs <- err
							return
						}
					}
					errs <- w.Flush()
				}()
			}
			r := bufio.NewReader(sub.c)
			w := bufio.NewWriter(sub.c)
			for i := 0; i < per*pubs; i++ {
				p, err := packet.Read(r, packet.V5, 0)
				if err != nil {
					b.Fatal(err)
				}
				ack, _ := (&packet.Puback{Ack: packet.Ack{PacketID: p.(*packet.Publish).PacketID}}).Append(nil, packet.V5)
				_, _ = w.Write(ack)
				if r.Buffered() == 0 {
					_ = w.Flush()
				}
			}
			_ = w.Flush()
			for range pubs {
				if err := <-acked; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			for range pubs {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
