package gateway_test

import (
	"encoding/json"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// connectStockGateway connects a gateway like a stock Link SDK build
// (_ss=1,gw=1: no SUBSCRIBE at all); every message it is delivered lands
// in msgs.
func connectStockGateway(t *testing.T, s *apptest.Server, d apptest.Device) *gwClient {
	t.Helper()
	return connectStockGatewayFlags(t, s, d, "_ss=1,gw=1")
}

func connectStockGatewayFlags(t *testing.T, s *apptest.Server, d apptest.Device, flags string) *gwClient {
	t.Helper()
	g := &gwClient{t: t, d: d, msgs: make(chan paho.Message, 1000)}
	cr := mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret, flags)
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID(cr.ClientID).
		SetUsername(cr.Username).SetPassword(cr.Password).SetAutoReconnect(false).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { g.msgs <- m })
	g.c = paho.NewClient(o)
	if err := apptest.ConnectMQTT(t, g.c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.c.Disconnect(0) })
	return g
}

// waitAll waits for one message on each topic, in any order (paho hands
// messages over concurrently).
func (g *gwClient) waitAll(topics ...string) map[string]paho.Message {
	g.t.Helper()
	got := map[string]paho.Message{}
	want := map[string]bool{}
	for _, tp := range topics {
		want[tp] = true
	}
	deadline := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case m := <-g.msgs:
			if want[m.Topic()] && got[m.Topic()] == nil {
				got[m.Topic()] = m
			}
		case <-deadline:
			g.t.Fatalf("got %d of %v", len(got), topics)
		}
	}
	return got
}

// method reads a request's method.
func method(t *testing.T, m paho.Message) string {
	t.Helper()
	var r struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		t.Fatal(err)
	}
	return r.Method + " " + string(r.Params)
}

// TestLifecycleDownlinks: when an operator disables, enables and deletes
// a logged-in sub-device, its gateway hears thing.disable / enable /
// delete on the sub-device's own topics, and thing.topo.change on its
// own, whether it subscribed to them itself (/sys/{subPk}/{subDn}/#) or
// relies on _ss=1. A disabled sub-device is logged out, and still hears
// thing.enable.
func TestLifecycleDownlinks(t *testing.T) {
	for _, tt := range []struct {
		name    string
		connect func(t *testing.T, s *apptest.Server, d apptest.Device) *gwClient
	}{
		{"explicit subscription", connectGateway},
		{"server-side subscription", connectStockGateway},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, 1)
			sub := f.subs[0]
			g := tt.connect(t, f.s, f.gw)
			if r := g.call("sys", "thing/topo/add", []any{subSign(sub)}); r.Code != 200 {
				t.Fatalf("topo.add: %+v", r)
			}
			if r := g.call("session", "combine/login", subSign(sub)); r.Code != 200 {
				t.Fatalf("login: %+v", r)
			}
			if tt.name == "explicit subscription" {
				g.sub("/sys/" + sub.ProductKey + "/" + sub.DeviceName + "/#")
			}
			subTopic := "/sys/" + sub.ProductKey + "/" + sub.DeviceName + "/thing/"
			change := "/sys/" + f.gw.ProductKey + "/" + f.gw.DeviceName + "/thing/topo/change"
			base := "/v1/products/" + sub.ProductKey + "/devices/" + sub.DeviceName
			for _, step := range []struct {
				method, path, what string
			}{
				{"POST", base + ":disable", "disable"},
				{"POST", base + ":enable", "enable"},
				{"DELETE", base, "delete"},
			} {
				want := 200
				if step.method == "DELETE" {
					want = 204
				}
				f.s.Admin(step.method, step.path, nil, want)
				got := g.waitAll(subTopic+step.what, change)
				if m := method(t, got[subTopic+step.what]); m != "thing."+step.what+" {}" {
					t.Errorf("%s: %s", step.what, m)
				}
			}
		})
	}
}

