package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/persist/memory"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// openSQLite opens a SQLite store in path, closed when the test ends.
func openSQLite(t testing.TB, path string) persist.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db.MQTT()
}

// stores are the adapters the durable tests run against.
var stores = []struct {
	name string
	open func(t testing.TB) persist.Store
}{
	{"memory", func(testing.TB) persist.Store { return memory.New() }},
	{"sqlite", func(t testing.TB) persist.Store { return openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db")) }},
}

// node is a server on a store that a test restarts (Close, then Open on the
// same store, on a new :0 port).
type node struct {
	t    testing.TB
	o    Options
	mu   sync.Mutex
	s    *Server
	addr string
	done chan error
}

func startNode(t testing.TB, o Options) *node {
	t.Helper()
	n := &node{t: t, o: o}
	if err := n.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func (n *node) start(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s, err := Open(ctx, n.o)
	if err != nil {
		ln.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	n.mu.Lock()
	n.s, n.addr, n.done = s, ln.Addr().String(), done
	n.mu.Unlock()
	return nil
}

func (n *node) stop() error {
	n.mu.Lock()
	s, done := n.s, n.done
	n.s = nil
	n.mu.Unlock()
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		return err
	}
	if err := <-done; err != nil && !errors.Is(err, ErrClosed) { // ErrClosed: closed before Serve began
		return err
	}
	return nil
}

func (n *node) restart(ctx context.Context) error {
	if err := n.stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return n.start(ctx)
}

func (n *node) address() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// persistentConnect is a CONNECT resuming a persistent session: 3.1.1
// clean session 0, or MQTT 5 clean start 0 with a session expiry of 300 s.
func persistentConnect(v packet.Version, id string) *packet.Connect {
	cp := connOf(v, id, false)
	if v == packet.V5 {
		e := uint32(300)
		cp.Properties.SessionExpiry = &e
	}
	return cp
}

// publishAcked publishes QoS 1 and waits for its PUBACK.
func publishAcked(t testing.TB, addr string, v packet.Version, topic, payload string) {
	t.Helper()
	pub, _ := mustConnect(t, addr, connOf(v, "pub", true))
	pub.send(&packet.Publish{QoS: 1, PacketID: 7, Topic: topic, Payload: []byte(payload)})
	if ack, ok := pub.recv().(*packet.Puback); !ok || ack.PacketID != 7 {
		t.Fatalf("got %v, want PUBACK 7", ack)
	}
	pub.send(&packet.Disconnect{})
	pub.c.Close()
}

// TestDurableRestart: a persistent session's subscription survives a
// restart on the same store, a QoS 1 message PUBACKed to its publisher
// before the restart is delivered after it, and once acknowledged it is
// gone after the next restart; a retained message survives too.
func TestDurableRestart(t *testing.T) {
	for _, st := range stores {
		for _, ver := range versions {
			t.Run(st.name+"/"+ver.name, func(t *testing.T) {
				n := startNode(t, Options{Store: st.open(t)})
				sub, _ := mustConnect(t, n.address(), persistentConnect(ver.v, "sub"))
				sub.subscribe(1, nil, packet.Subscription{Filter: "q/#", QoS: 1})
				sub.send(&packet.Disconnect{})
				sub.closed()
				publishAcked(t, n.address(), ver.v, "q/1", "one")
				pub, _ := mustConnect(t, n.address(), connOf(ver.v, "pub", true))
				pub.send(&packet.Publish{Topic: "kept", Retain: true, Payload: []byte("r")})
				pub.send(&packet.Disconnect{})
				pub.closed()
				if err := n.restart(context.Background()); err != nil {
					t.Fatal(err)
				}

				sub, ack := mustConnect(t, n.address(), persistentConnect(ver.v, "sub"))
				if !ack.SessionPresent {
					t.Fatal("session not present after the restart")
				}
				p := sub.recvPublish()
				if p.Topic != "q/1" || string(p.Payload) != "one" || p.QoS != 1 {
					t.Fatalf("got %s %q QoS %d, want q/1 \"one\" QoS 1", p.Topic, p.Payload, p.QoS)
				}
				sub.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
				publishAcked(t, n.address(), ver.v, "q/2", "two") // the subscription was restored
				p = sub.recvPublish()
				if p.Topic != "q/2" {
					t.Fatalf("got %s, want q/2", p.Topic)
				}
				sub.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
				sub.send(&packet.Disconnect{})
				sub.closed()
				if err := n.restart(context.Background()); err != nil {
					t.Fatal(err)
				}

				sub, _ = mustConnect(t, n.address(), persistentConnect(ver.v, "sub"))
				sub.silent(300 * time.Millisecond) // acknowledged: not stored any more
				late, _ := mustConnect(t, n.address(), connOf(ver.v, "late", true))
				late.subscribe(1, nil, packet.Subscription{Filter: "kept"})
				if p := late.recvPublish(); string(p.Payload) != "r" || !p.Retain {
					t.Fatalf("got %q retain %v, want the retained \"r\"", p.Payload, p.Retain)
				}
			})
		}
	}
}

// TestDurableInflight: a QoS 1 message sent and not acknowledged before a
// restart is resent with DUP and the same packet id after it; a QoS 2
// message whose PUBREC came is finished with PUBREL.
func TestDurableInflight(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			n := startNode(t, Options{Store: st.open(t)})
			sub, _ := mustConnect(t, n.address(), persistentConnect(packet.V5, "sub"))
			sub.subscribe(1, nil, packet.Subscription{Filter: "q/#", QoS: 2})
			publishAcked(t, n.address(), packet.V5, "q/1", "one")
			p1 := sub.recvPublish()
			pub, _ := mustConnect(t, n.address(), conn5("pub2", true))
			pub.send(&packet.Publish{QoS: 2, PacketID: 9, Topic: "q/2", Payload: []byte("two")})
			if _, ok := pub.recv().(*packet.Pubrec); !ok {
				t.Fatal("want PUBREC")
			}
			p2 := sub.recvPublish()
			sub.send(&packet.Pubrec{Ack: packet.Ack{PacketID: p2.PacketID}})
			if rel, ok := sub.recv().(*packet.Pubrel); !ok || rel.PacketID != p2.PacketID {
				t.Fatal("want PUBREL")
			}
			if err := n.restart(context.Background()); err != nil {
				t.Fatal(err)
			}

			sub, ack := mustConnect(t, n.address(), persistentConnect(packet.V5, "sub"))
			if !ack.SessionPresent {
				t.Fatal("session not present after the restart")
			}
			p := sub.recvPublish()
			if !p.Dup || p.PacketID != p1.PacketID || p.Topic != "q/1" {
				t.Fatalf("got %s id %d dup %v, want q/1 id %d resent with DUP", p.Topic, p.PacketID, p.Dup, p1.PacketID)
			}
			if rel, ok := sub.recv().(*packet.Pubrel); !ok || rel.PacketID != p2.PacketID {
				t.Fatalf("want PUBREL %d resent", p2.PacketID)
			}
			sub.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
			sub.send(&packet.Pubcomp{Ack: packet.Ack{PacketID: p2.PacketID}})
			sub.silent(200 * time.Millisecond)
		})
	}
}

