// Package device is corral's Go device SDK: it connects a device to corral
// (or any Alibaba-compatible endpoint) with its triple (ProductKey,
// DeviceName, DeviceSecret), computing the CONNECT signature as the Alibaba
// Link SDKs do, and publishes, subscribes and reconnects, restoring its
// subscriptions after a reconnect.
package device

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/credential"
)

// Triple is a device's identity.
type Triple struct {
	ProductKey   string `json:"productKey"`
	DeviceName   string `json:"deviceName"`
	DeviceSecret string `json:"deviceSecret"`
}

// Credentials returns the MQTT clientId, username and password for a
// triple: clientId "{pk}.{dn}|securemode=…,signmethod=…,timestamp=…|",
// username "{dn}&{pk}", password the hex HMAC of the sign content.
// secureMode is "2" over TLS and "3" over TCP.
func Credentials(t Triple, signMethod, secureMode string, ts time.Time) (clientID, username, password string, err error) {
	return credentials(t, signMethod, secureMode, ts, nil)
}

// credentials is Credentials with extra clientId flags (e.g. "_ss=1"),
// which are not signed.
func credentials(t Triple, signMethod, secureMode string, ts time.Time, flags []string) (clientID, username, password string, err error) {
	if signMethod == "" {
		signMethod = "hmacsha256"
	}
	id := t.ProductKey + "." + t.DeviceName
	stamp := strconv.FormatInt(ts.UnixMilli(), 10)
	content := credential.MQTTSignContent(id, t.DeviceName, t.ProductKey, stamp)
	password, err = credential.Sign(signMethod, t.DeviceSecret, content)
	if err != nil {
		return "", "", "", err
	}
	clientID = id + "|securemode=" + secureMode + ",signmethod=" + signMethod + ",timestamp=" + stamp
	for _, f := range flags {
		clientID += "," + f
	}
	clientID += "|"
	return clientID, t.DeviceName + "&" + t.ProductKey, password, nil
}

// Options configure a Client.
type Options struct {
	// Broker is the server URL: tcp://host:1883, ssl://host:8883 or ws://host:8083/mqtt.
	Broker     string
	Triple     Triple
	SignMethod string      // hmacsha256 (default), hmacsha1 or hmacmd5
	TLS        *tls.Config // for ssl:// brokers
	KeepAlive  time.Duration
	// PersistentSession keeps subscriptions and queued QoS 1 messages on
	// the server across reconnects (MQTT clean session off). Off by
	// default, as in the Link SDKs: the client restores its subscriptions
	// itself.
	PersistentSession bool
	// Will, if set, is published by the server when the device vanishes.
	Will *Message
	// OnConnectionChange is told when the connection is up or down.
	OnConnectionChange func(up bool, err error)
	// AutoReconnect reconnects after a lost connection (default true).
	AutoReconnect *bool
	// ServerSubscribe asks the platform to subscribe the device's system
	// downlinks itself (clientId flag _ss=1), as stock Link SDK builds do:
	// the device sends no SUBSCRIBE for them and routes them to handlers
	// registered with Handle. Replies to Call arrive that way too.
	ServerSubscribe bool
	// Handlers route downlinks from the moment the session starts
	// (filter → handler, no SUBSCRIBE sent): with ServerSubscribe, what
	// the platform sends at once (a desired value set while the device
	// was away) reaches them. Handle adds more later.
	Handlers map[string]Handler
	// CallTimeout bounds one request made with Call (default 10 s).
	CallTimeout time.Duration
	Now         func() time.Time

	gateway bool // clientId flag gw=1: set by NewGateway
}

// Message is a published message.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Handler receives messages of a subscription.
type Handler func(Message)

// Client is a device's connection to corral.
type Client struct {
	o  Options
	mc paho.Client

	mu      sync.Mutex
	subs    map[string]sub
	pending map[string]chan Reply // Call ids waiting for their reply
	replies map[string]bool       // reply topics routed to onReply
	ids     atomic.Int64
}

type sub struct {
	qos byte
	h   Handler
}

// ErrConnect wraps a refused or failed connection.
var ErrConnect = errors.New("device connect failed")

