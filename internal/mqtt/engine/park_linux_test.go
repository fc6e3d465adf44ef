package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/netlisten"
	"github.com/pires/go-proxyproto"
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

// noPark is a wrapper that may not be parked (as a WebSocket).
type noPark struct{ net.Conn }

func (noPark) Parkable() bool      { return false }
func (c noPark) NetConn() net.Conn { return c.Conn }
func (l noParkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return noPark{c}, nil
}

type noParkListener struct{ net.Listener }

// TestParkedWrapped checks that connections under TLS, a PROXY header or
// both park and resume (netlisten's listeners, unwrapped with NetConn), and
// that a wrapper saying Parkable false never parks.
func TestParkedWrapped(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name  string
		cfg   netlisten.Config
		wrap  func(net.Listener) net.Listener
		parks bool
	}{
		{"tls", netlisten.Config{TLS: tlsConf}, nil, true},
		{"proxy", netlisten.Config{Proxy: &netlisten.Proxy{Trusted: loopback}}, nil, true},
		{"proxy and tls", netlisten.Config{Proxy: &netlisten.Proxy{Trusted: loopback}, TLS: tlsConf}, nil, true},
		{"not parkable", netlisten.Config{TLS: tlsConf},
			func(ln net.Listener) net.Listener { return noParkListener{ln} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Addr = "127.0.0.1:0"
			tt.cfg.Wrap = tt.wrap
			ln, err := netlisten.Listen(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			s := New(Options{ParkIdle: 10 * time.Millisecond})
			served := make(chan error, 1)
			go func() { served <- s.Serve(ln) }()
			defer func() {
				if err := s.Close(context.Background()); err != nil {
					t.Error(err)
				}
				if err := <-served; err != nil {
					t.Error(err)
				}
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			nc := raw
			if tt.cfg.Proxy != nil {
				src, _ := net.ResolveTCPAddr("tcp", "203.0.113.9:40002")
				dst, _ := net.ResolveTCPAddr("tcp", "203.0.113.1:8883")
				if _, err := proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(raw); err != nil {
					t.Fatal(err)
				}
			}
			if tt.cfg.TLS != nil {
				nc = tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
			}
			cl := &client{t: t, c: nc, v: packet.V5}
			cl.send(conn5("w", true))
			if p, ok := cl.recv().(*packet.Connack); !ok || p.ReasonCode != packet.Success {
				t.Fatalf("got %v, want CONNACK", p)
			}
			cl.subscribe(1, nil, packet.Subscription{Filter: "t"})
			for i := range 3 {
				if tt.parks {
					waitParked(t, s, 1)
				} else {
					time.Sleep(50 * time.Millisecond)
					if n := s.Stats().Parked; n != 0 {
						t.Fatalf("%d parked", n)
					}
				}
				if err := s.Publish(Message{Topic: "t", Payload: []byte{byte(i)}}); err != nil {
					t.Fatal(err)
				}
				if p := cl.recvPublish(); p.Payload[0] != byte(i) {
					t.Fatalf("payload %v", p.Payload)
				}
				cl.send(&packet.Pingreq{})
				if p := cl.recv(); p.Type() != packet.TypePingresp {
					t.Fatalf("got %s, want PINGRESP", p.Type())
				}
			}
		})
	}
}

// TestParkedStress has many connections park and resume while they publish
// to themselves at random intervals around ParkIdle, and a packet come in
// two halves with a pause longer than ParkIdle between them: every message
// and acknowledgement arrives, and nothing is parked once they are gone.
//
// Two waves: the second's sockets take the numbers of the first's, which
// left the epoll set as they closed, while sockets parked again are
// re-armed where they are.
func TestParkedStress(t *testing.T) {
	s, addr := start(t, Options{ParkIdle: 2 * time.Millisecond})
	for wave := range 2 {
		stressParked(t, s, addr, wave)
	}
	if st := s.poll.total.Load(); st < 80 || s.poll.rearmed.Load() < st/2 {
		t.Errorf("%d parks, %d of them re-armed: want at least 80, half re-armed", st, s.poll.rearmed.Load())
	}
}

func stressParked(t *testing.T, s *Server, addr string, wave int) {
	const clients, rounds = 40, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		cl, _ := mustConnect(t, addr, conn5(fmt.Sprint("c", wave, "-", i), true))
		topic := fmt.Sprint("s/", wave, "/", i)
		cl.subscribe(1, nil, packet.Subscription{Filter: topic})
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(i), uint64(wave)))
			for k := range rounds {
				time.Sleep(time.Duration(r.IntN(5000)) * time.Microsecond)
				b, err := (&packet.Publish{QoS: 1, PacketID: uint16(k + 1), Topic: topic, Payload: []byte{byte(k)}}).Append(nil, packet.V5)
				if err != nil {
					errs <- err
					return
				}
				if k%5 == 0 {
					// In two halves: a pause in a packet is no park.
					if _, err := cl.c.Write(b[:3]); err != nil {
						errs <- err
						return
					}
					time.Sleep(5 * time.Millisecond)
					b = b[3:]
				}
				if _, err := cl.c.Write(b); err != nil {
					errs <- err
					return
				}
				var acked, got bool
				for !acked || !got {
					p, err := cl.read(wait)
					if err != nil {
						errs <- fmt.Errorf("%s round %d: %w", topic, k, err)
						return
					}
					switch p := p.(type) {
					case *packet.Puback:
						acked = p.PacketID == uint16(k+1)
					case *packet.Publish:
						got = p.Payload[0] == byte(k)
					}
				}
			}
			cl.c.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "all gone", func() bool { st := s.Stats(); return st.Connections == 0 && st.Parked == 0 })
}

