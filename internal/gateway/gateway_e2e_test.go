package gateway_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtttest"
)

func hmacHex(key, content string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(content))
	return hex.EncodeToString(m.Sum(nil))
}

// subSign is what a gateway sends for a sub-device in topo.add and login.
func subSign(d apptest.Device) map[string]any {
	return mqtttest.SubDeviceParams(d.ProductKey, d.DeviceName, d.DeviceSecret)
}

type gwClient struct {
	t    *testing.T
	c    paho.Client
	d    apptest.Device
	msgs chan paho.Message
	n    int
}

func connectGateway(t *testing.T, s *apptest.Server, d apptest.Device) *gwClient {
	t.Helper()
	return connectGatewayOver(t, s, d, false)
}

// connectGatewayOver connects a gateway on the TCP listener, or on the TLS
// one (trusting the server's generated CA).
func connectGatewayOver(t *testing.T, s *apptest.Server, d apptest.Device, overTLS bool) *gwClient {
	t.Helper()
	ts := "2524608000000"
	id := d.ProductKey + "." + d.DeviceName
	g := &gwClient{t: t, d: d, msgs: make(chan paho.Message, 1000)}
	broker := "tcp://" + s.App.Broker().Addr("tcp")
	if overTLS {
		broker = "ssl://" + s.App.Broker().Addr("tls")
	}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(id + "|securemode=3,signmethod=hmacsha256,timestamp=" + ts + "|").
		SetUsername(d.DeviceName + "&" + d.ProductKey).SetPassword(hmacHex(d.DeviceSecret, "clientId"+id+"deviceName"+d.DeviceName+"productKey"+d.ProductKey+"timestamp"+ts)).
		SetAutoReconnect(false).SetOrderMatters(false)
	if overTLS {
		caPEM, err := os.ReadFile(filepath.Join(s.Config.DataDir, "tls", "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		o.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"})
	}
	g.c = paho.NewClient(o)
	if tok := g.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway connect: %v", tok.Error())
	}
	for _, f := range []string{"/sys/" + d.ProductKey + "/" + d.DeviceName + "/#", "/ext/session/" + d.ProductKey + "/" + d.DeviceName + "/#"} {
		g.sub(f)
	}
	t.Cleanup(func() { g.c.Disconnect(0) })
	return g
}

func (g *gwClient) sub(filter string) {
	g.t.Helper()
	tok := g.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { g.msgs <- m })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		g.t.Fatal(tok.Error())
	}
	if code := tok.(*paho.SubscribeToken).Result()[filter]; code >= 0x80 {
		g.t.Fatalf("subscribe %s refused", filter)
	}
}

