package engine

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// appendAll encodes packets back to back, as one write sends them.
func appendAll(t *testing.T, v packet.Version, ps ...packet.Packet) []byte {
	t.Helper()
	var b []byte
	for _, p := range ps {
		var err error
		if b, err = p.Append(b, v); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestReadPipelined: packets arriving together (CONNECT with them, many in
// one segment, one split across writes at every byte) are each handled,
// in order.
func TestReadPipelined(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(fmt.Sprint("v", byte(v)), func(t *testing.T) {
			srv, addr := start(t, Options{ParkIdle: 50 * time.Millisecond})
			var mu sync.Mutex
			var got []string
			unsub, err := srv.Subscribe("pipe/#", func(m *Message) {
				mu.Lock()
				got = append(got, string(m.Payload))
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer unsub()
			const n = 500
			ps := []packet.Packet{connOf(v, fmt.Sprint("piped-", byte(v)), true)}
			for i := range n {
				ps = append(ps, &packet.Publish{Topic: "pipe/t", Payload: []byte(fmt.Sprint(i))})
			}
			// A payload larger than the read buffer, then more small ones.
			big := make([]byte, 3*readBufSize)
			ps = append(ps, &packet.Publish{Topic: "pipe/big", Payload: big})
			for i := n; i < 2*n; i++ {
				ps = append(ps, &packet.Publish{Topic: "pipe/t", Payload: []byte(fmt.Sprint(i))})
			}
			wire := appendAll(t, v, ps...)
			cl := dialRaw(t, addr, v)
			// The CONNECT and the first half in one write, the rest a byte
			// at a time for its first 64 bytes, then in odd pieces.
			half := len(wire) / 2
			if _, err := cl.c.Write(wire[:half]); err != nil {
				t.Fatal(err)
			}
			rest := wire[half:]
			for i := 0; i < 64; i++ {
				if _, err := cl.c.Write(rest[i : i+1]); err != nil {
					t.Fatal(err)
				}
			}
			for i := 64; i < len(rest); i += 1000 {
				if _, err := cl.c.Write(rest[i:min(i+1000, len(rest))]); err != nil {
					t.Fatal(err)
				}
			}
			if ack, ok := cl.recv().(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
				t.Fatalf("want a successful CONNACK, got %v", ack)
			}
			deadline := time.Now().Add(wait)
			for {
				mu.Lock()
				k := len(got)
				mu.Unlock()
				if k == 2*n+1 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 2*n+1 {
				t.Fatalf("handled %d publishes, want %d", len(got), 2*n+1)
			}
			j := 0
			for i, p := range got {
				if i == n {
					if len(p) != len(big) {
						t.Fatalf("publish %d: %d bytes, want the %d-byte one", i, len(p), len(big))
					}
					continue
				}
				if p != fmt.Sprint(j) {
					t.Fatalf("publish %d: %q, want %q", i, p, fmt.Sprint(j))
				}
				j++
			}
		})
	}
}

// TestReadBufferReturned: once a connection has read all that came, it
// holds no read buffer, whether it is parked or not.
func TestReadBufferReturned(t *testing.T) {
	for _, park := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprint("park=", park), func(t *testing.T) {
			srv, addr := start(t, Options{ParkIdle: park})
			cl := dialRaw(t, addr, packet.V311)
			var ps []packet.Packet
			ps = append(ps, conn3("bufreturn", true))
			for range 50 {
				ps = append(ps, &packet.Pingreq{})
			}
			if _, err := cl.c.Write(appendAll(t, packet.V311, ps...)); err != nil {
				t.Fatal(err)
			}
			cl.recv() // CONNACK
			for range 50 {
				if _, ok := cl.recv().(*packet.Pingresp); !ok {
					t.Fatal("want PINGRESP")
				}
			}
			// The reader has taken every byte and waits for the next
			// packet's first one (or parked): no buffer.
			deadline := time.Now().Add(wait)
			for srv.Stats().ReadBuffers != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections hold a read buffer, want none idle", srv.Stats().ReadBuffers)
				}
				time.Sleep(10 * time.Millisecond)
			}
			cl.send(&packet.Pingreq{})
			if _, ok := cl.recv().(*packet.Pingresp); !ok {
				t.Fatal("want PINGRESP after the idle wait")
			}
		})
	}
}

// TestPipelinedAfterConnectKeepsNoConnectDeadline: a client without keep
// alive whose next packet began in the CONNECT's segment and ends after
// the CONNECT's deadline is not cut off by that deadline.
func TestPipelinedAfterConnectKeepsNoConnectDeadline(t *testing.T) {
	_, addr := start(t, Options{ConnectTimeout: 200 * time.Millisecond})
	cl := dialRaw(t, addr, packet.V311)
	cp := conn3("nodeadline", true)
	cp.KeepAlive = 0
	wire := appendAll(t, packet.V311, cp)
	next := appendAll(t, packet.V311, &packet.Publish{Topic: "late/half", Payload: []byte("x")}, &packet.Pingreq{})
	if _, err := cl.c.Write(append(wire, next[0])); err != nil {
		t.Fatal(err)
	}
	cl.recv() // CONNACK
	time.Sleep(400 * time.Millisecond)
	if _, err := cl.c.Write(next[1:]); err != nil {
		t.Fatal(err)
	}
	if _, ok := cl.recv().(*packet.Pingresp); !ok {
		t.Fatal("want PINGRESP after the CONNECT deadline")
	}
}

// TestBusyConnectionParksWithoutBuffer: a connection sending packets one
// write at a time, close together, waits with its read buffer (busy) and
// gets every packet whole and in order; once it stops, it parks and gives
// the buffer back.
func TestBusyConnectionParksWithoutBuffer(t *testing.T) {
	srv, addr := start(t, Options{ParkIdle: 100 * time.Millisecond})
	got := make(chan string, 200)
	unsub, err := srv.Subscribe("busy/#", func(m *Message) { got <- string(m.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	cl, _ := mustConnect(t, addr, conn3("busy", true))
	// Bursts of 20 packets 1 ms apart, until one is seen busy: a loaded
	// machine may stall the sender past the busy gap (10 ms) in any one.
	sent, busy := 0, false
	for burst := 0; burst < 5 && !busy; burst++ {
		for range 20 {
			cl.send(&packet.Publish{Topic: "busy/t", Payload: []byte(fmt.Sprint(sent))})
			sent++
			time.Sleep(time.Millisecond)
		}
		// Busy: it waits for the next packet with its buffer.
		busy = srv.Stats().ReadBuffers == 1
	}
	if !busy {
		t.Fatalf("a busy connection between packets: %d read buffers held after each of 5 bursts, want 1", srv.Stats().ReadBuffers)
	}
	for i := range sent {
		select {
		case p := <-got:
			if p != fmt.Sprint(i) {
				t.Fatalf("publish %d: %q", i, p)
			}
		case <-time.After(wait):
			t.Fatalf("publish %d never came", i)
		}
	}
	deadline := time.Now().Add(wait)
	for st := srv.Stats(); st.ReadBuffers != 0 || st.Parked != 1; st = srv.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("after the burst: %d read buffers held, %d parked; want 0 and 1", st.ReadBuffers, st.Parked)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cl.send(&packet.Pingreq{})
	if _, ok := cl.recv().(*packet.Pingresp); !ok {
		t.Fatal("want PINGRESP from the parked connection")
	}
}

// TestIdleReadsSmallPacketsWhole: an idle connection's first read takes up
// to 8 bytes without a buffer: packets wholly inside them, one that
// begins there and ends later (after a pause longer than ParkIdle), and
// one that ends exactly at their end are each handled once, in order.
func TestIdleReadsSmallPacketsWhole(t *testing.T) {
	srv, addr := start(t, Options{ParkIdle: 20 * time.Millisecond})
	got := make(chan string, 10)
	unsub, err := srv.Subscribe("s/#", func(m *Message) { got <- string(m.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	cl, _ := mustConnect(t, addr, conn3("small", true))
	time.Sleep(50 * time.Millisecond) // idle: no buffer held
	pub := appendAll(t, packet.V311, &packet.Publish{Topic: "s/t", Payload: []byte("split")})
	// Two PINGREQs and the PUBLISH's first 4 bytes fill the 8 read at once.
	wire := append([]byte{0xC0, 0, 0xC0, 0}, pub[:4]...)
	if _, err := cl.c.Write(wire); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := cl.c.Write(pub[4:]); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if p := cl.recv(); p.Type() != packet.TypePingresp {
			t.Fatalf("got %s, want PINGRESP", p.Type())
		}
	}
	if m := <-got; m != "split" {
		t.Fatalf("got %q", m)
	}
	time.Sleep(50 * time.Millisecond)
	// Exactly 8 bytes: four PINGREQs.
	if _, err := cl.c.Write(bytes.Repeat([]byte{0xC0, 0}, 4)); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if p := cl.recv(); p.Type() != packet.TypePingresp {
			t.Fatalf("got %s, want PINGRESP", p.Type())
		}
	}
	select {
	case m := <-got:
		t.Fatalf("unexpected message %q", m)
	default:
	}
}