// TestDurableInboundQoS2: a QoS 2 id PUBRECed before a restart is still
// held after it: the resent PUBLISH is not delivered twice.
func TestDurableInboundQoS2(t *testing.T) {
	n := startNode(t, Options{Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	watch, _ := mustConnect(t, n.address(), persistentConnect(packet.V5, "watch"))
	watch.subscribe(1, nil, packet.Subscription{Filter: "t", QoS: 0})
	watch.send(&packet.Disconnect{})
	watch.closed()
	pub, _ := mustConnect(t, n.address(), persistentConnect(packet.V311, "pub"))
	pub.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "t", Payload: []byte("x")})
	if _, ok := pub.recv().(*packet.Pubrec); !ok {
		t.Fatal("want PUBREC")
	}
	if err := n.restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	watch, _ = mustConnect(t, n.address(), persistentConnect(packet.V5, "watch"))
	pub, _ = mustConnect(t, n.address(), persistentConnect(packet.V311, "pub"))
	pub.send(&packet.Publish{QoS: 2, PacketID: 5, Dup: true, Topic: "t", Payload: []byte("x")})
	if _, ok := pub.recv().(*packet.Pubrec); !ok {
		t.Fatal("want PUBREC")
	}
	pub.send(&packet.Pubrel{Ack: packet.Ack{PacketID: 5}})
	if c, ok := pub.recv().(*packet.Pubcomp); !ok || c.ReasonCode != packet.Success {
		t.Fatal("want PUBCOMP 0")
	}
	watch.silent(200 * time.Millisecond)
}

