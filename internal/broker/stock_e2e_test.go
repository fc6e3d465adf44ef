package broker_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// Stock Link SDK devices (issue 10): they put flags in the clientId
// (_ss=1: corral subscribes their downlinks; gw=1: and their logged-in
// sub-devices'; ext=3: v4 RRPC) and send no SUBSCRIBE for system topics.
// Negative checks wait for a marker sent after what must not arrive.

// stockModel is a minimal thing model: a settable property and a service.
const stockModel = `{"properties":[{"identifier":"TargetTemp","name":"Target","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}],
"events":[],"services":[{"identifier":"Reboot","name":"Reboot","callType":"async","method":"thing.service.Reboot","inputData":[],"outputData":[]}]}`

// stock is a raw paho device connected like a stock SDK: every message
// it is delivered, subscribed or not, lands in in.
type stock struct {
	c   paho.Client
	in  *inbox
	dev string // {pk}/{dn}
}

// connectStock connects d with the clientId flags given (e.g.
// "_ss=1,gw=0,ext=0") and sends no SUBSCRIBE.
func connectStock(t *testing.T, s *apptest.Server, d apptest.Device, flags string, clean bool) *stock {
	t.Helper()
	id := d.ProductKey + "." + d.DeviceName
	ts := fmt.Sprint(time.Now().UnixMilli())
	st := &stock{in: newInbox(), dev: d.ProductKey + "/" + d.DeviceName}
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).
		SetClientID(id + "|securemode=3,signmethod=hmacsha256,timestamp=" + ts + "," + flags + "|").
		SetUsername(d.DeviceName + "&" + d.ProductKey).SetPassword(sign(d.DeviceSecret, id, d.DeviceName, d.ProductKey, ts)).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).SetCleanSession(clean).
		SetDefaultPublishHandler(st.in.handler)
	st.c = paho.NewClient(o)
	if err := apptest.ConnectMQTT(t, st.c); err != nil {
		t.Fatalf("stock CONNECT refused: %v", err)
	}
	t.Cleanup(func() { st.c.Disconnect(50) })
	return st
}

func (st *stock) pub(t *testing.T, topic, payload string) {
	t.Helper()
	if tok := st.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// waitFor waits for a message on topic and returns it with those that
// came before it.
func (i *inbox) waitFor(t *testing.T, topic string) (paho.Message, []paho.Message) {
	t.Helper()
	var before []paho.Message
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-i.ch:
			if m.Topic() == topic {
				return m, before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("nothing on %s (got %d others)", topic, len(before))
			return nil, nil
		}
	}
}

// noneOn fails for any message whose topic contains part.
func noneOn(t *testing.T, what string, msgs []paho.Message, bad func(topic string) bool) {
	t.Helper()
	for _, m := range msgs {
		if bad(m.Topic()) {
			t.Errorf("%s: got %s %s", what, m.Topic(), m.Payload())
		}
	}
}

func stockProduct(t *testing.T, s *apptest.Server, name string, extra map[string]any) apptest.Product {
	t.Helper()
	p := s.CreateProduct(name, extra)
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/tsl", stockModel, 200)
	return p
}