type reply struct {
	ID      string          `json:"id"`
	Code    int             `json:"code"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

// call sends a request on topic (relative to the gateway's /sys or
// /ext/session prefix) and waits for its reply.
func (g *gwClient) call(kind, rest string, params any) reply {
	g.t.Helper()
	g.n++
	id := fmt.Sprint(g.n)
	prefix := "/sys/"
	if kind == "session" {
		prefix = "/ext/session/"
	}
	topic := prefix + g.d.ProductKey + "/" + g.d.DeviceName + "/" + rest
	body, _ := json.Marshal(map[string]any{"id": id, "version": "1.0", "params": params})
	return g.raw(topic, body, id)
}

func (g *gwClient) raw(topic string, body []byte, id string) reply {
	g.t.Helper()
	if tok := g.c.Publish(topic, 1, false, body); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		g.t.Fatal(tok.Error())
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-g.msgs:
			if m.Topic() != topic+"_reply" {
				continue
			}
			var r reply
			if err := json.Unmarshal(m.Payload(), &r); err != nil {
				g.t.Fatal(err)
			}
			if r.ID == id {
				return r
			}
		case <-deadline:
			g.t.Fatalf("no reply on %s_reply", topic)
		}
	}
}

// waitFor waits for a message on a topic.
func (g *gwClient) waitFor(topic string) paho.Message {
	g.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-g.msgs:
			if m.Topic() == topic {
				return m
			}
		case <-deadline:
			g.t.Fatalf("nothing on %s", topic)
		}
	}
}

type fixture struct {
	s          *apptest.Server
	gwProd     apptest.Product
	subProd    apptest.Product
	gw         apptest.Device
	subs       []apptest.Device
	foreignSub apptest.Device
}

func setup(t *testing.T, nSubs int) fixture {
	s := apptest.Start(t)
	f := fixture{s: s}
	f.gwProd = s.CreateProduct("hub", map[string]any{"nodeType": "gateway"})
	f.subProd = s.CreateProduct("sensor", map[string]any{"nodeType": "subdevice"})
	f.gw = s.CreateDevice(f.gwProd.ProductKey, "hub-01")
	var batch struct{ Devices []apptest.Device }
	names := make([]string, nSubs)
	for i := range names {
		names[i] = fmt.Sprintf("sensor-%04d", i)
	}
	s.Admin("POST", "/v1/products/"+f.subProd.ProductKey+"/devices:batch", map[string]any{"deviceNames": names}, 201).JSON(t, &batch)
	f.subs = batch.Devices
	var other struct{ Token string }
	s.Admin("POST", "/v1/accounts", map[string]any{"name": "other"}, 201).JSON(t, &other)
	if other.Token == "" {
		t.Fatal("account creation returned no admin token")
	}
	var op struct{ ProductKey string }
	r := s.Do(other.Token, "POST", "/v1/products", map[string]any{"name": "theirs", "nodeType": "subdevice"})
	if r.Status != 201 {
		t.Fatalf("other account's product: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &op)
	r = s.Do(other.Token, "POST", "/v1/products/"+op.ProductKey+"/devices", map[string]any{"deviceName": "their-sensor"})
	if r.Status != 201 {
		t.Fatalf("other account's device: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &f.foreignSub)
	if f.foreignSub.DeviceSecret == "" || f.foreignSub.ProductKey != op.ProductKey {
		t.Fatalf("other account's device: %+v", f.foreignSub)
	}
	return f
}

func TestTopologyAndBadInput(t *testing.T) {
	f := setup(t, 3)
	g := connectGateway(t, f.s, f.gw)
	bad := subSign(f.subs[0])
	bad["sign"] = strings.Repeat("0", 64)
	self := subSign(f.gw)
	over := make([]any, 31)
	for i := range over {
		over[i] = subSign(f.subs[0])
	}
	for _, tt := range []struct {
		name   string
		params any
		code   int
	}{
		{"wrong signature", []any{subSign(f.subs[1]), bad}, 401},
		{"another account's device", []any{subSign(f.foreignSub)}, 6100},
		{"more than 30", over, 460},
		{"the gateway itself", []any{self}, 6402},
		{"not a list", map[string]any{"x": 1}, 460},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := g.call("sys", "thing/topo/add", tt.params); r.Code != tt.code || r.Message == "" {
				t.Fatalf("got %d %q", r.Code, r.Message)
			}
		})
	}
	// A malformed envelope gets a clear error too.
	if r := g.raw("/sys/"+f.gw.ProductKey+"/hub-01/thing/topo/add", []byte(`{"id":"77","params":[`), "77"); r.Code != 460 {
		t.Fatalf("malformed envelope: %+v", r)
	}
	if r := g.call("sys", "thing/topo/get", "{}"); r.Code != 200 || string(r.Data) != "[]" {
		t.Fatalf("bad input changed the topology: %+v %s", r, r.Data)
	}
	if r := g.call("sys", "thing/topo/add", []any{subSign(f.subs[0]), subSign(f.subs[1])}); r.Code != 200 {
		t.Fatalf("topo.add: %+v", r)
	}
	r := g.call("sys", "thing/topo/get", map[string]any{})
	var got []struct{ ProductKey, DeviceName string }
	json.Unmarshal(r.Data, &got)
	if r.Code != 200 || len(got) != 2 {
		t.Fatalf("topo.get: %+v %s", r, r.Data)
	}
	if r := g.call("sys", "thing/topo/delete", []any{map[string]string{"productKey": f.subs[1].ProductKey, "deviceName": f.subs[1].DeviceName}}); r.Code != 200 {
		t.Fatalf("topo.delete: %+v", r)
	}
	var rest struct{ Subdevices []apptest.Device }
	f.s.Admin("GET", "/v1/products/"+f.gw.ProductKey+"/devices/hub-01/subdevices", nil, 200).JSON(t, &rest)
	if len(rest.Subdevices) != 1 || rest.Subdevices[0].DeviceName != f.subs[0].DeviceName {
		t.Fatalf("REST topology: %+v", rest)
	}
}

func TestSubDeviceSessionsAndRelay(t *testing.T) {
	f := setup(t, 3)
	g := connectGateway(t, f.s, f.gw)
	kid, secret, _ := strings.Cut(f.s.AdminKey, ".")
	appMsgs := make(chan paho.Message, 100)
	app := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + f.s.App.Broker().Addr("tcp")).SetClientID("backend").SetUsername(kid).SetPassword(secret))
	if tok := app.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer app.Disconnect(0)
	for _, fl := range []string{"/sys/" + f.subProd.ProductKey + "/+/thing/event/property/post", "$aws/events/presence/+/+"} {
		if tok := app.Subscribe(fl, 1, func(_ paho.Client, m paho.Message) { appMsgs <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	sub := f.subs[0]
	// Not in the topology yet: refused.
	if r := g.call("session", "combine/login", subSign(sub)); r.Code != 6401 {
		t.Fatalf("login outside the topology: %+v", r)
	}
	if r := g.call("sys", "thing/topo/add", []any{subSign(sub)}); r.Code != 200 {
		t.Fatal(r)
	}
	if r := g.call("session", "combine/login", subSign(sub)); r.Code != 200 {
		t.Fatalf("login: %+v", r)
	}
	waitPresence := func(kind, dn string) map[string]any {
		deadline := time.After(5 * time.Second)
		for {
			select {
			case m := <-appMsgs:
				var ev map[string]any
				json.Unmarshal(m.Payload(), &ev)
				if strings.HasPrefix(m.Topic(), "$aws/events/presence/"+kind+"/") && ev["deviceName"] == dn {
					return ev
				}
			case <-deadline:
				t.Fatalf("no %s presence event for %s", kind, dn)
			}
		}
	}
	waitPresence("connected", sub.DeviceName)
	// Up: the gateway publishes for the sub-device.
	up := "/sys/" + sub.ProductKey + "/" + sub.DeviceName + "/thing/event/property/post"
	if tok := g.c.Publish(up, 1, false, `{"id":"1","params":{"t":20}}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: timed out or %v", tok.Error())
	}
	deadline := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case m := <-appMsgs:
			found = m.Topic() == up
		case <-deadline:
			t.Fatal("relayed message did not arrive")
		}
	}
	// Down: the application sends to the sub-device; the gateway receives.
	down := "/sys/" + sub.ProductKey + "/" + sub.DeviceName + "/thing/service/property/set"
	g.sub("/sys/" + sub.ProductKey + "/" + sub.DeviceName + "/thing/service/#")
	if r := f.s.Do(f.s.AdminKey, "POST", "/v1/publish?qos=1&topic="+down, `{"params":{"on":1}}`); r.Status != 204 {
		t.Fatal(r.Status)
	}
	g.waitFor(down)
	// Rights follow the login: another sub-device's topics stay closed.
	other := f.subs[1]
	otherFilter := "/sys/" + other.ProductKey + "/" + other.DeviceName + "/#"
	tok := g.c.Subscribe(otherFilter, 1, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("SUBSCRIBE %s: no SUBACK or %v", otherFilter, tok.Error())
	}
	if code, ok := tok.(*paho.SubscribeToken).Result()[otherFilter]; !ok || code < 0x80 {
		t.Fatalf("gateway subscribed to a sub-device that is not logged in (SUBACK %#x, present %v)", code, ok)
	}
	var dev struct{ Status string }
	for i := 0; i < 100; i++ {
		f.s.Admin("GET", "/v1/products/"+sub.ProductKey+"/devices/"+sub.DeviceName, nil, 200).JSON(t, &dev)
		if dev.Status == "online" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if dev.Status != "online" {
		t.Fatalf("logged-in sub-device status %s", dev.Status)
	}
	// The gateway goes away: its sub-devices go offline with it.
	g.c.Disconnect(0)
	ev := waitPresence("disconnected", sub.DeviceName)
	if ev["disconnectReason"] != "GATEWAY_DISCONNECTED" {
		t.Fatalf("sub-device disconnect: %v", ev)
	}
}

