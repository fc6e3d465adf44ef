package hostile_test

import (
	"encoding/json"
	"testing"
)

// TestHTTPGatewayRequestsAndRRPCOfAnotherAccount: a tenant's keys cannot
// send another account's gateway thing.topo.add.notify or
// thing.gateway.permit, read or accept its found sub-devices, nor make a
// custom-topic RRPC to its devices (404, as if they did not exist);
// within the account a readonly key only reads. A gateway cannot report
// another account's product as found (6250) nor unregister another
// account's sub-device (6100), which stays.
func TestHTTPGatewayRequestsAndRRPCOfAnotherAccount(t *testing.T) {
	w := newWorld(t)
	gw1 := "/v1/products/" + w.T1.Gateway.ProductKey + "/devices/" + w.T1.GW.DeviceName
	gw2 := "/v1/products/" + w.T2.Gateway.ProductKey + "/devices/" + w.T2.GW.DeviceName
	sub1 := []map[string]string{{"productKey": w.T1.Sub1.ProductKey, "deviceName": w.T1.Sub1.DeviceName}}
	rrpc := "/v1/products/" + w.T1.Direct.ProductKey + "/devices/" + w.T1.DevA.DeviceName + "/rrpc"
	for _, a := range []struct {
		name, token, method, path string
		body                      any
		status                    int
	}{
		{"anonymous notifies", "", "POST", gw1 + "/subdevices:notify-add", map[string]any{"subdevices": sub1}, 401},
		{"other admin notifies", w.T2.Admin, "POST", gw1 + "/subdevices:notify-add", map[string]any{"subdevices": sub1}, 404},
		{"other admin notifies its gateway of our sub-device", w.T2.Admin, "POST", gw2 + "/subdevices:notify-add", map[string]any{"subdevices": sub1}, 404},
		{"other operator permits", w.T2.Operator, "POST", gw1 + "/subdevices:permit", map[string]any{"productKey": w.T1.Sub.ProductKey, "time": 60}, 404},
		{"other admin permits our product on its gateway", w.T2.Admin, "POST", gw2 + "/subdevices:permit", map[string]any{"productKey": w.T1.Sub.ProductKey, "time": 60}, 404},
		{"other readonly reads found", w.T2.Readonly, "GET", gw1 + "/found", nil, 404},
		{"other admin accepts", w.T2.Admin, "POST", gw1 + "/found:accept", map[string]any{"subdevices": sub1}, 404},
		{"other admin accepts ours on its gateway", w.T2.Admin, "POST", gw2 + "/found:accept", map[string]any{"subdevices": sub1}, 404},
		{"own readonly notifies", w.T1.Readonly, "POST", gw1 + "/subdevices:notify-add", map[string]any{"subdevices": sub1}, 403},
		{"own readonly permits", w.T1.Readonly, "POST", gw1 + "/subdevices:permit", map[string]any{"productKey": w.T1.Sub.ProductKey, "time": 60}, 403},
		{"own readonly accepts", w.T1.Readonly, "POST", gw1 + "/found:accept", map[string]any{"subdevices": sub1}, 403},
		{"own readonly reads found", w.T1.Readonly, "GET", gw1 + "/found", nil, 200},
		{"anonymous RRPC", "", "POST", rrpc, map[string]any{"topic": "user/get", "payload": "x"}, 401},
		{"other admin RRPC", w.T2.Admin, "POST", rrpc, map[string]any{"topic": "user/get", "payload": "x"}, 404},
		{"own readonly RRPC", w.T1.Readonly, "POST", rrpc, map[string]any{"topic": "user/get", "payload": "x"}, 403},
	} {
		if r := w.S.Do(a.token, a.method, a.path, a.body); r.Status != a.status {
			t.Errorf("%s: %d %s, want %d", a.name, r.Status, r.Body, a.status)
		}
	}

	// Tenant two's gateway, over MQTT.
	c := w.device(t, w.T2.GW)
	in := newInbox()
	mustSubscribe(t, c, "/sys/"+w.T2.GW.ProductKey+"/"+w.T2.GW.DeviceName+"/#", in)
	call := func(rest string, params any) map[string]any {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"id": rest, "version": "1.0", "params": params})
		topic := "/sys/" + w.T2.GW.ProductKey + "/" + w.T2.GW.DeviceName + "/" + rest
		publish(t, c, topic, string(body))
		for {
			m := in.next(t)
			if m.Topic() == topic+"_reply" {
				var r map[string]any
				json.Unmarshal(m.Payload(), &r)
				return r
			}
		}
	}
	if r := call("thing/list/found", sub1); r["code"] != float64(6250) {
		t.Errorf("list.found of another account's product: %v", r)
	}
	r := call("thing/sub/unregister", sub1)
	per, _ := r["data"].([]any)
	if len(per) != 1 || per[0].(map[string]any)["code"] != float64(6100) {
		t.Errorf("sub.unregister of another account's sub-device: %v", r)
	}
	w.do(w.T1.Admin, "GET", "/v1/products/"+w.T1.Sub1.ProductKey+"/devices/"+w.T1.Sub1.DeviceName, nil, 200)
	var found struct{ Found []any }
	w.do(w.T2.Admin, "GET", gw2+"/found", nil, 200).JSON(t, &found)
	if len(found.Found) != 0 {
		t.Errorf("tenant two's gateway found %v", found.Found)
	}
}