// TestDurableConformanceParked runs the suite's restart cases with
// connections parked after 1 ms: a restart (Close) ends parked connections
// as it ends others.
func TestDurableConformanceParked(t *testing.T) {
	n := startNode(t, Options{ParkIdle: time.Millisecond, Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	tg := durableTarget(n)
	tg.Name = "engine+sqlite parked"
	conformance.RunDurable(t, tg)
}

// TestParkedSoonerDeadline: a connection parked with a short keep alive
// after one with a long keep alive (the poller waiting for the long one's
// deadline) still times out at its own 1.5 × keep alive, and the other
// lives on.
func TestParkedSoonerDeadline(t *testing.T) {
	srv, addr := start(t, Options{ParkIdle: 20 * time.Millisecond})
	long, _ := mustConnect(t, addr, conn3("long", true)) // keep alive 60 s
	deadline := time.Now().Add(wait)
	for srv.Stats().Parked != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the long keep-alive connection never parked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cp := conn3("short", true)
	cp.KeepAlive = 1
	short, _ := mustConnect(t, addr, cp)
	t0 := time.Now()
	if _, err := short.read(4 * time.Second); err == nil {
		t.Fatal("want the short keep-alive connection closed, got a packet")
	}
	if el := time.Since(t0); el < time.Second || el > 3*time.Second {
		t.Fatalf("closed after %v, want about 1.5 s", el)
	}
	long.send(&packet.Pingreq{})
	if _, ok := long.recv().(*packet.Pingresp); !ok {
		t.Fatal("want PINGRESP from the long keep-alive connection")
	}
}

// TestWokenParksSoon: a parked connection woken by a lone PINGREQ after
// a long silence (wokenAfterIdles × ParkIdle) parks again after wokenIdle,
// not Options.ParkIdle (a fleet pinging together holds no goroutine each
// for ParkIdle); one woken soon after its last packet (a device publishing
// every second) waits ParkIdle as before.
func TestWokenParksSoon(t *testing.T) {
	const idle = 800 * time.Millisecond
	s, addr := start(t, Options{ParkIdle: idle})
	cl, _ := mustConnect(t, addr, conn3("a", true))
	ping := cl.ping
	waitParked(t, s, 1)
	time.Sleep(wokenAfterIdles*idle + 200*time.Millisecond)
	ping()
	t0 := time.Now()
	waitParked(t, s, 1)
	if d := time.Since(t0); d > idle/2 {
		t.Fatalf("parked again %v after a lone PINGREQ following a long silence; want about %v", d, wokenIdle)
	}
	ping() // soon after the last: a talking connection
	time.Sleep(idle / 2)
	if s.Stats().Parked != 0 {
		t.Fatal("a connection woken soon after its last packet parked before ParkIdle")
	}
	waitParked(t, s, 1)
}

// TestQuickPark: a connection that speaks after a silence of at least
// half of ParkIdle parks as soon as it has read the packet (no timed wait
// of ParkIdle first), and what it sends right after is still read; one
// that speaks more often waits ParkIdle; under a wrapper that may hold
// bytes back (not Unbuffered) a connection never parks at once. Resumed
// connections' readers run on kept readers. With MQTT keep alive and
// without.
func TestQuickPark(t *testing.T) {
	const idle = 600 * time.Millisecond
	for _, tc := range []struct {
		name      string
		wrap      func(net.Conn) net.Conn
		keepAlive uint16
		quick     bool
	}{
		{"bare", nil, 60, true},
		{"bare, keep alive 0", nil, 0, true},
		{"unbuffered wrapper", func(c net.Conn) net.Conn { return &readsThrough{Conn: c, through: true} }, 60, true},
		{"buffering wrapper", func(c net.Conn) net.Conn { return &readsThrough{Conn: c} }, 60, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startWrapped(t, Options{ParkIdle: idle}, tc.wrap)
			c := conn3("a", true)
			c.KeepAlive = tc.keepAlive
			cl, _ := mustConnect(t, addr, c)
			ping := func() {
				t.Helper()
				cl.send(&packet.Pingreq{})
				if p := cl.recv(); p.Type() != packet.TypePingresp {
					t.Fatalf("got %s, want PINGRESP", p.Type())
				}
			}
			ping()
			waitParked(t, s, 1) // after ParkIdle
			ping()              // after a silence: parks at once where it may
			t0 := time.Now()
			eventually(t, "parked again", func() bool { return s.Stats().Parked == 1 && readers() == 0 })
			if d := time.Since(t0); tc.quick != (d < idle/3) {
				t.Fatalf("parked again %v after a packet following a silence (quick %v, ParkIdle %v)", d, tc.quick, idle)
			}
			if s.poll.keptN.Load() <= 0 {
				t.Fatal("no kept reader ran a resumed connection")
			}
			// Two packets in one write after a silence: the second is
			// read although the connection parked after the first.
			time.Sleep(idle / 2)
			two, _ := (&packet.Pingreq{}).Append(nil, cl.v)
			two, _ = (&packet.Pingreq{}).Append(two, cl.v)
			if _, err := cl.c.Write(two); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if p := cl.recv(); p.Type() != packet.TypePingresp {
					t.Fatalf("got %s, want PINGRESP", p.Type())
				}
			}
			// Speaking again soon: the connection waits ParkIdle.
			waitParked(t, s, 1)
			time.Sleep(idle / 2)
			ping()
			ping()
			time.Sleep(idle / 3)
			if s.Stats().Parked != 0 {
				t.Fatal("a connection speaking often parked before ParkIdle")
			}
			waitParked(t, s, 1)
		})
	}
}

