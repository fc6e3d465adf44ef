package engine

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
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

// TestWriteNowAllocates: a write from the kicking goroutine allocates
// nothing (its callback's state comes from the server's pool), and it
// writes what it was given.
func TestWriteNowAllocates(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("writes from the kicking goroutine are Linux's")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("no connection accepted")
	}
	defer server.Close()
	rc := directSocket(server)
	if rc == nil {
		t.Fatal("no direct socket for a TCP connection")
	}
	var pool sync.Pool
	msg := []byte("hello")
	const runs = 100
	allocs := testing.AllocsPerRun(runs, func() {
		if n, err := writeNow(&pool, rc, msg); n != len(msg) || err != nil {
			t.Fatalf("writeNow = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("writeNow allocated %v times a write", allocs)
	}
	want := bytes.Repeat(msg, runs+1) // AllocsPerRun runs the function once more first
	got := make([]byte, len(want))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}