// TestGatewayRequestsAndFoundDevices: an operator asks a gateway to add a
// sub-device (thing.topo.add.notify) and permits a product
// (thing.gateway.permit); the gateway reports discovered sub-devices
// (thing.list.found), which the API lists and an operator accepts into
// its topology; the gateway unregisters one of its sub-devices
// (thing.sub.unregister), which is deleted.
func TestGatewayRequestsAndFoundDevices(t *testing.T) {
	f := setup(t, 3)
	g := connectGateway(t, f.s, f.gw)
	gwPath := "/v1/products/" + f.gw.ProductKey + "/devices/" + f.gw.DeviceName
	ref := func(d apptest.Device) map[string]string {
		return map[string]string{"productKey": d.ProductKey, "deviceName": d.DeviceName}
	}

	var sent struct{ MessageID, Topic string }
	f.s.Admin("POST", gwPath+"/subdevices:notify-add", map[string]any{"subdevices": []any{ref(f.subs[0])}}, 200).JSON(t, &sent)
	m := g.waitFor("/sys/" + f.gw.ProductKey + "/" + f.gw.DeviceName + "/thing/topo/add/notify")
	if got := method(t, m); got != `thing.topo.add.notify [{"productKey":"`+f.subs[0].ProductKey+`","deviceName":"`+f.subs[0].DeviceName+`"}]` || sent.Topic != m.Topic() {
		t.Errorf("notify: %s (sent %+v)", got, sent)
	}
	// The gateway answers, as the SDK does; corral takes it quietly.
	g.c.Publish(m.Topic()+"_reply", 1, false, `{"id":"`+sent.MessageID+`","code":200,"data":{}}`).Wait()

	f.s.Admin("POST", gwPath+"/subdevices:permit", map[string]any{"productKey": f.subProd.ProductKey, "time": 60}, 200)
	m = g.waitFor("/sys/" + f.gw.ProductKey + "/" + f.gw.DeviceName + "/thing/gateway/permit")
	if got := method(t, m); got != `thing.gateway.permit {"productKey":"`+f.subProd.ProductKey+`","time":60}` {
		t.Errorf("permit: %s", got)
	}
	for _, bad := range []struct {
		name string
		path string
		body any
		want int
	}{
		{"permit a direct product", gwPath + "/subdevices:permit", map[string]any{"productKey": f.gwProd.ProductKey, "time": 60}, 400},
		{"permit no time", gwPath + "/subdevices:permit", map[string]any{"productKey": f.subProd.ProductKey}, 400},
		{"permit another account's product", gwPath + "/subdevices:permit", map[string]any{"productKey": f.foreignSub.ProductKey, "time": 5}, 404},
		{"notify another account's device", gwPath + "/subdevices:notify-add", map[string]any{"subdevices": []any{ref(f.foreignSub)}}, 404},
		{"accept what was not found", gwPath + "/found:accept", map[string]any{"subdevices": []any{ref(f.subs[2])}}, 404},
	} {
		if r := f.s.Do(f.s.AdminKey, "POST", bad.path, bad.body); r.Status != bad.want {
			t.Errorf("%s: %d %s", bad.name, r.Status, r.Body)
		}
	}

	// Discovered sub-devices are listed, then one is accepted.
	if r := g.call("sys", "thing/list/found", []any{ref(f.subs[1]), ref(f.subs[2])}); r.Code != 200 {
		t.Fatalf("list.found: %+v", r)
	}
	if r := g.call("sys", "thing/list/found", []any{ref(f.foreignSub)}); r.Code != 6250 {
		t.Fatalf("list.found of another account's product: %+v", r)
	}
	var found struct {
		Found []struct{ ProductKey, DeviceName string }
	}
	f.s.Admin("GET", gwPath+"/found", nil, 200).JSON(t, &found)
	if len(found.Found) != 2 || found.Found[0].DeviceName != f.subs[1].DeviceName || found.Found[1].DeviceName != f.subs[2].DeviceName {
		t.Fatalf("found: %+v", found)
	}
	var subs struct{ Subdevices []apptest.Device }
	f.s.Admin("POST", gwPath+"/found:accept", map[string]any{"subdevices": []any{ref(f.subs[1])}}, 200).JSON(t, &subs)
	if len(subs.Subdevices) != 1 || subs.Subdevices[0].DeviceName != f.subs[1].DeviceName {
		t.Fatalf("accepted: %+v", subs)
	}
	g.waitFor("/sys/" + f.gw.ProductKey + "/" + f.gw.DeviceName + "/thing/topo/change")
	f.s.Admin("GET", gwPath+"/found", nil, 200).JSON(t, &found)
	if len(found.Found) != 1 || found.Found[0].DeviceName != f.subs[2].DeviceName {
		t.Fatalf("found after accepting: %+v", found)
	}

	// The gateway unregisters its sub-device, and one it does not hold.
	r := g.call("sys", "thing/sub/unregister", []any{ref(f.subs[1]), ref(f.subs[2])})
	var per []struct {
		DeviceName string
		Code       int
	}
	json.Unmarshal(r.Data, &per)
	if r.Code != 200 || len(per) != 2 || per[0].Code != 200 || per[1].Code != 6401 {
		t.Fatalf("sub.unregister: %+v %s", r, r.Data)
	}
	if got := f.s.Do(f.s.AdminKey, "GET", "/v1/products/"+f.subs[1].ProductKey+"/devices/"+f.subs[1].DeviceName, nil); got.Status != 404 {
		t.Errorf("unregistered sub-device: %d %s", got.Status, got.Body)
	}
	if got := f.s.Do(f.s.AdminKey, "GET", "/v1/products/"+f.subs[2].ProductKey+"/devices/"+f.subs[2].DeviceName, nil); got.Status != 200 {
		t.Errorf("sub-device of no topology: %d %s", got.Status, got.Body)
	}

	// An offline gateway cannot be asked.
	g.c.Disconnect(0)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r := f.s.Do(f.s.AdminKey, "POST", gwPath+"/subdevices:permit", map[string]any{"productKey": f.subProd.ProductKey, "time": 60})
		if r.Status == 409 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offline gateway: %d %s", r.Status, r.Body)
		}
	}
}

