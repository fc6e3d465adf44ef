package hostile_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Attacks on topic rights: thing names shared across accounts, API keys
// whose role or existence changed, applications posing as devices and
// gateways, sessions that outlive their device.

// rightsSettle publishes once more from c and waits for the PUBACK: c's
// session reads its packets in order, so every delivery of c's earlier
// publishes is queued to its subscribers by then. A fence published
// afterwards by anyone then arrives after them.
func rightsSettle(t testing.TB, c paho.Client) {
	t.Helper()
	publish(t, c, "/settle/"+time.Now().Format("150405.000000000"), "settle")
}

// rightsNone fails if any message before the fence matches.
func rightsNone(t testing.TB, what string, msgs []paho.Message, bad func(paho.Message) bool) {
	t.Helper()
	for _, m := range msgs {
		if bad(m) {
			t.Errorf("%s: got %s %q", what, m.Topic(), m.Payload())
		}
	}
}

// anyMsg flags every message but a device's own presence in its shadow:
// corral publishes update/documents on a thing's shadow topics when the
// device connects (reported.connected), which subscribers of those topics
// may see before a fence; such a document changes nothing but connected.
func anyMsg(m paho.Message) bool { return !presenceDocument(m) }

func presenceDocument(m paho.Message) bool {
	if !strings.HasSuffix(m.Topic(), "/shadow/update/documents") {
		return false
	}
	type doc struct {
		State map[string]map[string]any `json:"state"`
	}
	var d struct {
		Previous doc `json:"previous"`
		Current  doc `json:"current"`
	}
	if json.Unmarshal(m.Payload(), &d) != nil || d.Current.State["reported"]["connected"] == nil {
		return false
	}
	for _, st := range []map[string]map[string]any{d.Previous.State, d.Current.State} {
		delete(st["reported"], "connected")
		for k, sec := range st {
			if len(sec) == 0 {
				delete(st, k)
			}
		}
	}
	a, _ := json.Marshal(d.Previous.State)
	b, _ := json.Marshal(d.Current.State)
	return bytes.Equal(a, b)
}

// rightsUntilPayload is inbox.until for a fence told apart by its payload.
func rightsUntilPayload(t testing.TB, i *inbox, marker string) []paho.Message {
	t.Helper()
	var before []paho.Message
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-i.ch:
			if strings.Contains(string(m.Payload()), marker) {
				return before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("fence %s never arrived (got %d others)", marker, len(before))
			return nil
		}
	}
}

// rightsThing is a device's default thing name.
func rightsThing(d apptest.Device) string { return d.ProductKey + "." + d.DeviceName }

// rightsRawConnect sends a hand-made CONNECT carrying a will, waits for
// the CONNACK and returns the connection; closing it without DISCONNECT
// fires the will.
func rightsRawConnect(t testing.TB, addr, clientID, user, pass, willTopic string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pk := &packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 30, ClientID: clientID,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass),
		Will: &packet.Will{Topic: willTopic, Payload: []byte("will"), QoS: 0}}
	buf, err := pk.Append(nil, packet.V311)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(buf); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("raw CONNECT: CONNACK % x, %v", ack, err)
	}
	// A PINGRESP proves the session's read loop runs, so the broker has
	// counted the session (it does so after the CONNACK): rightsWillFence
	// may then wait for the count to drop.
	if _, err := conn.Write([]byte{0xC0, 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, ack[:2]); err != nil || ack[0] != 0xD0 {
		t.Fatalf("raw PINGREQ: % x, %v", ack[:2], err)
	}
	return conn
}