// durableTarget is a conformance target on n.
func durableTarget(n *node) conformance.Target {
	return conformance.Target{
		Name: "engine+sqlite",
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", n.address())
		},
		Restart: n.restart,
		Features: conformance.Features{MaxQoS: 2, Retain: true, SharedSubscriptions: true, SubscriptionIDs: true,
			WillDelay: true, RefusedFilter: "forbidden/#", RefusedTopic: "forbidden", MaxPacketSize: 1 << 20,
			MaxQueued: 1000, MaxKeepAlive: 60},
	}
}

// TestDurableConformance runs the conformance suite's restart cases
// against the engine, restarted (Close, Open) on the same SQLite file.
func TestDurableConformance(t *testing.T) {
	n := startNode(t, Options{Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	conformance.RunDurable(t, durableTarget(n))
}

// TestConformanceSQLite runs the whole conformance suite against the engine
// with a SQLite store: durability changes nothing a client sees.
func TestConformanceSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole suite again")
	}
	n := startNode(t, Options{MaxKeepAlive: 60, Hooks: &hooks{denySub: "forbidden/#", denyPublish: "forbidden"},
		Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	tg := durableTarget(n)
	tg.Restart = nil
	conformance.Run(t, tg)
}

// killDBEnv names the SQLite file a re-executed test binary serves the
// engine on until it is killed (TestDurableKill).
const killDBEnv = "CORRAL_TEST_ENGINE_KILL_DB"

// TestDurableKill is issue 13's kill -9 promise, end to end: a child
// process (this test binary, re-executed) runs the engine on a SQLite
// file; a QoS 1 message is published to an offline persistent subscriber
// and PUBACKed; the child is killed with SIGKILL; a new child on the same
// file delivers the message to the subscriber when it resumes its session.
func TestDurableKill(t *testing.T) {
	if path := os.Getenv(killDBEnv); path != "" {
		serveUntilKilled(path)
	}
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mqtt.db")
			addr, kill := startChild(t, path)
			sub, _ := mustConnect(t, addr, persistentConnect(ver.v, "sub"))
			sub.subscribe(1, nil, packet.Subscription{Filter: "q/#", QoS: 1})
			sub.send(&packet.Disconnect{})
			sub.closed()
			publishAcked(t, addr, ver.v, "q/1", "kept through kill -9")
			kill()

			addr, _ = startChild(t, path)
			sub, ack := mustConnect(t, addr, persistentConnect(ver.v, "sub"))
			if !ack.SessionPresent {
				t.Fatal("session not present after kill -9")
			}
			if p := sub.recvPublish(); p.Topic != "q/1" || string(p.Payload) != "kept through kill -9" {
				t.Fatalf("got %s %q", p.Topic, p.Payload)
			}
		})
	}
}

