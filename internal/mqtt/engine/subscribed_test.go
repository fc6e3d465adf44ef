package engine

import (
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// TestSubscribed: Subscribed follows clients' subscriptions (shared ones
// included) and in-process handlers, and says true for a router that
// cannot tell.
func TestSubscribed(t *testing.T) {
	srv, addr := start(t, Options{})
	if srv.Subscribed("s/x") {
		t.Fatal("subscribed before any subscription")
	}
	unsub, err := srv.Subscribe("s/+", func(*Message) {})
	if err != nil {
		t.Fatal(err)
	}
	if !srv.Subscribed("s/x") || srv.Subscribed("t/x") {
		t.Fatal("handler's subscription not seen, or seen on another topic")
	}
	unsub()
	if srv.Subscribed("s/x") {
		t.Fatal("subscribed after the handler left")
	}
	c, _ := mustConnect(t, addr, conn5("sub", true))
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "$share/g/s/#"}}})
	c.recv()
	if !srv.Subscribed("s/x/y") {
		t.Fatal("shared subscription not seen")
	}
	c.send(&packet.Disconnect{})
	deadline := time.Now().Add(wait)
	for srv.Subscribed("s/x/y") {
		if time.Now().After(deadline) {
			t.Fatal("subscribed after the clean session ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	blind := New(Options{Router: blindRouter{NewLocalRouter()}}) // never served: Subscribed needs no listener
	if !blind.Subscribed("s/x") {
		t.Fatal("a router without Any must be taken as subscribed")
	}
}

// blindRouter hides LocalRouter's Any.
type blindRouter struct{ r *LocalRouter }

func (b blindRouter) Subscribe(c, f string, o subs.Options) bool { return b.r.Subscribe(c, f, o) }
func (b blindRouter) Unsubscribe(c, f string) bool               { return b.r.Unsubscribe(c, f) }
func (b blindRouter) RemoveClient(c string)                      { b.r.RemoveClient(c) }
func (b blindRouter) Route(m *Message) int                       { return b.r.Route(m) }
func (b blindRouter) Bind(d Deliverer)                           { b.r.Bind(d) }
