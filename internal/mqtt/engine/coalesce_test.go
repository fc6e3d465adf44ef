package engine

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// countingConn counts the writes made to it.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestAckAndSelfDeliveryOneWrite: a QoS 1 publish whose routing delivers a
// message to the publisher's own session is acknowledged and delivered in
// one write, both versions: as a device's shadow update, whose in-process
// handler publishes update/accepted once the store committed, then returns.
func TestAckAndSelfDeliveryOneWrite(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			srv, _ := start(t, Options{})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var writes atomic.Int64
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				srv.ServeConn(countingConn{Conn: nc, writes: &writes})
			}()
			cl, _ := mustConnect(t, ln.Addr().String(), connOf(v, "self", true))
			cl.subscribe(1, nil, packet.Subscription{Filter: "self/accepted", QoS: 1})
			unsub, err := srv.Subscribe("self/update", func(m *Message) {
				if err := srv.Publish(Message{Topic: "self/accepted", Payload: m.Payload, QoS: 1}); err != nil {
					t.Error(err)
				}
				time.Sleep(2 * time.Millisecond) // the handler's own work after publishing
			})
			if err != nil {
				t.Fatal(err)
			}
			defer unsub()
			single := 0
			for i := range 50 {
				before := writes.Load()
				cl.send(&packet.Publish{QoS: 1, PacketID: uint16(10 + i), Topic: "self/update", Payload: []byte("x")})
				var acked, delivered bool
				for !acked || !delivered {
					switch p := cl.recv().(type) {
					case *packet.Puback:
						acked = true
					case *packet.Publish:
						delivered = true
						if p.QoS > 0 {
							cl.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
						}
					default:
						t.Fatalf("got %s", p.Type())
					}
				}
				if writes.Load()-before == 1 {
					single++
				}
				// The writer of the publish before may still run (it
				// writes what it finds) when this one's answer comes.
				time.Sleep(time.Millisecond)
			}
			if single < 45 {
				t.Fatalf("%d of 50 publishes acknowledged and answered in one write, want nearly all", single)
			}
		})
	}
}

// TestSelfDeliveryNotHeldBehindABurst: a connection publishing back to back
// (QoS 1, each answered on a topic it subscribed) gets its answers as it
// goes, not after its last publish: a delivery waits for one ack at most.
func TestSelfDeliveryNotHeldBehindABurst(t *testing.T) {
	srv, addr := start(t, Options{})
	cl, _ := mustConnect(t, addr, conn5("burst", true))
	cl.subscribe(1, nil, packet.Subscription{Filter: "burst/accepted", QoS: 0})
	unsub, err := srv.Subscribe("burst/update", func(m *Message) {
		if err := srv.Publish(Message{Topic: "burst/accepted", Payload: m.Payload}); err != nil {
			t.Error(err)
		}
		time.Sleep(time.Millisecond) // a store's commit
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	const n = 100
	var wire []byte
	for i := range n {
		wire, err = (&packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "burst/update", Payload: []byte("x")}).Append(wire, packet.V5)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.c.Write(wire); err != nil {
		t.Fatal(err)
	}
	acks := 0
	for {
		switch p := cl.recv().(type) {
		case *packet.Puback:
			acks++
			continue
		case *packet.Publish:
		default:
			t.Fatalf("got %s", p.Type())
		}
		break
	}
	if acks > n/4 {
		t.Fatalf("the first answer came after %d of %d acks: deliveries held back while the connection kept publishing", acks, n)
	}
}