func TestOperatorChangesReachTheGateway(t *testing.T) {
	f := setup(t, 2)
	g := connectGateway(t, f.s, f.gw)
	gwPath := "/v1/products/" + f.gw.ProductKey + "/devices/hub-01/subdevices"
	change := "/sys/" + f.gw.ProductKey + "/hub-01/thing/topo/change"
	type topoChange struct {
		Params struct {
			Status  int
			SubList []struct{ ProductKey, DeviceName string }
		}
		Method string
	}
	next := func() topoChange {
		var c topoChange
		json.Unmarshal(g.waitFor(change).Payload(), &c)
		return c
	}
	f.s.Admin("POST", gwPath, map[string]any{"subdevices": []any{map[string]string{"productKey": f.subs[0].ProductKey, "deviceName": f.subs[0].DeviceName}}}, 200)
	if c := next(); c.Method != "thing.topo.change" || c.Params.Status != 0 || len(c.Params.SubList) != 1 {
		t.Fatalf("add: %+v", c)
	}
	base := "/v1/products/" + f.subs[0].ProductKey + "/devices/" + f.subs[0].DeviceName
	f.s.Admin("POST", base+":disable", nil, 200)
	if c := next(); c.Params.Status != 8 {
		t.Fatalf("disable: %+v", c)
	}
	f.s.Admin("POST", base+":enable", nil, 200)
	if c := next(); c.Params.Status != 2 {
		t.Fatalf("enable: %+v", c)
	}
	// Moving it to another gateway tells this one it lost it.
	gw2 := f.s.CreateDevice(f.gwProd.ProductKey, "hub-02")
	_ = gw2
	f.s.Admin("POST", "/v1/products/"+f.gw.ProductKey+"/devices/hub-02/subdevices", map[string]any{"subdevices": []any{map[string]string{"productKey": f.subs[0].ProductKey, "deviceName": f.subs[0].DeviceName}}}, 200)
	if c := next(); c.Params.Status != 1 || c.Params.SubList[0].DeviceName != f.subs[0].DeviceName {
		t.Fatalf("move: %+v", c)
	}
	// Deleting a sub-device tells its gateway.
	f.s.Admin("POST", gwPath, map[string]any{"subdevices": []any{map[string]string{"productKey": f.subs[1].ProductKey, "deviceName": f.subs[1].DeviceName}}}, 200)
	next()
	f.s.Admin("DELETE", "/v1/products/"+f.subs[1].ProductKey+"/devices/"+f.subs[1].DeviceName, nil, 204)
	if c := next(); c.Params.Status != 1 {
		t.Fatalf("delete: %+v", c)
	}
	if r := f.s.Do(f.s.AdminKey, "POST", "/v1/products/"+f.subProd.ProductKey+"/devices/"+f.subs[0].DeviceName+"/subdevices", map[string]any{"subdevices": []any{}}); r.Status != 400 {
		t.Fatalf("sub-device as a gateway: %d %s", r.Status, r.Body)
	}
}