// startChild runs the engine on path in a child process and returns its
// address and a function that kills it with SIGKILL (also called when the
// test ends).
func startChild(t *testing.T, path string) (string, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableKill$")
	cmd.Env = append(os.Environ(), killDBEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
	t.Cleanup(kill)
	r := bufio.NewScanner(out)
	for r.Scan() {
		if a, ok := strings.CutPrefix(r.Text(), "listening "); ok {
			return a, kill
		}
	}
	t.Fatalf("child ended before listening: %v", r.Err())
	return "", nil
}

// serveUntilKilled is the child of TestDurableKill: it never returns.
func serveUntilKilled(path string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		fail(err)
	}
	s, err := Open(ctx, Options{Store: db.MQTT()})
	if err != nil {
		fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	fmt.Println("listening " + ln.Addr().String())
	fail(s.Serve(ln))
}

// TestDurableWill: the will of a session connected when the server stopped
// is published once it starts again (its connection ended without
// DISCONNECT), to a persistent subscriber restored beside it; a will
// whose session resumes within its delay is not.
func TestDurableWill(t *testing.T) {
	n := startNode(t, Options{Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	watch, _ := mustConnect(t, n.address(), persistentConnect(packet.V5, "watch"))
	watch.subscribe(1, nil, packet.Subscription{Filter: "will/#", QoS: 1})
	watch.send(&packet.Disconnect{})
	watch.closed()
	gone := persistentConnect(packet.V5, "gone")
	gone.Will = &packet.Will{QoS: 1, Topic: "will/gone", Payload: []byte("bye")}
	mustConnect(t, n.address(), gone)
	back := persistentConnect(packet.V5, "back")
	back.Will = &packet.Will{QoS: 1, Topic: "will/back", Payload: []byte("bye"), Properties: packet.Properties{WillDelay: 60}}
	mustConnect(t, n.address(), back)
	if err := n.restart(context.Background()); err != nil {
		t.Fatal(err)
	}

	mustConnect(t, n.address(), persistentConnect(packet.V5, "back")) // within the delay: no will
	watch, _ = mustConnect(t, n.address(), persistentConnect(packet.V5, "watch"))
	p := watch.recvPublish()
	if p.Topic != "will/gone" || string(p.Payload) != "bye" {
		t.Fatalf("got %s %q, want gone's will", p.Topic, p.Payload)
	}
	watch.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
	watch.silent(300 * time.Millisecond)
}

// TestDurableRetainedOnSubscribe: a retained message a persistent session
// got on subscribing, not acknowledged before a restart, is resent after.
func TestDurableRetainedOnSubscribe(t *testing.T) {
	n := startNode(t, Options{Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	pub, _ := mustConnect(t, n.address(), conn5("pub", true))
	pub.send(&packet.Publish{QoS: 1, PacketID: 1, Retain: true, Topic: "kept", Payload: []byte("r")})
	pub.recv()
	sub, _ := mustConnect(t, n.address(), persistentConnect(packet.V311, "sub"))
	sub.subscribe(1, nil, packet.Subscription{Filter: "kept", QoS: 1})
	first := sub.recvPublish()
	if err := n.restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub, _ = mustConnect(t, n.address(), persistentConnect(packet.V311, "sub"))
	p := sub.recvPublish()
	if !p.Dup || p.PacketID != first.PacketID || string(p.Payload) != "r" || !p.Retain {
		t.Fatalf("got %q id %d dup %v retain %v, want the retained message resent", p.Payload, p.PacketID, p.Dup, p.Retain)
	}
}

// TestDurableConcurrentPublishers: publishers PUBACKed concurrently (their
// writes sharing SQLite commits) lose nothing across a restart, and each
// publisher's messages reach the persistent subscriber in its order.
func TestDurableConcurrentPublishers(t *testing.T) {
	const pubs, each = 4, 50
	n := startNode(t, Options{Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	sub, _ := mustConnect(t, n.address(), persistentConnect(packet.V5, "sub"))
	sub.subscribe(1, nil, packet.Subscription{Filter: "q/#", QoS: 1})
	sub.send(&packet.Disconnect{})
	sub.closed()
	var wg sync.WaitGroup
	for i := range pubs {
		pub, _ := mustConnect(t, n.address(), conn5(fmt.Sprintf("pub%d", i), true))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out []byte
			for j := range each {
				out, _ = (&packet.Publish{QoS: 1, PacketID: uint16(j + 1), Topic: fmt.Sprintf("q/%d", i),
					Payload: []byte(fmt.Sprint(j))}).Append(out, packet.V5)
			}
			if _, err := pub.c.Write(out); err != nil {
				t.Error(err)
				return
			}
			for range each {
				if p, err := pub.read(wait); err != nil {
					t.Error(err)
					return
				} else if _, ok := p.(*packet.Puback); !ok {
					t.Errorf("got %s, want PUBACK", p.Type())
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := n.restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub, _ = mustConnect(t, n.address(), persistentConnect(packet.V5, "sub"))
	next := make([]int, pubs)
	for range pubs * each {
		p := sub.recvPublish()
		var i, j int
		fmt.Sscanf(p.Topic, "q/%d", &i)
		fmt.Sscan(string(p.Payload), &j)
		if j != next[i] {
			t.Fatalf("publisher %d: got message %d, want %d", i, j, next[i])
		}
		next[i]++
		sub.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
	}
	sub.silent(200 * time.Millisecond)
}

// TestDurableDiscard: sessions changed through the in-process API are
// stored as changed: an UnsubscribeClient stays unsubscribed and a
// Discarded session stays gone after a restart.
func TestDurableDiscard(t *testing.T) {
	n := startNode(t, Options{Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	for _, id := range []string{"a", "b"} {
		c, _ := mustConnect(t, n.address(), persistentConnect(packet.V5, id))
		c.subscribe(1, nil, packet.Subscription{Filter: "x", QoS: 1}, packet.Subscription{Filter: "y", QoS: 1})
		c.send(&packet.Disconnect{})
		c.closed()
	}
	n.mu.Lock()
	s := n.s
	n.mu.Unlock()
	if err := s.UnsubscribeClient("a", []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if !s.Discard("b") {
		t.Fatal("b not discarded")
	}
	if err := n.restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	s = n.s
	n.mu.Unlock()
	if in, ok := s.SessionByID("a"); !ok || !equal(in.Filters, []string{"y"}) {
		t.Fatalf("a: %v %v, want a session with y only", ok, in.Filters)
	}
	if _, ok := s.SessionByID("b"); ok {
		t.Fatal("b came back after Discard")
	}
}

// TestDurableDiscardFromHandler: an in-process handler may Discard a
// stored session that the message it handles is being stored for (the
// delete waits for that batch on a goroutine of its own, not the
// publisher's).
func TestDurableDiscardFromHandler(t *testing.T) {
	n := startNode(t, Options{Store: openSQLite(t, filepath.Join(t.TempDir(), "mqtt.db"))})
	c, _ := mustConnect(t, n.address(), persistentConnect(packet.V5, "b"))
	c.subscribe(1, nil, packet.Subscription{Filter: "revoke", QoS: 1})
	c.send(&packet.Disconnect{})
	c.closed()
	n.mu.Lock()
	s := n.s
	n.mu.Unlock()
	unsub, err := s.Subscribe("revoke", func(*Message) { s.Discard("b") })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	publishAcked(t, n.address(), packet.V5, "revoke", "now")
	eventually(t, "b discarded", func() bool { _, ok := s.SessionByID("b"); return !ok })
}

// TestDurableExpiryWhileRunning: a stored session whose expiry passes while
// the server runs ends then: its will (delayed longer than the expiry)
// goes out, its record and queued copies are deleted from the store, and
// neither a reconnection nor a restart finds it.
func TestDurableExpiryWhileRunning(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			store := st.open(t)
			n := startNode(t, Options{Store: store})
			w := watcher(t, n.address(), "dxw")
			cp := withWill(conn5("dx", false), "dxw", 60)
			one := uint32(1)
			cp.Properties.SessionExpiry = &one
			c, _ := mustConnect(t, n.address(), cp)
			c.subscribe(1, nil, packet.Subscription{Filter: "dx/#", QoS: 1})
			c.c.Close()
			eventually(t, "offline", func() bool { return !n.s.Connected("dx") })
			publishAcked(t, n.address(), packet.V5, "dx/1", "queued")
			stored := func() (found bool) {
				err := store.Load(context.Background(), func(l persist.Loaded) error {
					found = found || l.Session.ClientID == "dx"
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return found
			}
			if !stored() {
				t.Fatal("persistent session not stored")
			}
			w.recvPublish() // the will, at the expiry
			eventually(t, "session deleted from the store", func() bool { return !stored() })
			if _, ok := n.s.SessionByID("dx"); ok {
				t.Fatal("expired session still live")
			}
			if err := n.restart(context.Background()); err != nil {
				t.Fatal(err)
			}
			c, ack := mustConnect(t, n.address(), persistentConnect(packet.V5, "dx"))
			if ack.SessionPresent {
				t.Fatal("expired session present after a restart")
			}
			c.silent(200 * time.Millisecond)
		})
	}
}

// TestRouteQoS1Allocates: a QoS 1 message no stored session receives
// costs its batch alone to route with a store, not a channel too (made
// only for a stored copy's transitions to wait on).
func TestRouteQoS1Allocates(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Store: memory.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	m := &Message{Topic: "a/b", Payload: []byte("x"), QoS: 1}
	now := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		m.batch = nil
		if _, err := s.route(m, now, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("routing a QoS 1 message allocated %v times, want 1 (its batch)", allocs)
	}
}
