package engine

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// TestKickWritesAtOnce: deliveries to a subscriber that reads are written
// by the goroutine that routes them, not by a writer goroutine each.
func TestKickWritesAtOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("writes from the kicking goroutine are Linux's")
	}
	if n := writersFor200(t, nil); n > 20 {
		t.Fatalf("%d writer goroutines started for 200 deliveries", n)
	}
}

// writersFor200 delivers 200 messages to a subscriber of a server whose
// connections wrap wraps (nil: none) and returns the writer goroutines
// started meanwhile.
func writersFor200(t *testing.T, wrap func(net.Conn) net.Conn) uint64 {
	t.Helper()
	srv, addr := startWrapped(t, Options{}, wrap)
	sub, _ := mustConnect(t, addr, conn3("sub", true))
	sub.subscribe(1, nil, packet.Subscription{Filter: "t"})
	pub, _ := mustConnect(t, addr, conn3("pub", true))
	before := srv.count.writers.Load()
	for i := range 200 {
		pub.send(&packet.Publish{Topic: "t", Payload: fmt.Appendf(nil, "%d", i)})
		if p := sub.recvPublish(); string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("got %q, want %d", p.Payload, i)
		}
	}
	return srv.count.writers.Load() - before
}

// throughWrapper is a wrapper whose Write is its connection's
// (WritesThrough, as the broker's admission wrapper), or one that says
// it is not (through false).
type throughWrapper struct {
	net.Conn
	through bool
}

func (w *throughWrapper) NetConn() net.Conn   { return w.Conn }
func (w *throughWrapper) WritesThrough() bool { return w.through }

// TestKickWritesAtOnceThroughWrappers: under wrappers whose writes go
// through unchanged, deliveries are written by the goroutine that routes
// them, as on a bare socket; under one that says it must see its writes,
// each takes a writer goroutine (a writer still running takes what was
// queued meanwhile: not quite one a delivery).
func TestKickWritesAtOnceThroughWrappers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("writes from the kicking goroutine are Linux's")
	}
	for _, through := range []bool{true, false} {
		t.Run(fmt.Sprintf("through=%v", through), func(t *testing.T) {
			n := writersFor200(t, func(c net.Conn) net.Conn {
				return &throughWrapper{Conn: &throughWrapper{Conn: c, through: true}, through: through}
			})
			if through && n > 20 || !through && n < 100 {
				t.Fatalf("%d writer goroutines started for 200 deliveries", n)
			}
		})
	}
}

// TestKickLeavesTheRestToAWriter: what a subscriber's full socket does
// not take at once is written, in order and whole, by a writer goroutine,
// and the publisher whose goroutine kicked it is not held up meanwhile.
func TestKickLeavesTheRestToAWriter(t *testing.T) {
	srv, addr := start(t, Options{QueueBytes: 64 << 20})
	sub, _ := mustConnect(t, addr, conn3("sub", true))
	sub.subscribe(1, nil, packet.Subscription{Filter: "t"})
	pub, _ := mustConnect(t, addr, conn3("pub", true))
	before := srv.count.writers.Load()
	const n, size = 300, 32 << 10
	for i := range n {
		pub.send(&packet.Publish{Topic: "t", Payload: bytes.Repeat([]byte{byte(i)}, size)})
	}
	// The subscriber has read nothing: the publisher is still served.
	pub.send(&packet.Pingreq{})
	if p, ok := pub.recv().(*packet.Pingresp); !ok {
		t.Fatalf("publisher got %v, want PINGRESP", p)
	}
	if srv.count.writers.Load() == before {
		t.Fatal("no writer goroutine took what the socket did not")
	}
	for i := range n {
		p := sub.recvPublish()
		if len(p.Payload) != size || p.Payload[0] != byte(i) || p.Payload[size-1] != byte(i) {
			t.Fatalf("message %d: %d bytes of %d", i, len(p.Payload), p.Payload[0])
		}
	}
	sub.silent(100 * time.Millisecond)
}