// Connect connects a device and returns once the server accepted it.
func Connect(ctx context.Context, o Options) (*Client, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 60 * time.Second
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 10 * time.Second
	}
	secure := "3"
	if o.TLS != nil {
		secure = "2"
	}
	c := &Client{o: o, subs: map[string]sub{}, pending: map[string]chan Reply{}, replies: map[string]bool{}}
	c.ids.Store(o.Now().UnixMilli())
	po := paho.NewClientOptions().AddBroker(o.Broker).SetKeepAlive(o.KeepAlive).SetCleanSession(!o.PersistentSession).
		SetConnectRetry(false).SetOrderMatters(false).SetConnectTimeout(10 * time.Second).SetMaxReconnectInterval(10 * time.Second)
	po.SetAutoReconnect(o.AutoReconnect == nil || *o.AutoReconnect)
	if o.TLS != nil {
		po.SetTLSConfig(o.TLS)
	}
	// The clientId carries the signed timestamp, and paho keeps one
	// clientId for the life of the client, so the credentials are computed
	// once (the Link SDKs sign a fixed timestamp for the same reason).
	var flags []string
	if o.ServerSubscribe {
		flags = append(flags, "_ss=1")
	}
	if o.gateway {
		flags = append(flags, "gw=1")
	}
	cid, user, pass, err := credentials(o.Triple, o.SignMethod, secure, o.Now(), flags)
	if err != nil {
		return nil, err
	}
	po.SetClientID(cid).SetUsername(user).SetPassword(pass)
	if o.Will != nil {
		po.SetBinaryWill(o.Will.Topic, o.Will.Payload, o.Will.QoS, o.Will.Retain)
	}
	first := true
	po.SetOnConnectHandler(func(paho.Client) {
		c.mu.Lock()
		again := !first
		first = false
		c.mu.Unlock()
		if again {
			c.resubscribe()
		}
		if o.OnConnectionChange != nil {
			o.OnConnectionChange(true, nil)
		}
	})
	po.SetConnectionLostHandler(func(_ paho.Client, err error) {
		if o.OnConnectionChange != nil {
			o.OnConnectionChange(false, err)
		}
	})
	c.mc = paho.NewClient(po)
	for f, h := range o.Handlers {
		c.Handle(f, h)
	}
	if err := wait(ctx, c.mc.Connect()); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrConnect, o.Triple.ProductKey, o.Triple.DeviceName, err)
	}
	return c, nil
}

func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish sends a message; with QoS 1 it returns once the server acknowledged it.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	return wait(ctx, c.mc.Publish(topic, qos, false, payload))
}

// Subscribe subscribes to a filter; the subscription is restored after reconnects.
func (c *Client) Subscribe(ctx context.Context, filter string, qos byte, h Handler) error {
	c.mu.Lock()
	c.subs[filter] = sub{qos, h}
	c.mu.Unlock()
	t := c.mc.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) {
		h(Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retain: m.Retained()})
	})
	if err := wait(ctx, t); err != nil {
		return fmt.Errorf("subscribing to %s: %w", filter, err)
	}
	st, ok := t.(*paho.SubscribeToken)
	if ok {
		for _, code := range st.Result() {
			if code >= 0x80 {
				c.mu.Lock()
				delete(c.subs, filter)
				c.mu.Unlock()
				return fmt.Errorf("subscribing to %s: %w", filter, ErrSubscriptionRefused)
			}
		}
	}
	return nil
}

// Handle routes messages on topics matching filter to h without sending a
// SUBSCRIBE: for the downlinks the platform subscribed the session to
// itself (ServerSubscribe). Handlers live as long as the client.
func (c *Client) Handle(filter string, h Handler) {
	c.mc.AddRoute(filter, func(_ paho.Client, m paho.Message) {
		h(Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retain: m.Retained()})
	})
}

// ErrSubscriptionRefused means the server answered SUBACK with a failure.
var ErrSubscriptionRefused = errors.New("subscription refused by the server")

// resubscribe restores the subscriptions after a reconnect and waits for
// their SUBACKs, so OnConnectionChange(true) sees them in place.
func (c *Client) resubscribe() {
	c.mu.Lock()
	var toks []paho.Token
	for f, s := range c.subs {
		h := s.h
		toks = append(toks, c.mc.Subscribe(f, s.qos, func(_ paho.Client, m paho.Message) {
			h(Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retain: m.Retained()})
		}))
	}
	c.mu.Unlock()
	for _, t := range toks {
		t.WaitTimeout(10 * time.Second)
	}
}

// ProductKey is the device's ProductKey.
func (c *Client) ProductKey() string { return c.o.Triple.ProductKey }

// Connected reports whether the connection is up.
func (c *Client) Connected() bool { return c.mc.IsConnectionOpen() }

// Close disconnects cleanly (no last will is sent).
func (c *Client) Close() { c.mc.Disconnect(250) }
