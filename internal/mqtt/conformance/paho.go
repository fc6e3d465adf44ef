package conformance

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Cases through the Paho 3.1.1 client, which nobody here wrote: a real
// client must get along with the broker.

func pahoCases() []testCase {
	return []testCase{
		{name: "v3/paho/qos1_roundtrip_retained", needs: needAll(needQoS(1), needRetain), run: pahoRoundtrip},
		{name: "v3/paho/persistent_session_offline_queue", needs: needQoS(1), run: pahoPersistent},
	}
}

// paho connects a Paho client; it is disconnected when the case ends.
func (c *ct) paho(id string, clean bool, more func(*mqtt.ClientOptions)) mqtt.Client {
	c.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://conformance").SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(30 * time.Second).
		SetProtocolVersion(4).SetOrderMatters(true).SetConnectTimeout(waitFor)
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if c.tg.Dial != nil {
			return c.tg.Dial(ctx)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", c.tg.Addr)
	})
	if c.tg.Credentials != nil {
		u, p := c.tg.Credentials(id)
		o.SetUsername(u).SetPassword(string(p))
	}
	if more != nil {
		more(o)
	}
	cl := mqtt.NewClient(o)
	if tok := cl.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		c.Fatalf("paho connect %q: %v", id, tok.Error())
	}
	c.Cleanup(func() { cl.Disconnect(100) })
	return cl
}

func wait(c *ct, what string, tok mqtt.Token) {
	c.Helper()
	if !tok.WaitTimeout(waitFor) {
		c.Fatalf("paho %s: no answer within %v", what, waitFor)
	}
	if err := tok.Error(); err != nil {
		c.Fatalf("paho %s: %v", what, err)
	}
}

type pahoMsg struct {
	topic, payload string
	qos            byte
	retained, dup  bool
}

func collect(ch chan<- pahoMsg) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		ch <- pahoMsg{m.Topic(), string(m.Payload()), m.Qos(), m.Retained(), m.Duplicate()}
	}
}

func recvMsg(c *ct, ch <-chan pahoMsg) pahoMsg {
	c.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(waitFor):
		c.Fatal("paho: no message")
		return pahoMsg{}
	}
}

func pahoRoundtrip(c *ct) {
	topic := c.topic("p")
	c.Cleanup(func() { c.clearRetained(topic) })
	pub := c.paho(c.id("pub"), true, nil)
	wait(c, "publish", pub.Publish(topic, 1, true, "kept"))

	ch := make(chan pahoMsg, 10)
	sub := c.paho(c.id("sub"), true, nil)
	wait(c, "subscribe", sub.Subscribe(topic, 1, collect(ch)))
	if m := recvMsg(c, ch); m != (pahoMsg{topic, "kept", 1, true, false}) {
		c.Fatalf("retained message %+v", m)
	}
	wait(c, "publish", pub.Publish(topic, 1, false, "live"))
	if m := recvMsg(c, ch); m != (pahoMsg{topic, "live", 1, false, false}) {
		c.Fatalf("live message %+v", m)
	}
	wait(c, "unsubscribe", sub.Unsubscribe(topic))
}

func pahoPersistent(c *ct) {
	id := c.id("sub")
	c.Cleanup(func() { c.endSession(packet.V311, id) })
	topic := c.topic("p/#")
	ch := make(chan pahoMsg, 10)
	sub := c.paho(id, false, nil)
	wait(c, "subscribe", sub.Subscribe(topic, 1, collect(ch)))
	sub.Disconnect(100)

	pub := c.paho(c.id("pub"), true, nil)
	for i := 0; i < 6; i++ {
		wait(c, "publish", pub.Publish(c.topic(fmt.Sprintf("p/%d", i)), 1, false, fmt.Sprint(i)))
	}
	// The session's subscription delivers through the default handler.
	c.paho(id, false, func(o *mqtt.ClientOptions) { o.SetDefaultPublishHandler(collect(ch)) })
	for i := 0; i < 6; i++ {
		m := recvMsg(c, ch)
		if m.topic != c.topic(fmt.Sprintf("p/%d", i)) || m.payload != fmt.Sprint(i) || m.qos != 1 {
			c.Fatalf("queued message %d: %+v", i, m)
		}
	}
}
