package shadowsvc_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// Shadows over MQTT, end to end on a full server: devices and
// applications with paho, as AWS and Alibaba clients would.

// mworld is a server with one product (catch-all topic classes) and
// devices dev1 and dev2, an operator and a readonly key.
type mworld struct {
	s                  *apptest.Server
	pk                 string
	dev1, dev2         apptest.Device
	operator, readonly string
	seq                atomic.Int64
	// watch is an application subscribed to the product's shadow
	// events: device waits for a session's presence to be in the shadow
	// (it is written in the background), so versions are known.
	watch *mclient
	named *mclient // for events of named shadows, when a test wants them
}

func newMWorld(t *testing.T) *mworld {
	t.Helper()
	s := apptest.Start(t)
	w := &mworld{s: s}
	w.pk = s.CreateProduct("shadows", nil).ProductKey
	w.dev1, w.dev2 = s.CreateDevice(w.pk, "dev1"), s.CreateDevice(w.pk, "dev2")
	for role, dst := range map[string]*string{"operator": &w.operator, "readonly": &w.readonly} {
		var k struct {
			Token string `json:"token"`
		}
		s.Admin("POST", "/v1/apikeys", map[string]any{"name": role, "role": role}, 201).JSON(t, &k)
		*dst = k.Token
	}
	w.watch = w.app(t, w.operator)
	w.watch.sub(t, "$corral/events/shadow/"+w.pk+"/+")
	return w
}

// thing is a device's default thing name's shadow prefix.
func (w *mworld) thing(d apptest.Device) string {
	return "$aws/things/" + d.ProductKey + "." + d.DeviceName + "/shadow"
}

// mclient is a paho client whose deliveries, on every filter it
// subscribed, land in one inbox.
type mclient struct {
	c  paho.Client
	in chan paho.Message
}

func (w *mworld) connect(t *testing.T, o *paho.ClientOptions) *mclient {
	t.Helper()
	m := &mclient{in: make(chan paho.Message, 1000)}
	o.AddBroker("tcp://" + w.s.App.Broker().Addr("tcp")).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) { m.in <- msg })
	m.c = paho.NewClient(o)
	if err := apptest.ConnectMQTT(t, m.c); err != nil {
		t.Fatalf("CONNECT refused: %v", err)
	}
	t.Cleanup(func() { m.c.Disconnect(50) })
	return m
}

// device connects a device with its triple (flags: clientId flags such
// as "_ss=1"); will is optional.
func (w *mworld) device(t *testing.T, d apptest.Device, will *mqtttest.Will, flags ...string) *mclient {
	t.Helper()
	cr := mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret, flags...)
	o := paho.NewClientOptions().SetClientID(cr.ClientID).SetUsername(cr.Username).SetPassword(cr.Password)
	if will != nil {
		o.SetBinaryWill(will.Topic, will.Payload, will.QoS, will.Retain)
	}
	m := w.connect(t, o)
	for {
		ev := w.watch.next(t, "$corral/events/shadow/"+d.ProductKey+"/"+d.DeviceName)
		if path(ev, "source") == "presence" && path(ev, "current.state.reported.connected") == true {
			return m
		}
	}
}

// app connects an application with an API key token.
func (w *mworld) app(t *testing.T, token string) *mclient {
	t.Helper()
	kid, secret, _ := strings.Cut(token, ".")
	return w.connect(t, paho.NewClientOptions().SetClientID(fmt.Sprintf("app-%d", w.seq.Add(1))).SetUsername(kid).SetPassword(secret))
}

func (m *mclient) sub(t *testing.T, filter string) {
	t.Helper()
	tok := m.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("SUBSCRIBE %s: %v", filter, tok.Error())
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		if code := st.Result()[filter]; code >= 0x80 {
			t.Fatalf("SUBSCRIBE %s refused (%#x)", filter, code)
		}
	}
}

func (m *mclient) pub(t *testing.T, topic, payload string) {
	t.Helper()
	tok := m.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("PUBLISH %s: %v", topic, tok.Error())
	}
}

// next waits for a message on topic, skipping others, and decodes it.
func (m *mclient) next(t *testing.T, topic string) map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case msg := <-m.in:
			if msg.Topic() != topic {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal(msg.Payload(), &v); err != nil {
				t.Fatalf("%s: %q is not JSON", topic, msg.Payload())
			}
			return v
		case <-deadline:
			t.Fatalf("nothing on %s within 5 s", topic)
			return nil
		}
	}
}