// TestStockDeviceServerSideSubscription: a device with _ss=1 that sends no
// SUBSCRIBE receives a property set, a service call and the reply to its
// property post; it never gets its own uplinks back, even subscribed to
// thing/service/#; ext=3 alone adds the v4 RRPC topics.
func TestStockDeviceServerSideSubscription(t *testing.T) {
	s := apptest.Start(t)
	p := stockProduct(t, s, "stock", nil)
	d := s.CreateDevice(p.ProductKey, "stock-1")
	st := connectStock(t, s, d, "_v=sdk-c-3.2.0,_ss=1,gw=0,ext=0", true)
	sys := "/sys/" + st.dev + "/"
	base := "/v1/products/" + p.ProductKey + "/devices/stock-1"

	s.Admin("PUT", base+"/properties", map[string]any{"params": map[string]any{"TargetTemp": 21}}, 200)
	if m, _ := st.in.waitFor(t, sys+"thing/service/property/set"); !strings.Contains(string(m.Payload()), `"TargetTemp":21`) {
		t.Fatalf("property set: %s", m.Payload())
	}
	s.Admin("POST", base+"/services/Reboot", map[string]any{"params": map[string]any{}}, 200)
	st.in.waitFor(t, sys+"thing/service/Reboot")
	st.pub(t, sys+"thing/event/property/post", `{"id":"1","version":"1.0","params":{"TargetTemp":20}}`)
	if m, _ := st.in.waitFor(t, sys+"thing/event/property/post_reply"); !strings.Contains(string(m.Payload()), `"id":"1"`) {
		t.Fatalf("post reply: %s", m.Payload())
	}

	// Its own replies never come back, not even through an explicit
	// thing/service/# subscription (the loop one library fell into).
	if tok := st.c.Subscribe(sys+"thing/service/#", 0, st.in.handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	st.pub(t, sys+"thing/service/property/set_reply", `{"id":"1","code":200,"data":{}}`)
	st.pub(t, sys+"thing/service/Reboot_reply", `{"id":"2","code":200,"data":{}}`)
	st.pub(t, sys+"thing/event/property/post", `{"id":"fence","version":"1.0","params":{}}`)
	_, before := st.in.waitFor(t, sys+"thing/event/property/post_reply")
	noneOn(t, "own uplinks", before, func(topic string) bool { return strings.HasSuffix(topic, "_reply") })

	// ext=0: no v4 RRPC topics; ext=3: them too.
	ops := app(t, s, s.AdminKey, "ops")
	pubApp := func(topic, payload string) {
		t.Helper()
		if tok := ops.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	pubApp("/ext/rrpc/77/sys/"+st.dev+"/thing/service/Reboot", `{"id":"77"}`)
	pubApp(sys+"thing/service/property/set", `{"id":"marker"}`)
	_, before = st.in.waitFor(t, sys+"thing/service/property/set")
	noneOn(t, "ext=0 RRPC", before, func(topic string) bool { return strings.HasPrefix(topic, "/ext/rrpc/") })

	// An application of the account pushes OTA to the stock device.
	pubApp("/ota/device/upgrade/"+st.dev, `{"code":"1000","data":{}}`)
	st.in.waitFor(t, "/ota/device/upgrade/"+st.dev)

	d3 := s.CreateDevice(p.ProductKey, "stock-v4")
	v4 := connectStock(t, s, d3, "_ss=1,gw=0,ext=3", true)
	rrpc := "/ext/rrpc/78/sys/" + v4.dev + "/thing/service/Reboot"
	pubApp(rrpc, `{"id":"78"}`)
	v4.in.waitFor(t, rrpc)
	// Its answer on the same topic does not come back to it as a request.
	v4.pub(t, rrpc, `{"id":"78","code":200,"data":{}}`)
	pubApp("/sys/"+v4.dev+"/thing/service/property/set", `{"id":"marker"}`)
	_, before = v4.in.waitFor(t, "/sys/"+v4.dev+"/thing/service/property/set")
	noneOn(t, "own RRPC answer", before, func(topic string) bool { return topic == rrpc })
}

// TestStockDevicePersistentSession: a persistent stock session that
// reconnects holds the server-side subscriptions once (one delivery each).
func TestStockDevicePersistentSession(t *testing.T) {
	s := apptest.Start(t)
	p := stockProduct(t, s, "stock", nil)
	d := s.CreateDevice(p.ProductKey, "keep-1")
	first := connectStock(t, s, d, "_ss=1", false)
	first.c.Disconnect(50)
	st := connectStock(t, s, d, "_ss=1", false)
	set := "/sys/" + st.dev + "/thing/service/property/set"
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/devices/keep-1/properties", map[string]any{"params": map[string]any{"TargetTemp": 1}}, 200)
	st.in.waitFor(t, set)
	st.pub(t, "/sys/"+st.dev+"/thing/event/property/post", `{"id":"fence","params":{}}`)
	_, before := st.in.waitFor(t, "/sys/"+st.dev+"/thing/event/property/post_reply")
	noneOn(t, "duplicate delivery", before, func(topic string) bool { return topic == set })
}

// gwCall publishes a request of the gateway's and waits for its reply,
// which comes through the server-side subscription.
func gwCall(t *testing.T, g *stock, prefix, rest string, params any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"id": rest, "version": "1.0", "params": params})
	topic := prefix + g.dev + "/" + rest
	g.pub(t, topic, string(body))
	m, _ := g.in.waitFor(t, topic+"_reply")
	var r struct{ Code int }
	json.Unmarshal(m.Payload(), &r)
	if r.Code != 200 {
		t.Fatalf("%s: %s", rest, m.Payload())
	}
}

// subIdent is what a gateway sends for a sub-device in topo.add and login.
func subIdent(d apptest.Device) map[string]any {
	return mqtttest.SubDeviceParams(d.ProductKey, d.DeviceName, d.DeviceSecret)
}