// readsThrough wraps a connection, declaring whether its reads pass
// through (Unbuffered).
type readsThrough struct {
	net.Conn
	through bool
}

func (c *readsThrough) NetConn() net.Conn  { return c.Conn }
func (c *readsThrough) ReadsThrough() bool { return c.through }

// TestResumedReadMovesNoTimer: a connection resumed by a packet reads it
// without setting a ParkIdle deadline first (it was set and moved back to
// the keep-alive one every packet): a device that parks between packets
// leaves its socket's deadline alone while it stays within a quarter of
// the keep alive.
func TestResumedReadMovesNoTimer(t *testing.T) {
	const idle = 300 * time.Millisecond
	s, addr := start(t, Options{ParkIdle: idle})
	c := conn3("a", true)
	c.KeepAlive = 60
	cl, _ := mustConnect(t, addr, c)
	deadline := func() int64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			return c.rdDeadline
		}
		return -1
	}
	ping := func() {
		t.Helper()
		cl.ping()
		waitParked(t, s, 1)
	}
	ping()
	waitParked(t, s, 1)
	time.Sleep(idle / 2)
	ping() // parks at once from now on
	first := deadline()
	for range 3 {
		time.Sleep(idle / 2)
		ping()
		if d := deadline(); d != first {
			t.Fatalf("read deadline moved from %v to %v", time.Unix(0, first), time.Unix(0, d))
		}
	}
}

// countingReads is an Unbuffered wrapper counting its Read calls.
type countingReads struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingReads) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}
func (c *countingReads) NetConn() net.Conn  { return c.Conn }
func (c *countingReads) ReadsThrough() bool { return true }

// TestResumedPacketOneRead: a parked connection resumed because bytes
// came reads a packet longer than its first-bytes buffer (conn.b) in one
// read call, not its first bytes and then the rest.
func TestResumedPacketOneRead(t *testing.T) {
	const idle = 300 * time.Millisecond
	wrapped := make(chan *countingReads, 1)
	s, addr := startWrapped(t, Options{ParkIdle: idle}, func(c net.Conn) net.Conn {
		cr := &countingReads{Conn: c}
		wrapped <- cr
		return cr
	})
	c := conn3("a", true)
	c.KeepAlive = 60
	cl, _ := mustConnect(t, addr, c)
	cr := <-wrapped
	cl.ping()
	waitParked(t, s, 1)
	for i := range 3 {
		time.Sleep(idle / 2) // after a silence: parks again at once
		before := cr.reads.Load()
		cl.send(&packet.Publish{Topic: "t/" + strings.Repeat("x", 64), Payload: []byte(strings.Repeat("p", 64))})
		eventually(t, "read", func() bool { return cr.reads.Load() > before })
		waitParked(t, s, 1)
		if i == 0 {
			continue // the first packet after the timed park may be read otherwise
		}
		if n := cr.reads.Load() - before; n != 1 {
			t.Fatalf("a resumed connection read a PUBLISH of over 128 bytes in %d read calls, want 1", n)
		}
	}
}
