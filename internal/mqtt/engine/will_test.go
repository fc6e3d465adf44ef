package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

func withWill(cp *packet.Connect, topic string, delay uint32) *packet.Connect {
	cp.Will = &packet.Will{Topic: topic, Payload: []byte("gone"), QoS: 1}
	cp.Will.Properties.WillDelay = delay
	return cp
}

// watcher subscribes to topic and returns the connection.
func watcher(t *testing.T, addr, topic string) *client {
	t.Helper()
	w, _ := mustConnect(t, addr, conn5("w-"+t.Name(), true))
	w.subscribe(1, nil, packet.Subscription{Filter: topic, QoS: 1})
	return w
}

// TestWill: the will goes out when the connection closes without
// DISCONNECT, on DISCONNECT 0x04, on keep alive timeout and on a protocol
// error; not on a normal DISCONNECT.
func TestWill(t *testing.T) {
	_, addr := start(t, Options{})
	cases := []struct {
		name string
		v    packet.Version
		end  func(c *client)
		will bool
	}{
		{"v311 close", packet.V311, func(c *client) { c.c.Close() }, true},
		{"v5 close", packet.V5, func(c *client) { c.c.Close() }, true},
		{"v311 disconnect", packet.V311, func(c *client) { c.send(&packet.Disconnect{}) }, false},
		{"v5 disconnect", packet.V5, func(c *client) { c.send(&packet.Disconnect{}) }, false},
		{"v5 disconnect with will", packet.V5, func(c *client) {
			c.send(&packet.Disconnect{ReasonCode: packet.DisconnectWithWill})
		}, true},
		{"v311 protocol error", packet.V311, func(c *client) { c.send(&packet.Connack{}) }, true},
		{"v5 protocol error", packet.V5, func(c *client) { c.send(&packet.Connack{}) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic := "will/" + t.Name()
			w := watcher(t, addr, topic)
			c, _ := mustConnect(t, addr, withWill(connOf(tc.v, "c-"+t.Name(), true), topic, 0))
			tc.end(c)
			if tc.will {
				if p := w.recvPublish(); p.Topic != topic || string(p.Payload) != "gone" {
					t.Fatalf("will %+v", p)
				}
			} else {
				w.silent(300 * time.Millisecond)
			}
		})
	}
}

// TestKeepAlive: nothing received within 1.5 × keep alive closes the
// connection (v5: DISCONNECT 0x8D) and publishes the will.
func TestKeepAlive(t *testing.T) {
	_, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			topic := "ka/" + ver.name
			w := watcher(t, addr, topic)
			cp := withWill(connOf(ver.v, "ka-"+ver.name, true), topic, 0)
			cp.KeepAlive = 1
			c, _ := mustConnect(t, addr, cp)
			begin := time.Now()
			got := c.closed()
			if d := time.Since(begin); d < 1400*time.Millisecond || d > 3500*time.Millisecond {
				t.Fatalf("closed after %v, want 1.5 s", d)
			}
			if ver.v == packet.V5 {
				if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.KeepAliveTimeout {
					t.Fatalf("got %v", got)
				}
			} else if len(got) != 0 {
				t.Fatalf("3.1.1 got %v", got)
			}
			w.recvPublish()
		})
	}
}

// TestMaxKeepAlive: an MQTT 5 client asking for more than the maximum, or
// for none, is told Server Keep Alive and held to it; one asking for less
// keeps its own; a 3.1.1 client asking for more is refused with 0x02.
func TestMaxKeepAlive(t *testing.T) {
	_, addr := start(t, Options{MaxKeepAlive: 1})
	for _, ask := range []uint16{600, 0} {
		cp := conn5(fmt.Sprint("ska", ask), true)
		cp.KeepAlive = ask
		c, ack := mustConnect(t, addr, cp)
		if ka := ack.Properties.ServerKeepAlive; ka == nil || *ka != 1 {
			t.Fatalf("asked %d: server keep alive %v", ask, ka)
		}
		c.closed()
	}
	cp := conn5("ska-low", true)
	cp.KeepAlive = 1
	if _, ack := mustConnect(t, addr, cp); ack.Properties.ServerKeepAlive != nil {
		t.Fatal("server keep alive sent to a client within the maximum")
	}
	if _, ack := connect(t, addr, conn3("ska3", true)); ack.ReasonCode != 2 {
		t.Fatalf("3.1.1 over the maximum: CONNACK %d, want 2", ack.ReasonCode)
	}
}

// TestWillDelay: a will with a delay is not published when the client
// resumes its session in time, and is published after the delay otherwise.
func TestWillDelay(t *testing.T) {
	_, addr := start(t, Options{})
	topic := "wd"
	w := watcher(t, addr, topic)
	cp := withWill(persistent(packet.V5, "wd"), topic, 1)
	c, _ := mustConnect(t, addr, cp)
	c.c.Close()
	time.Sleep(200 * time.Millisecond)
	c2, _ := mustConnect(t, addr, withWill(persistent(packet.V5, "wd"), topic, 1))
	w.silent(1500 * time.Millisecond)
	begin := time.Now()
	c2.c.Close()
	w.recvPublish()
	if d := time.Since(begin); d < 800*time.Millisecond {
		t.Fatalf("will after %v, want the 1 s delay", d)
	}
}

// TestTakeoverWill: the displaced connection's will is published on a
// takeover (delay 0), in both versions.
func TestTakeoverWill(t *testing.T) {
	_, addr := start(t, Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			topic := "tw/" + ver.name
			w := watcher(t, addr, topic)
			mustConnect(t, addr, withWill(connOf(ver.v, "tw-"+ver.name, false), topic, 0))
			mustConnect(t, addr, connOf(ver.v, "tw-"+ver.name, false))
			w.recvPublish()
		})
	}
}

// TestWillRights: a will is held to MayPublish.
func TestWillRights(t *testing.T) {
	_, addr := start(t, Options{Hooks: &hooks{denyPublish: "nowill"}})
	w := watcher(t, addr, "nowill")
	c, _ := mustConnect(t, addr, withWill(conn3("nw", true), "nowill", 0))
	c.c.Close()
	w.silent(300 * time.Millisecond)
}

// TestTakeoverWillDelay: on a takeover, a will with a delay is dropped when
// the new connection resumes the session, and published when it starts a
// clean one (the old session ends).
func TestTakeoverWillDelay(t *testing.T) {
	_, addr := start(t, Options{})
	for _, tc := range []struct {
		name  string
		clean bool
		will  bool
	}{{"resume", false, false}, {"clean start", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "twd/" + t.Name()
			w := watcher(t, addr, topic)
			id := "twd-" + t.Name()
			mustConnect(t, addr, withWill(persistent(packet.V5, id), topic, 60))
			next := persistent(packet.V5, id)
			next.CleanStart = tc.clean
			mustConnect(t, addr, next)
			if tc.will {
				w.recvPublish()
			} else {
				w.silent(300 * time.Millisecond)
			}
		})
	}
}

// TestWillDelaySessionEnd: a will whose delay is longer than the session
// expiry goes out when the session ends.
func TestWillDelaySessionEnd(t *testing.T) {
	_, addr := start(t, Options{})
	w := watcher(t, addr, "wse")
	cp := withWill(conn5("wse", false), "wse", 60)
	one := uint32(1)
	cp.Properties.SessionExpiry = &one
	c, _ := mustConnect(t, addr, cp)
	begin := time.Now()
	c.c.Close()
	w.recvPublish()
	if d := time.Since(begin); d < 800*time.Millisecond || d > 4*time.Second {
		t.Fatalf("will after %v, want at the 1 s session expiry", d)
	}
}