// until returns the messages that arrive before one on topic.
func (m *mclient) until(t *testing.T, topic string) []paho.Message {
	t.Helper()
	var before []paho.Message
	deadline := time.After(5 * time.Second)
	for {
		select {
		case msg := <-m.in:
			if msg.Topic() == topic {
				return before
			}
			before = append(before, msg)
		case <-deadline:
			t.Fatalf("nothing on %s within 5 s", topic)
			return nil
		}
	}
}

// path reads a nested member of a decoded payload ("state.desired.x").
// jsonOf decodes a JSON object payload.
func jsonOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return v
}

func path(v map[string]any, p string) any {
	var cur any = v
	for _, k := range strings.Split(p, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func want(t *testing.T, what string, v map[string]any, p string, exp any) {
	t.Helper()
	if got := path(v, p); fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Errorf("%s: %s = %v, want %v (in %v)", what, p, got, exp, v)
	}
}

// TestAWSShadowOverMQTT: a device and its account's applications use the
// device's classic and named shadows over $aws/things/…; every answer is
// the spec's, on the spec's topic.
func TestAWSShadowOverMQTT(t *testing.T) {
	w := newMWorld(t)
	sh := w.thing(w.dev1)
	dev := w.device(t, w.dev1, nil)
	w.named = w.app(t, w.operator)
	w.named.sub(t, "$corral/events/shadow/"+w.pk+"/+/+")
	dev.sub(t, sh+"/#")
	op := w.app(t, w.operator)
	op.sub(t, sh+"/#")

	// The device reports; the answer carries what it sent and version 1.
	dev.pub(t, sh+"/update", `{"state":{"reported":{"temp":20,"mode":"eco"}},"clientToken":"d1"}`)
	acc := dev.next(t, sh+"/update/accepted")
	want(t, "update/accepted", acc, "state.reported.temp", 20)
	want(t, "update/accepted", acc, "version", 2)
	want(t, "update/accepted", acc, "clientToken", "d1")
	docs := op.next(t, sh+"/update/documents")
	want(t, "update/documents", docs, "previous.version", 1)
	want(t, "update/documents", docs, "previous.state.reported.connected", true)
	want(t, "update/documents", docs, "current.state.reported.mode", "eco")
	ev := w.watch.next(t, "$corral/events/shadow/"+w.pk+"/dev1")
	want(t, "event", ev, "fromDevice", true)
	want(t, "event", ev, "version", 2)
	want(t, "event", ev, "source", "aws")

	// The application commands; the device gets the delta at once.
	op.pub(t, sh+"/update", `{"state":{"desired":{"temp":25,"mode":"eco"}},"clientToken":"a1"}`)
	delta := dev.next(t, sh+"/update/delta")
	want(t, "update/delta", delta, "state.temp", 25)
	want(t, "update/delta", delta, "state.mode", nil) // equal in reported: not in the delta
	want(t, "update/delta", delta, "version", 3)
	ev = w.watch.next(t, "$corral/events/shadow/"+w.pk+"/dev1")
	want(t, "event of the application's update", ev, "fromDevice", false)

	// get: the whole document with its delta.
	dev.pub(t, sh+"/get", `{"clientToken":"g1"}`)
	get := dev.next(t, sh+"/get/accepted")
	want(t, "get/accepted", get, "state.delta.temp", 25)
	want(t, "get/accepted", get, "state.reported.temp", 20)
	want(t, "get/accepted", get, "version", 3)
	want(t, "get/accepted", get, "clientToken", "g1")
	dev.pub(t, sh+"/get", ``)
	want(t, "get with an empty payload", dev.next(t, sh+"/get/accepted"), "version", 3)

	// What changed since version 2: only the desired section.
	dev.pub(t, sh+"/get", `{"clientToken":"s1","sinceVersion":2}`)
	since := dev.next(t, sh+"/get/accepted")
	want(t, "get since 2", since, "fromVersion", 2)
	want(t, "get since 2", since, "version", 3)
	want(t, "get since 2", since, "state.desired.temp", 25)
	want(t, "get since 2", since, "state.reported", nil)
	want(t, "get since 2", since, "clientToken", "s1")

	// Refusals, each with AWS's code and message; nothing changes.
	for _, c := range []struct {
		op, payload string
		code        int
		msg         string
	}{
		{"update", `{"state":{"reported":{"temp":21}},"version":2,"clientToken":"v1"}`, 409, "Version conflict"},
		{"update", `not json`, 400, "Invalid JSON"},
		{"update", `{"clientToken":"x"}`, 400, "Missing required node: state"},
		{"update", `{"state":{"reported":{"a":[1,null]}}}`, 400, "State contains an invalid node"},
		{"update", `{"state":{"reported":{"a":1}},"clientToken":"` + strings.Repeat("x", 65) + `"}`, 400, "Invalid clientToken"},
		{"get", `{"sinceVersion":-1}`, 400, "Invalid version"},
	} {
		dev.pub(t, sh+"/"+c.op, c.payload)
		rej := dev.next(t, sh+"/"+c.op+"/rejected")
		want(t, c.payload, rej, "code", c.code)
		want(t, c.payload, rej, "message", c.msg)
	}
	dev.pub(t, sh+"/get", ``)
	want(t, "after the refusals", dev.next(t, sh+"/get/accepted"), "version", 3)

	// Named shadows: their own topics and versions; an unknown one is 404.
	dev.pub(t, sh+"/name/cfg/update", `{"state":{"reported":{"rate":5}}}`)
	want(t, "named update", dev.next(t, sh+"/name/cfg/update/accepted"), "version", 1)
	dev.pub(t, sh+"/name/nope/get", ``)
	rej := dev.next(t, sh+"/name/nope/get/rejected")
	want(t, "unknown named shadow", rej, "code", 404)
	want(t, "unknown named shadow", rej, "message", "No shadow exists with name: nope")
	want(t, "named event", w.named.next(t, "$corral/events/shadow/"+w.pk+"/dev1/cfg"), "shadowName", "cfg")

	// Delete, then the shadow is gone; recreated, it continues the version.
	dev.pub(t, sh+"/name/cfg/delete", ``)
	want(t, "delete/accepted", dev.next(t, sh+"/name/cfg/delete/accepted"), "version", 1)
	dev.pub(t, sh+"/name/cfg/get", ``)
	want(t, "deleted", dev.next(t, sh+"/name/cfg/get/rejected"), "code", 404)
	dev.pub(t, sh+"/name/cfg/update", `{"state":{"reported":{"rate":6}}}`)
	want(t, "recreated", dev.next(t, sh+"/name/cfg/update/accepted"), "version", 2)
}

// TestAWSShadowRights: a readonly key gets but neither updates nor
// deletes; a device cannot touch another device's shadow; nothing is
// answered or changed for them.
func TestAWSShadowRights(t *testing.T) {
	w := newMWorld(t)
	sh := w.thing(w.dev1)
	op := w.app(t, w.operator)
	op.sub(t, sh+"/#")
	op.pub(t, sh+"/update", `{"state":{"desired":{"on":true}}}`)
	want(t, "operator update", op.next(t, sh+"/update/accepted"), "version", 1)

	ro := w.app(t, w.readonly)
	ro.sub(t, sh+"/#")
	ro.pub(t, sh+"/get", `{"clientToken":"ro"}`)
	got := ro.next(t, sh+"/get/accepted")
	want(t, "readonly get", got, "state.desired.on", true)
	want(t, "readonly get", got, "clientToken", "ro")

	// Refused publishes: the readonly key's update and delete, dev2's
	// update of dev1's shadow. dev2 cannot even subscribe there.
	ro.pub(t, sh+"/update", `{"state":{"desired":{"on":false}}}`)
	ro.pub(t, sh+"/delete", ``)
	other := w.device(t, w.dev2, nil)
	if tok := other.c.Subscribe(sh+"/#", 1, nil); tok.WaitTimeout(5*time.Second) && tok.(*paho.SubscribeToken).Result()[sh+"/#"] < 0x80 {
		t.Error("dev2 subscribed to dev1's shadow topics")
	}
	other.pub(t, sh+"/update", `{"state":{"reported":{"on":false}}}`)
	other.pub(t, sh+"/delete", ``)
	// A fence after them: the operator's get comes after every answer to
	// what was published before it.
	op.pub(t, sh+"/get", `{"clientToken":"fence"}`)
	for _, m := range op.until(t, sh+"/get/accepted") {
		if !strings.HasSuffix(m.Topic(), "/get") && m.Topic() != sh+"/update" && m.Topic() != sh+"/delete" {
			t.Errorf("a refused request was answered: %s %s", m.Topic(), m.Payload())
		}
	}
	op.pub(t, sh+"/get", ``)
	got = op.next(t, sh+"/get/accepted")
	want(t, "after refused requests", got, "version", 1)
	want(t, "after refused requests", got, "state.desired.on", true)
}

// TestAlibabaShadowOverMQTT: an Alibaba device's classic shadow is the
// one AWS clients see; replies and control pushes come on /shadow/get.
func TestAlibabaShadowOverMQTT(t *testing.T) {
	w := newMWorld(t)
	get := "/shadow/get/" + w.pk + "/dev1"
	upd := "/shadow/update/" + w.pk + "/dev1"
	sh := w.thing(w.dev1)
	dev := w.device(t, w.dev1, nil)
	dev.sub(t, "/shadow/get/+/+")
	op := w.app(t, w.operator)
	op.sub(t, sh+"/#")

	dev.pub(t, upd, `{"method":"update","state":{"reported":{"color":"red","size":3}},"version":0}`)
	r := dev.next(t, get)
	want(t, "update reply", r, "method", "reply")
	want(t, "update reply", r, "payload.status", "success")
	want(t, "update reply", r, "version", 2) // 1 is the session's presence

	// The application sets desired over AWS: the online device gets a
	// control push with the whole document.
	op.pub(t, sh+"/update", `{"state":{"desired":{"color":"green"}}}`)
	ctl := dev.next(t, get)
	want(t, "control", ctl, "method", "control")
	want(t, "control", ctl, "payload.state.desired.color", "green")
	want(t, "control", ctl, "payload.state.reported.color", "red")
	want(t, "control", ctl, "version", 3)
	// The device's SUBSCRIBE also pushes what waits for it, from a
	// goroutine of its own: when that ran after the change, it repeats
	// version 3's push. Never an older document after a newer one: the
	// replies below skip repeats of version 3 and nothing else.
	reply := func() map[string]any {
		t.Helper()
		for {
			m := dev.next(t, get)
			if m["method"] != "control" {
				return m
			}
			if v, _ := m["version"].(float64); v != 3 {
				t.Fatalf("a control push of version %v after version 3's: %v", m["version"], m)
			}
		}
	}

	// Version rule: greater than the stored one, else 409.
	dev.pub(t, upd, `{"method":"update","state":{"reported":{"color":"green"}},"version":3}`)
	r = reply()
	want(t, "stale version", r, "payload.status", "error")
	want(t, "stale version", r, "payload.content.errorcode", "409")
	dev.pub(t, upd, `{"method":"update","state":{"reported":{"color":"green"},"desired":"null"},"version":7}`)
	want(t, "version 7", reply(), "version", 7)
	// The "null" string deletes.
	dev.pub(t, upd, `{"method":"delete","state":{"reported":{"size":"null"}},"version":8}`)
	want(t, "delete", reply(), "payload.status", "success")

	// The AWS side reads the same document.
	op.pub(t, sh+"/get", ``)
	doc := op.next(t, sh+"/get/accepted")
	want(t, "AWS get of the Alibaba shadow", doc, "version", 8)
	want(t, "AWS get of the Alibaba shadow", doc, "state.reported.color", "green")
	want(t, "AWS get of the Alibaba shadow", doc, "state.reported.size", nil)
	want(t, "AWS get of the Alibaba shadow", doc, "state.desired", nil)

	// get, and get since a version.
	dev.pub(t, upd, `{"method":"get"}`)
	g := reply()
	want(t, "get", g, "payload.state.reported.color", "green")
	want(t, "get", g, "version", 8)
	dev.pub(t, upd, `{"method":"get","sinceVersion":7}`)
	g = reply()
	want(t, "get since 7", g, "payload.fromVersion", 7)
	want(t, "get since 7", g, "payload.state.reported.size", nil)
	if rep, _ := path(g, "payload.state.reported").(map[string]any); rep == nil || len(rep) != 1 {
		t.Errorf("get since 7: reported changes %v, want {size: null}", path(g, "payload.state.reported"))
	}
	want(t, "get since 7", g, "version", 8)

	dev.pub(t, upd, `{"method":"launch"}`)
	want(t, "bad method", reply(), "payload.content.errorcode", "406")
}

// TestCommandsWhileOffline: desired set while the device is away is not
// lost: a stock device (_ss=1) gets the control push as its session
// starts, an AWS device the delta when it subscribes.
func TestCommandsWhileOffline(t *testing.T) {
	w := newMWorld(t)
	op := w.app(t, w.operator)
	sh1, sh2 := w.thing(w.dev1), w.thing(w.dev2)
	op.sub(t, sh1+"/#")
	op.sub(t, sh2+"/#")
	op.pub(t, sh1+"/update", `{"state":{"desired":{"fan":2}}}`)
	op.next(t, sh1+"/update/accepted")
	op.pub(t, sh2+"/update", `{"state":{"desired":{"fan":3}}}`)
	op.next(t, sh2+"/update/accepted")

	stock := w.device(t, w.dev1, nil, "_ss=1")
	ctl := stock.next(t, "/shadow/get/"+w.pk+"/dev1")
	want(t, "control at session start", ctl, "method", "control")
	want(t, "control at session start", ctl, "payload.state.desired.fan", 2)

	op.pub(t, sh2+"/name/cfg/update", `{"state":{"desired":{"rate":9}}}`)
	op.next(t, sh2+"/name/cfg/update/accepted")
	aws := w.device(t, w.dev2, nil)
	aws.sub(t, sh2+"/update/delta")
	d := aws.next(t, sh2+"/update/delta")
	want(t, "delta on subscribe", d, "state.fan", 3)
	aws.sub(t, sh2+"/name/+/update/delta")
	d = aws.next(t, sh2+"/name/cfg/update/delta")
	want(t, "named delta on a wildcard subscribe", d, "state.rate", 9)

	// Once reported, nothing is pending: a new subscription brings nothing.
	aws.sub(t, sh2+"/update/accepted")
	aws.pub(t, sh2+"/update", `{"state":{"reported":{"fan":3}}}`)
	aws.next(t, sh2+"/update/accepted")
	aws.sub(t, sh2+"/get/accepted")
	aws.sub(t, sh2+"/update/#")
	aws.pub(t, sh2+"/get", ``)
	for _, m := range aws.until(t, sh2+"/get/accepted") {
		if m.Topic() == sh2+"/update/delta" {
			t.Errorf("a delta after the device caught up: %s", m.Payload())
		}
	}
}

// TestPresenceInShadow: reported.connected follows the device's
// sessions; a will on the device's own shadow update topic is applied as
// an update when it fires.
func TestPresenceInShadow(t *testing.T) {
	w := newMWorld(t)
	sh := w.thing(w.dev1)
	op := w.app(t, w.operator)
	op.sub(t, sh+"/#")
	op.sub(t, "$corral/events/shadow/"+w.pk+"/dev1")

	dev := w.device(t, w.dev1, &mqtttest.Will{Topic: sh + "/update", Payload: []byte(`{"state":{"reported":{"lastWill":"gone"}}}`), QoS: 1})
	ev := op.next(t, "$corral/events/shadow/"+w.pk+"/dev1")
	want(t, "connect event", ev, "source", "presence")
	want(t, "connect event", ev, "current.state.reported.connected", true)

	// The connection drops without DISCONNECT: the will fires.
	_ = dev
	w.s.App.Broker().Kick(w.pk, "dev1", "TEST_KICK")
	for i := 0; i < 2; i++ {
		ev = op.next(t, "$corral/events/shadow/"+w.pk+"/dev1")
		switch path(ev, "source") {
		case "presence":
			want(t, "disconnect event", ev, "current.state.reported.connected", false)
		case "aws":
			want(t, "the will", ev, "current.state.reported.lastWill", "gone")
		default:
			t.Errorf("unexpected event %v", ev)
		}
	}
	op.pub(t, sh+"/get", ``)
	doc := op.next(t, sh+"/get/accepted")
	want(t, "after the session", doc, "state.reported.connected", false)
	want(t, "after the session", doc, "state.reported.lastWill", "gone")
}

// TestRESTCommandReachesOnlineDevice: an application's REST update of
// desired reaches an online device at once, as an AWS delta and as an
// Alibaba control push; the device's own reported update brings no
// control push.
func TestRESTCommandReachesOnlineDevice(t *testing.T) {
	w := newMWorld(t)
	sh := w.thing(w.dev1)
	get := "/shadow/get/" + w.pk + "/dev1"
	dev := w.device(t, w.dev1, nil)
	dev.sub(t, sh+"/update/delta")
	dev.sub(t, get)
	w.s.Admin("PUT", "/v1/products/"+w.pk+"/devices/dev1/shadows", `{"state":{"desired":{"light":"on"}}}`, 200)
	delta := dev.next(t, sh+"/update/delta")
	want(t, "delta after a REST update", delta, "state.light", "on")
	want(t, "control after a REST update", dev.next(t, get), "payload.state.desired.light", "on")
	dev.pub(t, "/shadow/update/"+w.pk+"/dev1", `{"method":"update","state":{"reported":{"light":"on"}},"version":0}`)
	for _, m := range dev.until(t, get) {
		// The delta may come twice when the SUBSCRIBE's pending delivery
		// reads the shadow after the REST update: the same version, which
		// a device drops as not newer (AWS's rule; QoS 1 repeats it too).
		if m.Topic() == sh+"/update/delta" && path(jsonOf(t, m.Payload()), "version") == path(delta, "version") {
			continue
		}
		t.Errorf("before the reply to the device's own update: %s %s", m.Topic(), m.Payload())
	}
	dev.pub(t, "/shadow/update/"+w.pk+"/dev1", `{"method":"get"}`)
	if r := dev.next(t, get); path(r, "method") != "reply" {
		t.Errorf("a control push after the device's own update: %v", r)
	}
}
