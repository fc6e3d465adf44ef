package engine

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func pahoClient(t *testing.T, addr, id string, clean bool) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetKeepAlive(30 * time.Second).SetConnectTimeout(wait)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// TestPaho: the Paho 3.1.1 client publishes and receives at each QoS, and
// gets QoS 1 and 2 messages queued while its persistent session was
// offline.
func TestPaho(t *testing.T) {
	srv, addr := start(t, Options{})
	got := make(chan string, 16)
	handler := func(_ mqtt.Client, m mqtt.Message) { got <- fmt.Sprintf("%s %d %s", m.Topic(), m.Qos(), m.Payload()) }
	sub := pahoClient(t, addr, "paho-sub", false)
	if tok := sub.Subscribe("paho/#", 2, handler); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := pahoClient(t, addr, "paho-pub", true)
	for q := byte(0); q <= 2; q++ {
		if tok := pub.Publish("paho/live", q, false, "x"); !tok.WaitTimeout(wait) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		want := fmt.Sprintf("paho/live %d x", q)
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
		case <-time.After(wait):
			t.Fatalf("%q not delivered", want)
		}
	}
	// Let the QoS 2 exchange finish: a PUBLISH not yet PUBREC'd would be
	// resent with DUP, and a new Paho client keeps no state to drop it.
	eventually(t, "live exchange finished", func() bool {
		in, _ := srv.SessionByID("paho-sub")
		return in.Inflight == 0
	})
	sub.Disconnect(100)
	for q := byte(1); q <= 2; q++ {
		if tok := pub.Publish("paho/queued", q, false, "q"); !tok.WaitTimeout(wait) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("paho-sub").SetCleanSession(false).
		SetAutoReconnect(false).SetDefaultPublishHandler(handler)
	again := mqtt.NewClient(o)
	if tok := again.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("reconnect: %v", tok.Error())
	}
	defer again.Disconnect(100)
	for q := byte(1); q <= 2; q++ {
		want := fmt.Sprintf("paho/queued %d q", q)
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
		case <-time.After(wait):
			t.Fatalf("%q not delivered after reconnect", want)
		}
	}
}