// rightsConns reads the number of live MQTT sessions on the TCP listener
// from /metrics.
func (w *world) rightsConns(t testing.TB) float64 {
	t.Helper()
	r := w.S.Do("", "GET", "/metrics", nil)
	for _, line := range strings.Split(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, `corral_mqtt_connections{listener="tcp"} `); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// rightsWillFence closes a raw connection and waits until the broker has
// ended its session: a session's will is sent before its end is counted,
// so a fence published afterwards arrives after the will would have.
func (w *world) rightsWillFence(t testing.TB, conn net.Conn) {
	t.Helper()
	before := w.rightsConns(t)
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for w.rightsConns(t) >= before {
		if time.Now().After(deadline) {
			t.Fatal("the raw session did not end within 5 s")
		}
		runtime.Gosched()
	}
}

// rightsDeviceCreds are the raw CONNECT credentials of a device.
func (w *world) rightsDeviceCreds(d apptest.Device) (clientID, user, pass string) {
	o := w.deviceOptions(d)
	return o.ClientID, o.Username, o.Password
}

// rightsLost connects with a connection-lost callback that signals lost.
func rightsLost(t testing.TB, o *paho.ClientOptions) (paho.Client, chan error) {
	t.Helper()
	lost := make(chan error, 1)
	o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	return connect(t, o), lost
}

func rightsWaitLost(t testing.TB, lost chan error, what string) {
	t.Helper()
	select {
	case <-lost:
	case <-time.After(1500 * time.Millisecond):
		t.Fatalf("%s: session still open 1.5 s later", what)
	}
}

// --- item 1: thing names ---

// TestRightsThingNamesAreNotShared: account 2's devB may not subscribe,
// publish, retain or leave a will on account 1's devB thing topics; each
// uses its own thing name.
func TestRightsThingNamesAreNotShared(t *testing.T) {
	w := newWorld(t)
	var got struct {
		ThingName string `json:"thingName"`
	}
	w.do(w.T1.Admin, "GET", "/v1/products/"+w.T1.Direct.ProductKey+"/devices/devB", nil, 200).JSON(t, &got)
	if got.ThingName != rightsThing(w.T1.DevB) {
		t.Errorf("thingName = %q, want %q", got.ThingName, rightsThing(w.T1.DevB))
	}
	// The victim's thing topics are those it uses: under its thing name,
	// or (a server without thing names) its DeviceName.
	victimThing := got.ThingName
	if victimThing == "" {
		victimThing = w.T1.DevB.DeviceName
	}
	victim := w.device(t, w.T1.DevB)
	mine := "$aws/things/" + victimThing + "/shadow/"
	in := newInbox()
	mustSubscribe(t, victim, mine+"#", in)
	// Account 2's devB leaves a will on account 1's devB thing.
	id, user, pass := w.rightsDeviceCreds(w.T2.DevB)
	w.rightsWillFence(t, rightsRawConnect(t, w.S.App.Broker().Addr("tcp"), id, user, pass, mine+"will"))
	attacker := w.device(t, w.T2.DevB)

	// The bare DeviceName and the other account's thing are not the attacker's.
	for _, f := range []string{"$aws/things/devB/shadow/#", mine + "#", "$aws/things/+/shadow/#"} {
		if code := subscribe(t, attacker, f, newInbox()); code < 0x80 {
			t.Errorf("account 2's devB subscribed to %s (code %#x)", f, code)
		}
	}
	publish(t, attacker, mine+"update", `{"state":{"desired":{"evil":1}}}`)
	publish(t, attacker, mine+"update/delta", `{"state":{"evil":1}}`)
	if tok := attacker.Publish(mine+"update", 1, true, "retained"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("retained publish not acknowledged")
	}
	rightsSettle(t, attacker)
	publish(t, victim, mine+"fence", "fence")
	rightsNone(t, "account 1's devB thing topics", in.until(t, mine+"fence"), anyMsg)

	// No retained message was left there either.
	late := newInbox()
	other := w.app(t, w.T1.Operator)
	mustSubscribe(t, other, mine+"#", late)
	publish(t, victim, mine+"fence", "fence")
	rightsNone(t, "retained on account 1's thing", late.until(t, mine+"fence"), anyMsg)

	// Each devB uses its own thing name.
	for _, d := range []apptest.Device{w.T1.DevB, w.T2.DevB} {
		c := w.device(t, d)
		own := "$aws/things/" + rightsThing(d) + "/shadow/update"
		in := newInbox()
		mustSubscribe(t, c, own, in)
		publish(t, c, own, "hello")
		if m := in.next(t); string(m.Payload()) != "hello" {
			t.Fatalf("%s: got %q", d.ProductKey, m.Payload())
		}
	}
}

// TestRightsAppThingsOfItsAccount: an application sees and publishes only
// thing names of its account, also through a wildcard filter.
func TestRightsAppThingsOfItsAccount(t *testing.T) {
	w := newWorld(t)
	app2 := w.app(t, w.T2.Operator)
	in := newInbox()
	mustSubscribe(t, app2, "$aws/things/+/shadow/#", in)
	if code := subscribe(t, app2, "$aws/things/"+rightsThing(w.T1.DevB)+"/shadow/#", newInbox()); code < 0x80 {
		t.Errorf("account 2's app subscribed to account 1's thing (code %#x)", code)
	}
	dev1 := w.device(t, w.T1.DevB)
	in1 := newInbox()
	t1 := "$aws/things/" + rightsThing(w.T1.DevB) + "/shadow/"
	mustSubscribe(t, dev1, t1+"#", in1)
	publish(t, dev1, t1+"update", "account one")
	publish(t, app2, t1+"update", "forged")
	rightsSettle(t, app2)
	dev2 := w.device(t, w.T2.DevB)
	t2 := "$aws/things/" + rightsThing(w.T2.DevB) + "/shadow/"
	publish(t, dev2, t2+"update", "account two")
	// Account 2's wildcard sees its own thing (its device's publish, and
	// the shadow service's answers to it, which corral publishes before
	// delivering the request), never account one's.
	rightsNone(t, "account 2's wildcard", in.until(t, t2+"update"), func(m paho.Message) bool { return strings.HasPrefix(m.Topic(), t1) })
	publish(t, dev1, t1+"fence", "fence")
	rightsNone(t, "account 1's thing", in1.until(t, t1+"fence"), func(m paho.Message) bool { return string(m.Payload()) == "forged" })
}

// TestRightsExplicitThingNames: a thing name set explicitly is unique
// across the instance, checked, used by the device instead of the
// default, and renaming it closes the device's live session.
func TestRightsExplicitThingNames(t *testing.T) {
	w := newWorld(t)
	base1 := "/v1/products/" + w.T1.Direct.ProductKey + "/devices/"
	c, lost := rightsLost(t, w.deviceOptions(w.T1.DevA))
	_ = c
	var d struct {
		ThingName string `json:"thingName"`
	}
	w.do(w.T1.Operator, "PATCH", base1+"devA", map[string]any{"thingName": "factory:7"}, 200).JSON(t, &d)
	if d.ThingName != "factory:7" {
		t.Fatalf("thingName = %q", d.ThingName)
	}
	rightsWaitLost(t, lost, "renamed thing")
	var byName struct {
		DeviceName string `json:"deviceName"`
		ProductKey string `json:"productKey"`
	}
	w.do(w.T1.Readonly, "GET", "/v1/things/factory:7", nil, 200).JSON(t, &byName)
	if byName.DeviceName != "devA" || byName.ProductKey != w.T1.Direct.ProductKey {
		t.Fatalf("thing lookup = %+v", byName)
	}
	w.do(w.T2.Readonly, "GET", "/v1/things/factory:7", nil, 404)
	w.do(w.T1.Readonly, "GET", "/v1/things/"+rightsThing(w.T1.DevA), nil, 404) // renamed away
	w.do(w.T1.Readonly, "GET", "/v1/things/"+rightsThing(w.T1.DevB), nil, 200)

	// Taken across accounts, or malformed.
	base2 := "/v1/products/" + w.T2.Direct.ProductKey + "/devices"
	w.do(w.T2.Operator, "POST", base2, map[string]any{"deviceName": "devC", "thingName": "factory:7"}, 409)
	w.do(w.T2.Operator, "PATCH", base2+"/devA", map[string]any{"thingName": "factory:7"}, 409)
	for _, bad := range []string{"a.b", "", "x y", strings.Repeat("x", 129), "$aws"} {
		r := w.S.Do(w.T2.Operator, "POST", base2, map[string]any{"deviceName": "devD", "thingName": bad})
		if bad == "" {
			if r.Status != 201 {
				t.Errorf("empty thingName (the default) = %d %s", r.Status, r.Body)
			}
			continue
		}
		if r.Status != 400 || !strings.Contains(string(r.Body), `"thingName"`) {
			t.Errorf("thingName %q = %d %s, want 400 naming thingName", bad, r.Status, r.Body)
		}
	}
	w.do(w.T2.Operator, "POST", base2, map[string]any{"deviceName": "devE", "thingName": "other-7"}, 201)
	w.do(w.T2.Operator, "POST", base2+":batch", map[string]any{"deviceNames": []string{"devF", "devG"}, "thingNames": []string{"other-8", "factory:7"}}, 409)
	w.do(w.T2.Operator, "POST", base2+":batch", map[string]any{"deviceNames": []string{"devF", "devG"}, "thingNames": []string{"other-8", "a.b"}}, 400)
	var batch struct {
		Devices []struct {
			ThingName string `json:"thingName"`
		} `json:"devices"`
	}
	w.do(w.T2.Operator, "POST", base2+":batch", map[string]any{"deviceNames": []string{"devF", "devG"}, "thingNames": []string{"other-8", ""}}, 201).JSON(t, &batch)
	if len(batch.Devices) != 2 || batch.Devices[0].ThingName != "other-8" || batch.Devices[1].ThingName != w.T2.Direct.ProductKey+".devG" {
		t.Fatalf("batch thing names: %+v", batch)
	}

	// The device now uses its explicit name, not the default one.
	dev := w.device(t, w.T1.DevA)
	if code := subscribe(t, dev, "$aws/things/"+rightsThing(w.T1.DevA)+"/shadow/#", newInbox()); code < 0x80 {
		t.Errorf("default name still usable after the rename (code %#x)", code)
	}
	in := newInbox()
	mustSubscribe(t, dev, "$aws/things/factory:7/shadow/#", in)
	app1, app2 := w.app(t, w.T1.Operator), w.app(t, w.T2.Operator)
	if code := subscribe(t, app2, "$aws/things/factory:7/shadow/#", newInbox()); code < 0x80 {
		t.Errorf("account 2's app subscribed to account 1's explicit thing (code %#x)", code)
	}
	publish(t, app2, "$aws/things/factory:7/shadow/update", "forged")
	rightsSettle(t, app2)
	publish(t, app1, "$aws/things/factory:7/shadow/update", "desired")
	// corral's own answer to that publish (update/rejected: it is no
	// shadow update) may come first; nothing else may.
	for {
		m := in.next(t)
		if string(m.Payload()) == "desired" {
			break
		}
		if !strings.HasSuffix(m.Topic(), "/shadow/update/rejected") && !presenceDocument(m) {
			t.Fatalf("got %s %q, want account 1's own publish", m.Topic(), m.Payload())
		}
	}

	// Clearing it returns to the default; the released name, taken by
	// account 2, carries nothing account 1 retained under it.
	if tok := dev.Publish("$aws/things/factory:7/shadow/update", 1, true, "account one's retained"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("retained publish not acknowledged")
	}
	w.do(w.T1.Operator, "PATCH", base1+"devA", map[string]any{"thingName": ""}, 200).JSON(t, &d)
	if d.ThingName != rightsThing(w.T1.DevA) {
		t.Fatalf("cleared thingName = %q", d.ThingName)
	}
	w.do(w.T2.Operator, "PATCH", base2+"/devA", map[string]any{"thingName": "factory:7"}, 200)
	heir := w.device(t, w.T2.DevA)
	heirIn := newInbox()
	mustSubscribe(t, heir, "$aws/things/factory:7/#", heirIn)
	publish(t, heir, "$aws/things/factory:7/fence", "fence")
	rightsNone(t, "the new owner of factory:7", heirIn.until(t, "$aws/things/factory:7/fence"), anyMsg)
}

// --- item 2: readonly keys ---

// TestRightsReadonlyKeySubscribesOnly: a readonly key's publishes and will
// never reach a device; it still subscribes.
func TestRightsReadonlyKeySubscribesOnly(t *testing.T) {
	w := newWorld(t)
	pk := w.T1.Direct.ProductKey
	dev := w.device(t, w.T1.DevA)
	in := newInbox()
	set := "/sys/" + pk + "/devA/thing/service/property/set"
	fence := "/" + pk + "/devA/user/fence"
	mustSubscribe(t, dev, set, in)
	mustSubscribe(t, dev, "/"+pk+"/devA/user/#", in)
	ro := w.app(t, w.T1.Readonly)
	mustSubscribe(t, ro, "/sys/"+pk+"/+/thing/event/property/post", newInbox())
	publish(t, ro, set, `{"id":"1","params":{"x":1}}`)
	rightsSettle(t, ro)
	kid, secret, _ := strings.Cut(w.T1.Readonly, ".")
	w.rightsWillFence(t, rightsRawConnect(t, w.S.App.Broker().Addr("tcp"), "ro-will", kid, secret, "/"+pk+"/devA/user/will"))
	op := w.app(t, w.T1.Operator)
	publish(t, op, fence, "fence")
	rightsNone(t, "readonly key's publish or will", in.until(t, fence), anyMsg)
}

// TestRightsReadonlyKeyRefusedMQTT5: over MQTT 5 a readonly key's QoS 1
// publish is answered "not authorized" (0x87), as other refused publishes.
func TestRightsReadonlyKeyRefusedMQTT5(t *testing.T) {
	w := newWorld(t)
	kid, secret, _ := strings.Cut(w.T1.Readonly, ".")
	conn, err := net.DialTimeout("tcp", w.S.App.Broker().Addr("tcp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	send := func(pk packet.Packet) {
		buf, err := pk.Append(nil, packet.V5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	read := func() (byte, []byte) {
		var fh [1]byte
		if _, err := io.ReadFull(conn, fh[:]); err != nil {
			t.Fatal(err)
		}
		n, mul := 0, 1
		for {
			var b [1]byte
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				t.Fatal(err)
			}
			n += int(b[0]&0x7f) * mul
			if b[0]&0x80 == 0 {
				break
			}
			mul *= 128
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(conn, body); err != nil {
			t.Fatal(err)
		}
		return fh[0] >> 4, body
	}
	send(&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: "ro-v5",
		UsernameFlag: true, Username: kid, PasswordFlag: true, Password: []byte(secret)})
	if typ, body := read(); typ != byte(packet.TypeConnack) || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK: type %d body % x", typ, body)
	}
	send(&packet.Publish{QoS: 1, PacketID: 7,
		Topic: "/sys/" + w.T1.Direct.ProductKey + "/devA/thing/service/property/set", Payload: []byte(`{"id":"1","params":{}}`)})
	typ, body := read()
	if typ != byte(packet.TypePuback) || len(body) < 3 || body[2] != byte(packet.NotAuthorized) {
		t.Fatalf("PUBACK: type %d body % x, want reason 0x87", typ, body)
	}
}

// --- item 3: applications are not devices ---

// TestRightsAppCannotActAsGateway: neither a readonly nor an admin key can
// register a gateway's sub-devices by publishing on its uplink topic.
func TestRightsAppCannotActAsGateway(t *testing.T) {
	w := newWorld(t)
	gpk := w.T1.Gateway.ProductKey
	// Registration is on, so a request that got through would be answered with a secret.
	w.do(w.T1.Admin, "PATCH", "/v1/products/"+w.T1.Sub.ProductKey, map[string]any{"dynamicRegistration": "whitelist"}, 200)
	gw := w.device(t, w.T1.GW)
	gwIn := newInbox()
	mustSubscribe(t, gw, "/sys/"+gpk+"/gw01/thing/#", gwIn)
	for _, token := range []string{w.T1.Readonly, w.T1.Admin} {
		app := w.app(t, token)
		in := newInbox()
		mustSubscribe(t, app, "/sys/"+gpk+"/gw01/thing/#", in)
		req := `{"id":"66","version":"1.0","params":[{"productKey":"` + w.T1.Sub.ProductKey + `","deviceName":"sub01"}],"method":"thing.sub.register"}`
		publish(t, app, "/sys/"+gpk+"/gw01/thing/sub/register", req)
		publish(t, app, "/sys/"+gpk+"/gw01/thing/sub/register_reply", `{"id":"1","code":200,"data":[]}`)
		rightsSettle(t, app)
		fence := "/sys/" + gpk + "/gw01/thing/topo/get"
		publish(t, gw, fence, `{"id":"2","version":"1.0","params":{},"method":"thing.topo.get"}`)
		secret := func(m paho.Message) bool {
			return strings.Contains(m.Topic(), "register") || strings.Contains(string(m.Payload()), w.T1.Sub1.DeviceSecret)
		}
		rightsNone(t, "application's inbox", in.until(t, fence+"_reply"), secret)
		rightsNone(t, "gateway's inbox", gwIn.until(t, fence+"_reply"), secret)
	}
}

// TestRightsAppCannotForgePosts: an application's property post on a
// device's uplink topic is neither delivered nor stored.
func TestRightsAppCannotForgePosts(t *testing.T) {
	w := newWorld(t)
	pk := w.T1.Direct.ProductKey
	model := `{"properties":[{"identifier":"forged","name":"f","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"1000","step":"1"}}},` +
		`{"identifier":"real","name":"r","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"1000","step":"1"}}}]}`
	w.do(w.T1.Admin, "PUT", "/v1/products/"+pk+"/tsl", model, 200)
	post := "/sys/" + pk + "/devA/thing/event/property/post"
	watcher := w.app(t, w.T1.Operator)
	in := newInbox()
	mustSubscribe(t, watcher, post, in)
	dev := w.device(t, w.T1.DevA)
	devIn := newInbox()
	mustSubscribe(t, dev, post+"_reply", devIn)
	forger := w.app(t, w.T1.Admin)
	publish(t, forger, post, `{"id":"9","version":"1.0","params":{"forged":7},"method":"thing.event.property.post"}`)
	rightsSettle(t, forger)
	publish(t, dev, post, `{"id":"10","version":"1.0","params":{"real":1},"method":"thing.event.property.post"}`)
	rightsNone(t, "watcher", rightsUntilPayload(t, in, `"10"`), anyMsg)
	if m := devIn.next(t); !strings.Contains(string(m.Payload()), `"10"`) {
		t.Errorf("device got a reply to a post it never made: %s", m.Payload())
	}
	var props struct {
		Properties []struct {
			Identifier string `json:"identifier"`
		} `json:"properties"`
	}
	w.do(w.T1.Admin, "GET", "/v1/products/"+pk+"/devices/devA/properties", nil, 200).JSON(t, &props)
	for _, p := range props.Properties {
		if p.Identifier == "forged" {
			t.Errorf("forged property stored: %+v", props)
		}
	}
	// Nor over HTTP publish.
	w.do(w.T1.Admin, "POST", "/v1/publish?qos=1&topic="+url.QueryEscape(post), `{"id":"12","params":{"forged":8}}`, 403)
	// Downlinks stay open to applications.
	set := "/sys/" + pk + "/devA/thing/service/property/set"
	setIn := newInbox()
	mustSubscribe(t, dev, set, setIn)
	publish(t, forger, set, `{"id":"11","params":{"real":2}}`)
	setIn.next(t)
}

// --- item 4: deleted or demoted keys ---

// TestRightsDeletedKeyLosesSession: deleting a key, or lowering its role,
// closes its MQTT sessions within a second; a deleted key cannot reconnect.
func TestRightsDeletedKeyLosesSession(t *testing.T) {
	w := newWorld(t)
	for _, how := range []string{"delete", "demote"} {
		var k struct {
			ID    string `json:"id"`
			Token string `json:"token"`
		}
		w.do(w.T1.Admin, "POST", "/v1/apikeys", map[string]any{"name": how, "role": "operator"}, 201).JSON(t, &k)
		_, lost := rightsLost(t, w.appOptions(k.Token))
		if how == "delete" {
			w.do(w.T1.Admin, "DELETE", "/v1/apikeys/"+k.ID, nil, 204)
		} else {
			var got struct {
				Role string `json:"role"`
			}
			w.do(w.T1.Admin, "PATCH", "/v1/apikeys/"+k.ID, map[string]any{"role": "readonly"}, 200).JSON(t, &got)
			if got.Role != "readonly" {
				t.Fatalf("role = %q", got.Role)
			}
		}
		rightsWaitLost(t, lost, how)
		c := paho.NewClient(w.appOptions(k.Token))
		tok := c.Connect()
		if !tok.WaitTimeout(5 * time.Second) {
			t.Fatal("reconnect: no CONNACK")
		}
		if how == "delete" && tok.Error() == nil {
			c.Disconnect(0)
			t.Fatal("a deleted key reconnected")
		}
		if how == "demote" {
			if tok.Error() != nil {
				t.Fatalf("demoted key refused: %v", tok.Error())
			}
			c.Disconnect(0)
		}
	}
	// Changing roles is for admins, and audited.
	var k struct {
		ID string `json:"id"`
	}
	w.do(w.T1.Admin, "POST", "/v1/apikeys", map[string]any{"name": "x", "role": "readonly"}, 201).JSON(t, &k)
	w.do(w.T1.Operator, "PATCH", "/v1/apikeys/"+k.ID, map[string]any{"role": "admin"}, 403)
	w.do(w.T2.Admin, "PATCH", "/v1/apikeys/"+k.ID, map[string]any{"role": "admin"}, 404)
	w.do(w.T1.Admin, "PATCH", "/v1/apikeys/"+k.ID, map[string]any{"role": "root"}, 400)
	var audit struct {
		Entries []struct {
			Action string `json:"action"`
		} `json:"entries"`
	}
	w.do(w.T1.Admin, "GET", "/v1/audit?action=apikey.update", nil, 200).JSON(t, &audit)
	if len(audit.Entries) == 0 {
		t.Error("role change not audited")
	}
}

// --- item 16: the last admin key ---

// TestRightsLastAdminKeyStays: an account's last admin key can be neither
// deleted nor demoted.
func TestRightsLastAdminKeyStays(t *testing.T) {
	w := newWorld(t)
	kid, _, _ := strings.Cut(w.T2.Admin, ".")
	w.do(w.T2.Admin, "DELETE", "/v1/apikeys/"+kid, nil, 409)
	w.do(w.T2.Admin, "PATCH", "/v1/apikeys/"+kid, map[string]any{"role": "operator"}, 409)
	var k struct {
		Token string `json:"token"`
	}
	w.do(w.T2.Admin, "POST", "/v1/apikeys", map[string]any{"name": "second", "role": "admin"}, 201).JSON(t, &k)
	w.do(w.T2.Admin, "PATCH", "/v1/apikeys/"+kid, map[string]any{"role": "operator"}, 200)
	second, _, _ := strings.Cut(k.Token, ".")
	w.do(k.Token, "DELETE", "/v1/apikeys/"+second, nil, 409)
	w.do(k.Token, "PATCH", "/v1/apikeys/"+kid, map[string]any{"role": "admin"}, 200)
	w.do(k.Token, "DELETE", "/v1/apikeys/"+second, nil, 204)
}

// --- item 17: persistent sessions of disabled or deleted devices ---

// TestRightsDisabledDeviceLosesPersistentSession: a device's persistent
// session and its queued messages do not survive a disable (or a delete
// and re-creation).
func TestRightsDisabledDeviceLosesPersistentSession(t *testing.T) {
	for _, how := range []string{"disable", "delete"} {
		t.Run(how, func(t *testing.T) {
			w := newWorld(t)
			pk := w.T1.Direct.ProductKey
			d := w.T1.DevA
			queued := "/" + pk + "/devA/user/queued"
			c := connect(t, w.deviceOptions(d).SetCleanSession(false))
			mustSubscribe(t, c, queued, newInbox())
			c.Disconnect(50)
			app := w.app(t, w.T1.Operator)
			publish(t, app, queued, "held for the old session")
			base := "/v1/products/" + pk + "/devices/devA"
			if how == "disable" {
				w.do(w.T1.Operator, "POST", base+":disable", nil, 200)
				w.do(w.T1.Operator, "POST", base+":enable", nil, 200)
			} else {
				w.do(w.T1.Operator, "DELETE", base, nil, 204)
				w.do(w.T1.Admin, "POST", "/v1/products/"+pk+"/devices", map[string]any{"deviceName": "devA"}, 201).JSON(t, &d)
			}
			in := newInbox()
			o := w.deviceOptions(d).SetCleanSession(false).SetDefaultPublishHandler(in.handler)
			c2 := paho.NewClient(o)
			tok := c2.Connect()
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("reconnect: %v", tok.Error())
			}
			t.Cleanup(func() { c2.Disconnect(50) })
			if tok.(*paho.ConnectToken).SessionPresent() {
				t.Error("session present after " + how)
			}
			fence := "/" + pk + "/devA/user/fence"
			mustSubscribe(t, c2, fence, in)
			publish(t, app, fence, "fence")
			rightsNone(t, "queued for the old session", in.until(t, fence), anyMsg)
		})
	}
}

// --- rights revoked while a session keeps publishing (the rights cache) ---

// rightsKeepPublishing publishes on topic from c at QoS 0 every 500 µs, each
// payload "before-N" until revoked is set and "after-N" from then on, until
// it has published afterN of those or the connection ends. The returned
// function waits for it to stop.
func rightsKeepPublishing(c paho.Client, topic string, revoked *atomic.Bool, afterN int) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		after := 0
		for i := 0; after < afterN && c.IsConnectionOpen(); i++ {
			label := "before"
			if revoked.Load() {
				label = "after"
				after++
			}
			c.Publish(topic, 0, false, fmt.Sprintf("%s-%d", label, i))
			time.Sleep(500 * time.Microsecond)
		}
	}()
	return func() { <-done }
}

