package pahoload

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/engine"
)

// engineAddr serves an in-process engine on a free port until the test ends.
func engineAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
		<-done
	})
	return ln.Addr().String()
}

// TestThroughputAndLatency drives both loads through a real engine: every
// message arrives (fan-in and p2p, QoS 0 and 1), at a positive rate, and
// the latencies are ordered and positive.
func TestThroughputAndLatency(t *testing.T) {
	tgt := Anonymous(engineAddr(t))
	for _, tc := range []struct {
		name      string
		pubs, per int
		qos       byte
	}{{"fanin-qos0", 5, 200, 0}, {"fanin-qos1", 5, 200, 1}, {"p2p-qos0", 1, 1000, 0}, {"p2p-qos1", 1, 1000, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			rate, lost := Throughput(t, tgt, tc.pubs, tc.per, tc.qos)
			if rate <= 0 || lost != 0 {
				t.Fatalf("Throughput: rate %.0f/s, lost %d; want a positive rate and nothing lost", rate, lost)
			}
		})
	}
	for _, qos := range []byte{0, 1} {
		p50, p99, lost := Latency(t, tgt, qos, 2000, 500)
		if lost != 0 || p50 <= 0 || p99 < p50 {
			t.Fatalf("Latency QoS %d: p50 %v p99 %v lost %d", qos, p50, p99, lost)
		}
	}
}