func TestSubDeviceRegistration(t *testing.T) {
	f := setup(t, 1)
	f.s.Admin("PATCH", "/v1/products/"+f.subProd.ProductKey, map[string]any{"dynamicRegistration": "whitelist"}, 200)
	auto := f.s.CreateProduct("auto-sensor", map[string]any{"nodeType": "subdevice", "dynamicRegistration": "auto"})
	pre := f.s.CreateDevice(f.subProd.ProductKey, "pre-made-01")
	// The answers carry DeviceSecrets: a gateway on the plain listener is
	// refused, and nothing is handed out.
	plain := connectGateway(t, f.s, f.gw)
	for _, m := range []struct {
		rest   string
		params any
	}{
		{"thing/sub/register", []any{map[string]string{"productKey": f.subProd.ProductKey, "deviceName": "pre-made-01"}}},
		{"thing/proxy/provisioning/product_register", map[string]any{"proxieds": []any{}}},
	} {
		if r := plain.call("sys", m.rest, m.params); r.Code != 6405 || strings.Contains(string(r.Data), pre.DeviceSecret) {
			t.Fatalf("%s over plain TCP: %+v %s", m.rest, r, r.Data)
		}
	}
	plain.c.Disconnect(0)
	g := connectGatewayOver(t, f.s, f.gw, true)
	r := g.call("sys", "thing/sub/register", []any{map[string]string{"productKey": f.subProd.ProductKey, "deviceName": "pre-made-01"}})
	var regs []struct{ ProductKey, DeviceName, DeviceSecret, IotID string }
	json.Unmarshal(r.Data, &regs)
	if r.Code != 200 || len(regs) != 1 || regs[0].DeviceSecret != pre.DeviceSecret {
		t.Fatalf("sub.register: %+v %s", r, r.Data)
	}
	if r := g.call("sys", "thing/sub/register", []any{map[string]string{"productKey": f.subProd.ProductKey, "deviceName": "pre-made-01"}}); r.Code == 200 {
		t.Fatal("secret handed out twice")
	}
	if r := g.call("sys", "thing/sub/register", []any{map[string]string{"productKey": f.subProd.ProductKey, "deviceName": "not-made-01"}}); r.Code != 6100 {
		t.Fatalf("unknown whitelist name: %+v", r)
	}
	random := "abc123"
	good := map[string]string{"productKey": auto.ProductKey, "deviceName": "new-sensor-01", "random": random, "signMethod": "hmacsha256",
		"sign": hmacHex(auto.ProductSecret, "deviceNamenew-sensor-01productKey"+auto.ProductKey+"random"+random)}
	badSign := map[string]string{"productKey": auto.ProductKey, "deviceName": "new-sensor-02", "random": random, "signMethod": "hmacsha256", "sign": strings.Repeat("1", 64)}
	r = g.call("sys", "thing/proxy/provisioning/product_register", map[string]any{"proxieds": []any{good, badSign}})
	var pr struct {
		Successes []struct{ DeviceName, DeviceSecret string }
		Failures  []struct {
			DeviceName string
			Code       int
		}
	}
	json.Unmarshal(r.Data, &pr)
	if r.Code != 200 || len(pr.Successes) != 1 || pr.Successes[0].DeviceSecret == "" || len(pr.Failures) != 1 || pr.Failures[0].DeviceName != "new-sensor-02" {
		t.Fatalf("product_register: %+v %s", r, r.Data)
	}
	f.s.Admin("GET", "/v1/products/"+auto.ProductKey+"/devices/new-sensor-01", nil, 200)
	f.s.Admin("GET", "/v1/products/"+auto.ProductKey+"/devices/new-sensor-02", nil, 404)
}