// rightsWaitBefore waits for a "before-" message: the right works and the
// session's decision for the topic is cached.
func rightsWaitBefore(t testing.TB, in *inbox) {
	t.Helper()
	for {
		if strings.HasPrefix(string(in.next(t).Payload()), "before-") {
			return
		}
	}
}

// afterMsg flags a message published after the revocation was acknowledged.
func afterMsg(m paho.Message) bool { return strings.HasPrefix(string(m.Payload()), "after-") }

// TestRightsRevokedWhilePublishing: a device (or gateway) publishing on
// one topic again and again loses the right from the first publish after
// the change that revokes it was acknowledged: its product's topic class
// deleted, its sub-device removed from its topology, the device disabled.
// Its account's application, subscribed to the topic, receives nothing
// published after the acknowledgement.
func TestRightsRevokedWhilePublishing(t *testing.T) {
	t.Run("topic class deleted", func(t *testing.T) {
		w := newWorld(t)
		d := w.T1.DevA
		topic := "/" + d.ProductKey + "/" + d.DeviceName + "/user/telemetry"
		fence := "/sys/" + d.ProductKey + "/" + d.DeviceName + "/thing/event/property/post"
		app, in := w.app(t, w.T1.Operator), newInbox()
		mustSubscribe(t, app, topic, in)
		mustSubscribe(t, app, fence, in)
		dev := w.device(t, d)
		var revoked atomic.Bool
		wait := rightsKeepPublishing(dev, topic, &revoked, 100)
		rightsWaitBefore(t, in)
		w.do(w.T1.Operator, "DELETE", "/v1/products/"+d.ProductKey+"/topic-classes/%23", nil, 204) // its one class: no /user/ topic left
		revoked.Store(true)
		wait()
		publish(t, dev, fence, `{"id":"fence"}`)
		rightsNone(t, "after the class was deleted", in.until(t, fence), afterMsg)
	})
	t.Run("sub-device removed from the gateway", func(t *testing.T) {
		w := newWorld(t)
		gw := w.device(t, w.T1.GW)
		gin := newInbox()
		mustSubscribe(t, gw, "/sys/+/+/#", gin)
		mustSubscribe(t, gw, "/ext/session/+/+/#", gin)
		g := w.T1.GW.ProductKey + "/" + w.T1.GW.DeviceName
		wildGwCall(t, gw, gin, "/sys/"+g+"/thing/topo/add", []any{wildSubSign(w.T1.Sub1)})
		wildGwCall(t, gw, gin, "/ext/session/"+g+"/combine/login", wildSubSign(w.T1.Sub1))
		s := w.T1.Sub1
		topic := "/" + s.ProductKey + "/" + s.DeviceName + "/user/telemetry"
		fence := "/" + g + "/user/fence"
		app, in := w.app(t, w.T1.Operator), newInbox()
		mustSubscribe(t, app, topic, in)
		mustSubscribe(t, app, fence, in)
		var revoked atomic.Bool
		wait := rightsKeepPublishing(gw, topic, &revoked, 100)
		rightsWaitBefore(t, in)
		w.do(w.T1.Operator, "DELETE", "/v1/products/"+w.T1.GW.ProductKey+"/devices/"+w.T1.GW.DeviceName+"/subdevices",
			map[string]any{"subdevices": []map[string]string{{"productKey": s.ProductKey, "deviceName": s.DeviceName}}}, 200)
		revoked.Store(true)
		wait()
		publish(t, gw, fence, "fence")
		rightsNone(t, "after the sub-device was removed", in.until(t, fence), afterMsg)
	})
	t.Run("device disabled", func(t *testing.T) {
		w := newWorld(t)
		d := w.T1.DevA
		topic := "/" + d.ProductKey + "/" + d.DeviceName + "/user/telemetry"
		fence := "/" + d.ProductKey + "/" + w.T1.DevB.DeviceName + "/user/fence"
		app, in := w.app(t, w.T1.Operator), newInbox()
		mustSubscribe(t, app, topic, in)
		mustSubscribe(t, app, fence, in)
		dev, lost := rightsLost(t, w.deviceOptions(d))
		before := w.rightsConns(t)
		var revoked atomic.Bool
		wait := rightsKeepPublishing(dev, topic, &revoked, 1<<30) // until the kick closes it
		rightsWaitBefore(t, in)
		w.do(w.T1.Operator, "POST", "/v1/products/"+d.ProductKey+"/devices/"+d.DeviceName+":disable", nil, 200)
		revoked.Store(true)
		rightsWaitLost(t, lost, "disabled device")
		wait()
		// Its session has ended (every publish it read is routed): a fence
		// from another client now arrives after anything it published.
		deadline := time.Now().Add(5 * time.Second)
		for w.rightsConns(t) >= before {
			if time.Now().After(deadline) {
				t.Fatal("the disabled device's session did not end within 5 s")
			}
			time.Sleep(time.Millisecond)
		}
		publish(t, app, fence, "fence")
		rightsNone(t, "after the device was disabled", in.until(t, fence), afterMsg)
	})
}
