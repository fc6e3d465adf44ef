package hostile_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
)

// tenant is one account of the fixture: keys of every role, a direct
// product with devices devA and devB, and a gateway product with gateway
// gw01 and a sub-device product with sub01.
type tenant struct {
	AccountID                 string
	Admin, Operator, Readonly string // API key tokens ({id}.{secret})
	Direct, Gateway, Sub      apptest.Product
	DevA, DevB, GW, Sub1      apptest.Device
}

// world is the fixture: one server, two tenants whose devices share names.
type world struct {
	S   *apptest.Server
	T1  tenant // the server's first account
	T2  tenant // a second account
	seq atomic.Int64
	tb  testing.TB
}

// newWorld starts a server and fills both accounts.
func newWorld(t *testing.T, opts ...apptest.Option) *world {
	t.Helper()
	s := apptest.Start(t, opts...)
	w := &world{S: s, tb: t}
	w.T1 = w.fill(s.AdminKey)
	var created struct {
		Token   string `json:"token"`
		Account struct {
			ID string `json:"id"`
		} `json:"account"`
	}
	s.Admin("POST", "/v1/accounts", map[string]any{"name": "tenant-two"}, 201).JSON(t, &created)
	if created.Token == "" {
		t.Fatal("account creation returned no admin token")
	}
	w.T2 = w.fill(created.Token)
	if w.T1.AccountID == "" || w.T2.AccountID == "" || w.T1.AccountID == w.T2.AccountID {
		t.Fatalf("accounts %q and %q: want two distinct ids", w.T1.AccountID, w.T2.AccountID)
	}
	return w
}

// do sends an API request with token and fails the test unless the status is want.
func (w *world) do(token, method, path string, body any, want int) apptest.Response {
	w.tb.Helper()
	r := w.S.Do(token, method, path, body)
	if r.Status != want {
		w.tb.Fatalf("%s %s = %d %s, want %d", method, path, r.Status, r.Body, want)
	}
	return r
}

func (w *world) fill(admin string) tenant {
	w.tb.Helper()
	t := tenant{Admin: admin}
	var self struct {
		ID string `json:"id"`
	}
	w.do(admin, "GET", "/v1/accounts/self", nil, 200).JSON(w.tb, &self)
	t.AccountID = self.ID
	for _, k := range []struct {
		role string
		dst  *string
	}{{"operator", &t.Operator}, {"readonly", &t.Readonly}} {
		var kc struct {
			Token string `json:"token"`
		}
		w.do(admin, "POST", "/v1/apikeys", map[string]any{"name": k.role, "role": k.role}, 201).JSON(w.tb, &kc)
		if kc.Token == "" {
			w.tb.Fatalf("creating a %s key returned no token", k.role)
		}
		*k.dst = kc.Token
	}
	product := func(name string, extra map[string]any) apptest.Product {
		// One catch-all topic class (both ways), as apptest's products:
		// the attacks use custom topics freely; the topic class attacks
		// make products of their own.
		body := map[string]any{"name": name, "topicClasses": []map[string]string{{"suffix": "#", "operation": "all"}}}
		for k, v := range extra {
			body[k] = v
		}
		var p apptest.Product
		w.do(admin, "POST", "/v1/products", body, 201).JSON(w.tb, &p)
		if p.ProductKey == "" {
			w.tb.Fatalf("product %s: no ProductKey", name)
		}
		return p
	}
	device := func(p apptest.Product, dn string) apptest.Device {
		var d apptest.Device
		w.do(admin, "POST", "/v1/products/"+p.ProductKey+"/devices", map[string]any{"deviceName": dn}, 201).JSON(w.tb, &d)
		if d.DeviceSecret == "" || d.DeviceName != dn {
			w.tb.Fatalf("device %s: got %+v", dn, d)
		}
		return d
	}
	t.Direct = product("direct", nil)
	t.Gateway = product("gateways", map[string]any{"nodeType": "gateway"})
	t.Sub = product("sub-devices", map[string]any{"nodeType": "subdevice"})
	t.DevA, t.DevB = device(t.Direct, "devA"), device(t.Direct, "devB")
	t.GW, t.Sub1 = device(t.Gateway, "gw01"), device(t.Sub, "sub01")
	return t
}