// TestPackPostForSubDeviceNotLoggedIn: a gateway's pack post for a
// sub-device of its topology that is not logged in is refused with 520 in
// the reply and on /ext/error/{gw} (where the Link SDK logs it in again);
// after combine.login it goes through.
func TestPackPostForSubDeviceNotLoggedIn(t *testing.T) {
	f := setup(t, 1)
	g := connectGateway(t, f.s, f.gw)
	sub := f.subs[0]
	if r := g.call("sys", "thing/topo/add", []any{subSign(sub)}); r.Code != 200 {
		t.Fatal(r)
	}
	errTopic := "/ext/error/" + f.gw.ProductKey + "/" + f.gw.DeviceName
	errs := make(chan paho.Message, 10) // apart from g.msgs, which call drains
	tok := g.c.Subscribe(errTopic, 1, func(_ paho.Client, m paho.Message) { errs <- m })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[errTopic] >= 0x80 {
		t.Fatalf("a gateway subscribing its own %s: refused or timed out (%v)", errTopic, tok.Error())
	}
	params := map[string]any{"subDevices": []any{map[string]any{"identity": map[string]string{"productKey": sub.ProductKey, "deviceName": sub.DeviceName}, "properties": map[string]any{"x": 1}}}}
	r := g.call("sys", "thing/event/property/pack/post", params)
	if r.Code != 520 || !strings.Contains(string(r.Data), sub.DeviceName) {
		t.Fatalf("pack post for a sub-device not logged in: %+v", r)
	}
	expectExtError := func(what string) {
		t.Helper()
		var e struct {
			ID   string
			Code int
			Data struct{ ProductKey, DeviceName string }
		}
		select {
		case m := <-errs:
			json.Unmarshal(m.Payload(), &e)
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing on %s after %s", errTopic, what)
		}
		if e.Code != 520 || e.ID == "" || e.Data.ProductKey != sub.ProductKey || e.Data.DeviceName != sub.DeviceName {
			t.Fatalf("/ext/error after %s: %+v", what, e)
		}
	}
	expectExtError("the pack post")
	// A post on the sub-device's own topic, refused by the broker, is told
	// the same way instead of vanishing.
	if tok := g.c.Publish("/sys/"+sub.ProductKey+"/"+sub.DeviceName+"/thing/event/property/post", 1, false, `{"id":"9","params":{"x":1}}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publishing for the sub-device: %v", tok.Error())
	}
	expectExtError("a refused publish for the sub-device")
	if r := g.call("session", "combine/login", subSign(sub)); r.Code != 200 {
		t.Fatalf("login: %+v", r)
	}
	// Logged in: the session check passes; the sub-device's product has no model.
	if r := g.call("sys", "thing/event/property/pack/post", params); r.Code != 6306 {
		t.Fatalf("pack post once logged in: %+v", r)
	}
}