// TestSubDeviceSyncServiceForm: a sync service of a sub-device goes in the
// form its gateway's session asked for: v4 (/ext/rrpc/{id}/sys/{subPk}/
// {subDn}/thing/service/{id}, answered on the same topic) through an
// ext=3 gateway, v3 (/sys/…/rrpc/request/{id}) through another.
func TestSubDeviceSyncServiceForm(t *testing.T) {
	const model = `{"properties":[],"events":[],"services":[{"identifier":"Ping","name":"Ping","callType":"sync","method":"thing.service.Ping","inputData":[],"outputData":[]}]}`
	for _, tt := range []struct {
		name, flags string
		v4          bool
	}{
		{"v3 gateway", "_ss=1,gw=1,ext=0", false},
		{"v4 gateway", "_ss=1,gw=1,ext=3", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, 1)
			sub := f.subs[0]
			f.s.Admin("PUT", "/v1/products/"+f.subProd.ProductKey+"/tsl", model, 200)
			g := connectStockGatewayFlags(t, f.s, f.gw, tt.flags)
			if r := g.call("sys", "thing/topo/add", []any{subSign(sub)}); r.Code != 200 {
				t.Fatalf("topo.add: %+v", r)
			}
			if r := g.call("session", "combine/login", subSign(sub)); r.Code != 200 {
				t.Fatalf("login: %+v", r)
			}
			done := make(chan string, 1)
			go func() {
				for m := range g.msgs {
					var req struct{ ID string }
					json.Unmarshal(m.Payload(), &req)
					reply := `{"id":"` + req.ID + `","code":200,"data":{},"message":"pong"}`
					switch {
					case tt.v4 && m.Topic() == "/ext/rrpc/"+req.ID+"/sys/"+sub.ProductKey+"/"+sub.DeviceName+"/thing/service/Ping":
						g.c.Publish(m.Topic(), 1, false, reply)
					case !tt.v4 && m.Topic() == "/sys/"+sub.ProductKey+"/"+sub.DeviceName+"/rrpc/request/"+req.ID:
						g.c.Publish("/sys/"+sub.ProductKey+"/"+sub.DeviceName+"/rrpc/response/"+req.ID, 1, false, reply)
					default:
						continue
					}
					done <- m.Topic()
					return
				}
			}()
			var res struct {
				Replied bool
				Code    int
				Message string
			}
			f.s.Admin("POST", "/v1/products/"+sub.ProductKey+"/devices/"+sub.DeviceName+"/services/Ping", map[string]any{"timeoutMs": 5000}, 200).JSON(t, &res)
			if !res.Replied || res.Code != 200 || res.Message != "pong" {
				t.Fatalf("call: %+v", res)
			}
			t.Logf("request on %s", <-done)
		})
	}
}