// TestStockGatewaySubDevices: a stock gateway (_ss=1,gw=1) gets its
// sub-device's property set after combine.login and none after logout;
// a new connection taking its session over starts with no sub-device
// logged in, and the sub-device goes offline.
func TestStockGatewaySubDevices(t *testing.T) {
	s := apptest.Start(t)
	gp := s.CreateProduct("hub", map[string]any{"nodeType": "gateway"})
	sp := stockProduct(t, s, "sensor", map[string]any{"nodeType": "subdevice"})
	gwd := s.CreateDevice(gp.ProductKey, "hub-1")
	sub := s.CreateDevice(sp.ProductKey, "sensor-1")
	g := connectStock(t, s, gwd, "_ss=1,gw=1,ext=0", false)
	subDev := sub.ProductKey + "/" + sub.DeviceName
	subSet := "/sys/" + subDev + "/thing/service/property/set"
	gwSet := "/sys/" + g.dev + "/thing/service/property/set"
	props := "/v1/products/" + sp.ProductKey + "/devices/sensor-1/properties"
	ops := app(t, s, s.AdminKey, "ops")
	pubApp := func(topic string) {
		t.Helper()
		if tok := ops.Publish(topic, 1, false, `{"id":"x","params":{}}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// subNotDelivered: a sub-device downlink published before a marker
	// on the gateway's own topic does not reach c.
	subNotDelivered := func(c *stock, what string) {
		t.Helper()
		pubApp(subSet)
		pubApp(gwSet)
		_, before := c.in.waitFor(t, gwSet)
		noneOn(t, what, before, func(topic string) bool { return strings.Contains(topic, subDev) })
	}

	gwCall(t, g, "/sys/", "thing/topo/add", []any{subIdent(sub)})
	subNotDelivered(g, "before login")
	gwCall(t, g, "/ext/session/", "combine/login", subIdent(sub))
	s.Admin("PUT", props, map[string]any{"params": map[string]any{"TargetTemp": 5}}, 200)
	g.in.waitFor(t, subSet)
	gwCall(t, g, "/ext/session/", "combine/logout", map[string]any{"productKey": sub.ProductKey, "deviceName": sub.DeviceName})
	subNotDelivered(g, "after logout")

	// Takeover: the new connection of the same client id inherits the
	// persistent session's subscriptions, but not the login.
	gwCall(t, g, "/ext/session/", "combine/login", subIdent(sub))
	pubApp(subSet)
	g.in.waitFor(t, subSet)
	presence := newInbox()
	subscribe(t, ops, "$aws/events/presence/disconnected/"+sub.ProductKey+"."+sub.DeviceName, presence)
	g2 := connectStock(t, s, gwd, "_ss=1,gw=1,ext=0", false)
	if m := presence.next(t, 5*time.Second); !strings.Contains(string(m.Payload()), `"disconnectReason":"GATEWAY_DISCONNECTED"`) {
		t.Errorf("sub-device presence at takeover: %s", m.Payload())
	}
	if r := s.Do(s.AdminKey, "PUT", props, map[string]any{"params": map[string]any{"TargetTemp": 6}}); r.Status == 200 {
		t.Errorf("property set on a sub-device of a taken-over gateway session: %d %s", r.Status, r.Body)
	}
	subNotDelivered(g2, "after takeover")
	// Logged in again through the new session, it is reachable again.
	gwCall(t, g2, "/ext/session/", "combine/login", subIdent(sub))
	s.Admin("PUT", props, map[string]any{"params": map[string]any{"TargetTemp": 7}}, 200)
	g2.in.waitFor(t, subSet)
}

// TestDirectionsAtDelivery: for every family, a device subscribed with
// wildcards gets none of its own uplinks back, may not subscribe to an
// uplink topic by name, and may not publish a downlink (an application
// watching sees none).
func TestDirectionsAtDelivery(t *testing.T) {
	s := apptest.Start(t)
	p := stockProduct(t, s, "dirs", nil)
	d := s.CreateDevice(p.ProductKey, "dir-1")
	st := connectStock(t, s, d, "_ss=0", true)
	dev := st.dev
	for _, f := range []string{"/sys/+/+/#", "/ext/ntp/+/+/#", "/ext/session/+/+/#", "/shadow/update/+/+", "/shadow/get/+/+",
		"/ota/device/inform/+/+", "/ota/device/progress/+/+", "/ota/device/request/+/+", "/ota/device/upgrade/+/+", "/ext/error/+/+"} {
		subscribe(t, st.c, f, st.in)
	}
	for _, f := range []string{"/shadow/update/" + dev, "/sys/" + dev + "/thing/event/property/post", "/ota/device/inform/" + dev} {
		tok := st.c.Subscribe(f, 0, st.in.handler)
		if !tok.WaitTimeout(5*time.Second) || tok.(*paho.SubscribeToken).Result()[f] < 0x80 {
			t.Errorf("subscribed to the uplink %s", f)
		}
	}
	watcher := newInbox()
	ops := app(t, s, s.AdminKey, "watcher")
	subscribe(t, ops, "/sys/"+p.ProductKey+"/+/thing/service/#", watcher)
	subscribe(t, ops, "/ota/device/upgrade/"+p.ProductKey+"/+", watcher)

	uplinks := []string{
		"/sys/" + dev + "/thing/event/property/post", "/sys/" + dev + "/thing/deviceinfo/update",
		"/sys/" + dev + "/thing/service/property/set_reply", "/sys/" + dev + "/thing/service/Reboot_reply",
		"/sys/" + dev + "/rrpc/response/9", "/sys/" + dev + "/thing/topo/change_reply",
		"/sys/" + dev + "/thing/ota/firmware/get", "/ext/session/" + dev + "/combine/login",
		"/ext/ntp/" + dev + "/request", "/shadow/update/" + dev,
		"/ota/device/inform/" + dev, "/ota/device/progress/" + dev, "/ota/device/request/" + dev,
	}
	sent := map[string]bool{}
	for _, u := range uplinks {
		st.pub(t, u, `{"id":"u","params":{}}`)
		sent[u] = true
	}
	// Downlinks and corral's answers are not the device's to publish.
	for _, dl := range []string{"/sys/" + dev + "/thing/service/property/set", "/ota/device/upgrade/" + dev,
		"/sys/" + dev + "/thing/event/property/post_reply", "/ext/error/" + dev, "/shadow/get/" + dev, "/ext/ntp/" + dev + "/response"} {
		st.pub(t, dl, `{"id":"forged"}`)
	}
	// Fences: the device's next uplink for the watcher; an application's
	// downlink for the device.
	st.pub(t, "/sys/"+dev+"/thing/service/property/set_reply", `{"id":"fence"}`)
	for {
		m := watcher.next(t, 5*time.Second)
		if strings.Contains(string(m.Payload()), "fence") {
			break
		}
		if strings.Contains(string(m.Payload()), "forged") {
			t.Errorf("application got the device's forged downlink %s", m.Topic())
		}
	}
	if tok := ops.Publish("/sys/"+dev+"/thing/service/property/set", 1, false, `{"id":"marker"}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	_, before := st.in.waitFor(t, "/sys/"+dev+"/thing/service/property/set")
	noneOn(t, "own uplinks back", before, func(topic string) bool { return sent[topic] })
	for _, m := range before {
		if strings.Contains(string(m.Payload()), "forged") {
			t.Errorf("the device's forged downlink was delivered: %s", m.Topic())
		}
	}
}

// TestUsesExtRRPC: the sync-service form follows the session's ext flag;
// a sub-device's follows the gateway it is logged in through.
func TestUsesExtRRPC(t *testing.T) {
	s := apptest.Start(t)
	gp := s.CreateProduct("hub", map[string]any{"nodeType": "gateway"})
	sp := stockProduct(t, s, "sensor", map[string]any{"nodeType": "subdevice"})
	dp := stockProduct(t, s, "plain", nil)
	b := s.App.Broker()
	for _, tt := range []struct {
		name string
		ext  bool
	}{{"ext0", false}, {"ext3", true}} {
		t.Run(tt.name, func(t *testing.T) {
			flag := map[bool]string{false: "ext=0", true: "ext=3"}[tt.ext]
			direct := s.CreateDevice(dp.ProductKey, "dev-"+tt.name)
			if b.UsesExtRRPC(direct.ProductKey, direct.DeviceName) {
				t.Fatal("offline device uses ext RRPC")
			}
			connectStock(t, s, direct, "_ss=1,"+flag, true)
			if got := b.UsesExtRRPC(direct.ProductKey, direct.DeviceName); got != tt.ext {
				t.Errorf("direct %s: %v", flag, got)
			}
			gwd := s.CreateDevice(gp.ProductKey, "hub-"+tt.name)
			sub := s.CreateDevice(sp.ProductKey, "sensor-"+tt.name)
			g := connectStock(t, s, gwd, "_ss=1,gw=1,"+flag, true)
			gwCall(t, g, "/sys/", "thing/topo/add", []any{subIdent(sub)})
			if b.UsesExtRRPC(sub.ProductKey, sub.DeviceName) {
				t.Error("sub-device not logged in uses ext RRPC")
			}
			gwCall(t, g, "/ext/session/", "combine/login", subIdent(sub))
			if got := b.UsesExtRRPC(sub.ProductKey, sub.DeviceName); got != tt.ext {
				t.Errorf("sub-device through a gateway with %s: %v", flag, got)
			}
		})
	}
}
