package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Durable sessions (issue 13, item 4): persistent sessions (subscriptions,
// queued and in-flight messages) and retained messages survive a restart.
// These cases restart the broker, so they run one after another and never
// beside other cases on the same broker.

func durableCases() []testCase {
	return []testCase{
		{name: "v5/durable/queued_and_retained_survive_restart", needs: needQoS(2), run: durableQueued},
		{name: "v5/durable/inflight_redelivered_after_restart", needs: needQoS(1), run: durableInflight},
		{name: "v3/durable/queued_survives_restart", needs: needQoS(1), run: durableV3},
	}
}

// RunDurable runs the restart cases against the target, one at a time. Do
// not run it beside Run (or anything else) on the same broker: it restarts
// it. It skips when the target has no Restart.
func RunDurable(t *testing.T, tg Target) {
	if tg.Restart == nil {
		t.Skipf("%s: no Restart: durability is not checked", tg.Name)
	}
	runCases(t, tg, durableCases(), false)
}

// durableSub connects the subscriber of a restart case with a session of
// 300 s, created with Clean Start 0: Mosquitto 2.0.11 loses an MQTT 5
// session created with Clean Start 1 in a restart (its 3.1.1 sessions and
// those created with Clean Start 0 survive), and these cases check
// durability, not Clean Start.
func (c *ct) durableSub() (*client, *packet.Connack) {
	c.Helper()
	id := c.id("sub")
	c.Cleanup(func() { c.endSession(packet.V5, id) })
	return c.persistent("sub", false, 300)
}

func (c *ct) restart() {
	c.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.tg.Restart(ctx); err != nil {
		c.Fatalf("restart %s: %v", c.tg.Name, err)
	}
	c.Logf("restarted in %v", time.Since(start).Round(time.Millisecond))
}

func durableQueued(c *ct) {
	sub, _ := c.durableSub()
	q, kept := c.topic("q/#"), c.topic("kept")
	sub.sub(2, q)
	sub.bye()
	pub := c.v5("pub")
	c.Cleanup(func() { c.clearRetained(kept) })
	pub.publish(&packet.Publish{Topic: kept, QoS: 1, Retain: true, Payload: []byte("r")})
	for i := 0; i < 3; i++ {
		pub.pub(c.topic(fmt.Sprintf("q/%d", i)), 1+byte(i%2), fmt.Sprint(i)) // acknowledged
	}
	pub.bye()
	c.restart()

	sub, ack := c.persistent("sub", false, 300)
	if !ack.SessionPresent {
		c.Fatal("session lost in the restart")
	}
	for i := 0; i < 3; i++ {
		sub.want(c.topic(fmt.Sprintf("q/%d", i)), 1+byte(i%2), fmt.Sprint(i))
	}
	late := c.v5("late")
	late.sub(1, kept)
	if p := late.want(kept, 1, "r"); !p.Retain {
		c.Error("retained message delivered on subscribe with RETAIN 0")
	}
}

func durableInflight(c *ct) {
	sub, _ := c.durableSub()
	topic := c.topic("f")
	sub.sub(1, topic)
	c.v5("pub").pub(topic, 1, "unacked")
	first := sub.nextRaw() // never acknowledged
	sub.nc.Close()
	c.restart()

	sub, ack := c.persistent("sub", false, 300)
	if !ack.SessionPresent {
		c.Fatal("session lost in the restart")
	}
	p := sub.want(topic, 1, "unacked")
	if !p.Dup || p.PacketID != first.PacketID {
		c.Fatalf("redelivery dup %v id %d, want dup and id %d", p.Dup, p.PacketID, first.PacketID)
	}
}

func durableV3(c *ct) {
	id := c.id("sub")
	c.Cleanup(func() { c.endSession(packet.V311, id) })
	connect := &packet.Connect{Version: packet.V311, KeepAlive: 30, ClientID: id}
	sub := c.connectOK(connect)
	topic := c.topic("q")
	sub.sub(1, topic)
	sub.bye()
	c.v3("pub").pub(topic, 1, "kept")
	c.restart()

	sub, ack := c.connect(connect)
	if ack.ReasonCode != 0 || !ack.SessionPresent {
		c.Fatalf("CONNACK %#x present %v after the restart", byte(ack.ReasonCode), ack.SessionPresent)
	}
	sub.want(topic, 1, "kept")
}
