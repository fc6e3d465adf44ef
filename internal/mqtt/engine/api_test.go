package engine

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// TestInProcessSubscribe: a handler sees clients' messages until it
// unsubscribes.
func TestInProcessSubscribe(t *testing.T) {
	srv, addr := start(t, Options{})
	got := make(chan *Message, 4)
	unsub, err := srv.Subscribe("svc/+", func(m *Message) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	c, _ := mustConnect(t, addr, conn3("dev", true))
	c.send(&packet.Publish{Topic: "svc/x", QoS: 1, PacketID: 1, Payload: []byte("up")})
	c.recv()
	select {
	case m := <-got:
		if m.Topic != "svc/x" || string(m.Payload) != "up" || m.Publisher != "dev" {
			t.Fatalf("handler got %+v", m)
		}
	case <-time.After(wait):
		t.Fatal("handler not called")
	}
	unsub()
	c.send(&packet.Publish{Topic: "svc/x", QoS: 1, PacketID: 2})
	c.recv()
	select {
	case m := <-got:
		t.Fatalf("after unsubscribe: %+v", m)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := srv.Subscribe("a/#/b", func(*Message) {}); err == nil {
		t.Fatal("bad filter accepted")
	}
}

// TestSubscribeClient: server-side subscriptions of a session, online or
// offline, deliver as the client's own.
func TestSubscribeClient(t *testing.T) {
	srv, addr := start(t, Options{})
	if err := srv.SubscribeClient("nobody", nil); err == nil {
		t.Fatal("no error for a missing session")
	}
	c, _ := mustConnect(t, addr, conn3("ss", true))
	if err := srv.SubscribeClient("ss", []subs.Subscription{{Filter: "down/ss", Options: subs.Options{QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Publish(Message{Topic: "down/ss", QoS: 1, Payload: []byte("cmd")}); err != nil {
		t.Fatal(err)
	}
	if m := c.recvPublish(); string(m.Payload) != "cmd" || m.QoS != 1 {
		t.Fatalf("got %+v", m)
	}
	in, ok := srv.SessionByID("ss")
	if !ok || !in.Connected || len(in.Filters) != 1 {
		t.Fatalf("session %+v", in)
	}
}

// TestKick: Kick ends the connection, v5 with DISCONNECT 0x98 and the
// reason, 3.1.1 with a bare close; SessionEnded says kicked.
func TestKick(t *testing.T) {
	h := &hooks{}
	srv, addr := start(t, Options{Hooks: h})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			id := "kick-" + ver.name
			c, _ := mustConnect(t, addr, connOf(ver.v, id, true))
			if !srv.Connected(id) {
				t.Fatal("not connected")
			}
			if !srv.Kick(id, "disabled") {
				t.Fatal("Kick said not connected")
			}
			got := c.closed()
			if ver.v == packet.V5 {
				d := got[0].(*packet.Disconnect)
				if d.ReasonCode != packet.AdministrativeAction || d.Properties.ReasonString != "disabled" {
					t.Fatalf("got %+v", d)
				}
			} else if len(got) != 0 {
				t.Fatalf("3.1.1 got %v", got)
			}
			eventually(t, "ended", func() bool {
				for _, e := range h.log() {
					if e == "end "+id+" kicked" {
						return true
					}
				}
				return false
			})
			if srv.Kick(id, "again") {
				t.Fatal("kicked twice")
			}
		})
	}
}

// TestClose: Close with connected clients of both versions (one not
// reading) ends them, v5 with DISCONNECT 0x8B, and returns.
func TestClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{WriteTimeout: time.Second})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	addr := ln.Addr().String()
	c5, _ := mustConnect(t, addr, conn5("c5", true))
	mustConnect(t, addr, conn3("c3", true))
	slow, _ := mustConnect(t, addr, conn3("slow", true))
	slow.subscribe(1, nil, packet.Subscription{Filter: "flood"})
	for range 2000 {
		_ = srv.Publish(Message{Topic: "flood", Payload: make([]byte, 4096)})
	}
	dialRaw(t, addr, packet.V5) // no CONNECT yet
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got := c5.closed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.ServerShuttingDown {
		t.Fatalf("got %v", got)
	}
	if err := srv.Serve(ln); err == nil {
		t.Fatal("Serve after Close")
	}
}
