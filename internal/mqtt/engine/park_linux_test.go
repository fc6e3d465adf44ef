package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// TestConformanceParked runs the conformance suite again with connections
// parked after 1 ms without a packet: nearly every wait of the suite parks.
func TestConformanceParked(t *testing.T) {
	var s *Server
	// The suite's subtests run in parallel, after this function returns:
	// count the parks once they are done (this cleanup runs last).
	t.Cleanup(func() {
		if s.poll.total.Load() == 0 {
			t.Error("no connection was parked")
		}
		t.Logf("%d parks", s.poll.total.Load())
	})
	s = runConformance(t, "engine-parked", time.Millisecond)
}

// readers counts the goroutines running a connection's read loop.
func readers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "engine.(*conn).run(")
}

// waitParked waits until n connections are parked and no reader runs.
func waitParked(t *testing.T, s *Server, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d parked, no reader", n), func() bool {
		return s.Stats().Parked == n && readers() == 0
	})
}

// endsWith waits for h to have recorded SessionEnded(id, r) exactly once.
func endsWith(t *testing.T, h *hooks, id string, r EndReason) {
	t.Helper()
	want := "end " + id + " " + r.String()
	eventually(t, want, func() bool { return slices.Contains(h.log(), want) })
	time.Sleep(20 * time.Millisecond)
	n := 0
	for _, e := range h.log() {
		if strings.HasPrefix(e, "end "+id+" ") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("SessionEnded %d times: %v", n, h.log())
	}
}

// wantDisconnect checks that the client is sent DISCONNECT code (MQTT 5)
// and closed.
func wantDisconnect(t *testing.T, cl *client, code packet.ReasonCode) {
	t.Helper()
	got := cl.closed()
	if cl.v != packet.V5 {
		if len(got) != 0 {
			t.Fatalf("got %v before the close, want nothing", got)
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("got %d packets before the close, want DISCONNECT", len(got))
	}
	d, ok := got[0].(*packet.Disconnect)
	if !ok || d.ReasonCode != code {
		t.Fatalf("got %v, want DISCONNECT 0x%02X", got[0], byte(code))
	}
}

// parkEnv is what a TestParked case gets: a server parking after 10 ms, its
// hooks, and client "a" connected with keep alive 1 s and a will, parked.
type parkEnv struct {
	s     *Server
	h     *hooks
	addr  string
	cl    *client
	wills func() int64 // wills published so far
}

const keepAliveCase = "kept alive, then keep alive timeout"

// TestParked checks that a parked connection holds no goroutine and still
// works: it is sent messages, answers PINGREQ, is kept alive by pings,
// times out without them, and ends once (SessionEnded, will) when kicked,
// taken over, closed by its client or by Server.Close.
func TestParked(t *testing.T) {
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			tests := []struct {
				name string
				run  func(t *testing.T, e *parkEnv)
			}{
				{"messages and pings", func(t *testing.T, e *parkEnv) {
					s, cl := e.s, e.cl
					cl.subscribe(1, nil, packet.Subscription{Filter: "t/#", QoS: 1})
					waitParked(t, s, 1)
					for i := range 3 {
						if err := s.Publish(Message{Topic: "t/x", Payload: []byte{byte(i)}}); err != nil {
							t.Fatal(err)
						}
						if p := cl.recvPublish(); p.Topic != "t/x" || p.Payload[0] != byte(i) {
							t.Fatalf("got %s %v", p.Topic, p.Payload)
						}
						waitParked(t, s, 1) // the writer did not unpark it
						cl.send(&packet.Pingreq{})
						if p := cl.recv(); p.Type() != packet.TypePingresp {
							t.Fatalf("got %s, want PINGRESP", p.Type())
						}
						waitParked(t, s, 1)
					}
				}},
				{keepAliveCase, func(t *testing.T, e *parkEnv) {
					s, h, cl := e.s, e.h, e.cl
					// Keep alive 1 s: the connection times out 1.5 s
					// after its last packet, parked meanwhile.
					for range 6 {
						time.Sleep(400 * time.Millisecond)
						if s.Stats().Parked != 1 {
							t.Fatal("not parked between pings")
						}
						cl.send(&packet.Pingreq{})
						if p := cl.recv(); p.Type() != packet.TypePingresp {
							t.Fatalf("got %s, want PINGRESP", p.Type())
						}
					}
					start := time.Now()
					wantDisconnect(t, cl, packet.KeepAliveTimeout)
					if d := time.Since(start); d < time.Second || d > 3*time.Second {
						t.Fatalf("closed after %v, want 1.5 s", d)
					}
					endsWith(t, h, "a", EndKeepAlive)
					waitParked(t, s, 0)
					if got := e.wills(); got != 1 {
						t.Fatalf("%d wills, want 1", got)
					}
				}},
				{"kicked", func(t *testing.T, e *parkEnv) {
					s, h, cl := e.s, e.h, e.cl
					if !s.Kick("a", "bye") {
						t.Fatal("Kick: not connected")
					}
					wantDisconnect(t, cl, packet.AdministrativeAction)
					endsWith(t, h, "a", EndKicked)
					waitParked(t, s, 0)
				}},
				{"taken over", func(t *testing.T, e *parkEnv) {
					s, h, cl := e.s, e.h, e.cl
					cp := connOf(v.v, "a", false)
					cp.KeepAlive = 1
					cl2, _ := mustConnect(t, e.addr, cp)
					wantDisconnect(t, cl, packet.SessionTakenOver)
					endsWith(t, h, "a", EndTakeover)
					waitParked(t, s, 1) // the new connection
					cl2.send(&packet.Pingreq{})
					if p := cl2.recv(); p.Type() != packet.TypePingresp {
						t.Fatalf("got %s, want PINGRESP", p.Type())
					}
				}},
				{"closed by its client", func(t *testing.T, e *parkEnv) {
					s, h, cl := e.s, e.h, e.cl
					cl.c.Close()
					endsWith(t, h, "a", EndClosed)
					waitParked(t, s, 0)
					if got := e.wills(); got != 1 {
						t.Fatalf("%d wills, want 1", got)
					}
				}},
				{"server closed", func(t *testing.T, e *parkEnv) {
					s, h, cl := e.s, e.h, e.cl
					done := make(chan error, 1)
					go func() { done <- s.Close(context.Background()) }()
					wantDisconnect(t, cl, packet.ServerShuttingDown)
					if err := <-done; err != nil {
						t.Fatal(err)
					}
					endsWith(t, h, "a", EndShutdown)
				}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					h := &hooks{}
					s, addr := start(t, Options{ParkIdle: 10 * time.Millisecond, Hooks: h})
					var wills atomic.Int64
					if _, err := s.Subscribe("will/a", func(*Message) { wills.Add(1) }); err != nil {
						t.Fatal(err)
					}
					cp := connOf(v.v, "a", true) // keep alive 60 s: only an unpark ends it sooner
					if tt.name == keepAliveCase {
						cp.KeepAlive = 1
					}
					cp.Will = &packet.Will{Topic: "will/a", Payload: []byte("gone")}
					cl, _ := mustConnect(t, addr, cp)
					waitParked(t, s, 1)
					tt.run(t, &parkEnv{s: s, h: h, addr: addr, cl: cl, wills: func() int64 {
						time.Sleep(50 * time.Millisecond)
						return wills.Load()
					}})
				})
			}
		})
	}
}