// sign computes the Alibaba CONNECT password independently of corral's code.
func sign(secret, clientID, dn, pk, ts string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("clientId" + clientID + "deviceName" + dn + "productKey" + pk + "timestamp" + ts))
	return hex.EncodeToString(m.Sum(nil))
}

// deviceOptions are the paho options of a device connecting with its triple.
func (w *world) deviceOptions(d apptest.Device) *paho.ClientOptions {
	id := d.ProductKey + "." + d.DeviceName
	ts := "2524608000000"
	return paho.NewClientOptions().AddBroker("tcp://" + w.S.App.Broker().Addr("tcp")).
		SetClientID(id + "|securemode=3,signmethod=hmacsha256,timestamp=" + ts + "|").
		SetUsername(d.DeviceName + "&" + d.ProductKey).SetPassword(sign(d.DeviceSecret, id, d.DeviceName, d.ProductKey, ts)).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false)
}

// appOptions are the paho options of an application connecting with an API key token.
func (w *world) appOptions(token string) *paho.ClientOptions {
	kid, secret, _ := strings.Cut(token, ".")
	return paho.NewClientOptions().AddBroker("tcp://" + w.S.App.Broker().Addr("tcp")).
		SetClientID(fmt.Sprintf("app-%d", w.seq.Add(1))).SetUsername(kid).SetPassword(secret).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false)
}

// connect connects a client and fails the test unless the CONNECT is
// accepted within 5 s; the client disconnects when the test ends.
func connect(t testing.TB, o *paho.ClientOptions) paho.Client {
	t.Helper()
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("CONNECT: no CONNACK within 5 s")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("CONNECT refused: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// device connects a device with its triple.
func (w *world) device(t testing.TB, d apptest.Device) paho.Client {
	t.Helper()
	return connect(t, w.deviceOptions(d))
}

// app connects an application with an API key token.
func (w *world) app(t testing.TB, token string) paho.Client {
	t.Helper()
	return connect(t, w.appOptions(token))
}

// inbox collects messages delivered to a client.
type inbox struct{ ch chan paho.Message }

func newInbox() *inbox { return &inbox{ch: make(chan paho.Message, 1000)} }

func (i *inbox) handler(_ paho.Client, m paho.Message) { i.ch <- m }

// next waits up to 5 s for a message and fails the test if none comes.
func (i *inbox) next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case m := <-i.ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
		return nil
	}
}

// until reads messages until one arrives on topic (failing after 5 s) and
// returns the ones before it: used as a fence, so that "nothing else
// arrived" is checked against a message known to come after, not a sleep.
func (i *inbox) until(t testing.TB, topic string) []paho.Message {
	t.Helper()
	var before []paho.Message
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-i.ch:
			if m.Topic() == topic {
				return before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("fence message on %s never arrived (got %d others)", topic, len(before))
			return nil
		}
	}
}

// subscribe subscribes c to filter at QoS 1 and returns the SUBACK code.
func subscribe(t testing.TB, c paho.Client, filter string, in *inbox) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, in.handler)
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatalf("SUBSCRIBE %s: no SUBACK within 5 s", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("SUBSCRIBE %s: %v", filter, err)
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// mustSubscribe subscribes and fails the test if the broker refuses.
func mustSubscribe(t testing.TB, c paho.Client, filter string, in *inbox) {
	t.Helper()
	if code := subscribe(t, c, filter, in); code >= 0x80 {
		t.Fatalf("SUBSCRIBE %s refused: %#x", filter, code)
	}
}

// publish publishes at QoS 1 and waits for the PUBACK (which a 3.1.1
// broker also sends for a publish it drops).
func publish(t testing.TB, c paho.Client, topic string, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatalf("PUBLISH %s: no PUBACK within 5 s", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("PUBLISH %s: %v", topic, err)
	}
}
