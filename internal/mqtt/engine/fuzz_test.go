package engine

import (
	"net"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// FuzzConn feeds arbitrary bytes after a valid CONNECT (or instead of one)
// to a connection: the engine must not panic, and must end the connection
// and its goroutines (goleak checks at the end of the run).
func FuzzConn(f *testing.F) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		cp, _ := connOf(v, "fz", false).Append(nil, v)
		f.Add(cp)
		pub, _ := (&packet.Publish{QoS: 2, Topic: "a", PacketID: 1}).Append(nil, v)
		sub, _ := (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "#", QoS: 2}}}).Append(nil, v)
		f.Add(append(append(cp, sub...), pub...))
	}
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	srv := New(Options{ConnectTimeout: 100 * time.Millisecond, MaxPacketSize: 4096})
	defer srv.Close(f.Context())
	f.Fuzz(func(t *testing.T, b []byte) {
		a, z := net.Pipe()
		done := make(chan struct{})
		go func() { srv.ServeConn(z); close(done) }()
		go func() {
			// Drain whatever the server writes.
			buf := make([]byte, 4096)
			for {
				if _, err := a.Read(buf); err != nil {
					return
				}
			}
		}()
		_ = a.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = a.Write(b)
		a.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("CONNECT not handled")
		}
		for deadline := time.Now().Add(5 * time.Second); srv.Stats().Connections != 0; {
			if time.Now().After(deadline) {
				t.Fatal("connection not ended")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// FuzzDecodeStored: what a store hands back (a message, a will) is decoded
// or refused with an error, never a panic; an encoded will round-trips.
func FuzzDecodeStored(f *testing.F) {
	w := &packet.Will{QoS: 1, Topic: "a/b", Payload: []byte("x"), Properties: packet.Properties{WillDelay: 5}}
	f.Add(encodeWill(w))
	d := delivery{msg: &Message{Topic: "t", Payload: []byte("p")}, qos: 2, subIDs: []uint32{3}}
	raw, _ := encodeDelivery(&d)
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeDelivery(b, time.Time{}, 1)
		if w, err := decodeWill(b); err == nil && w != nil {
			if _, err := decodeWill(encodeWill(w)); err != nil {
				t.Fatalf("a decoded will does not round-trip: %v", err)
			}
		}
	})
}
