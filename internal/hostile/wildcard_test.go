package hostile_test

import (
	"encoding/json"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// Attacks through the wildcard filters stock SDKs use (issue 10 item 3):
// "+" may stand for the ProductKey and DeviceName, so every delivery is
// checked against its concrete topic.

// TestWildcardFiltersDeliverOnlyOwnTopics: account 1's devA subscribes
// /sys/+/+/# (and the other SDK filters); downlinks and corral's replies
// meant for devB of its own account and for both same-named devices of
// account 2 never reach it, its own do.
func TestWildcardFiltersDeliverOnlyOwnTopics(t *testing.T) {
	w := newWorld(t)
	a := w.device(t, w.T1.DevA)
	in := newInbox()
	for _, f := range []string{"/sys/+/+/#", "/ota/device/upgrade/+/+", "/shadow/get/+/+", "/ext/error/+/+", "/ext/ntp/+/+/response",
		"/ext/rrpc/+/sys/+/+/thing/service/+", "/+/+/user/#"} {
		mustSubscribe(t, a, f, in)
	}
	// Filters whose "#" stands before the device is named stay refused.
	for _, f := range []string{"/sys/#", "/sys/+/#", "#", "/ota/#", "/ext/rrpc/#"} {
		if code := subscribe(t, a, f, newInbox()); code < 0x80 {
			t.Errorf("devA subscribed to %s (code %#x)", f, code)
		}
	}
	app1, app2 := w.app(t, w.T1.Operator), w.app(t, w.T2.Operator)
	victims := []struct {
		app paho.Client
		d   apptest.Device
	}{{app1, w.T1.DevB}, {app2, w.T2.DevA}, {app2, w.T2.DevB}}
	for _, v := range victims {
		dev := v.d.ProductKey + "/" + v.d.DeviceName
		publish(t, v.app, "/sys/"+dev+"/thing/service/property/set", `{"id":"1","params":{"x":1}}`)
		publish(t, v.app, "/ota/device/upgrade/"+dev, `{"id":"1"}`)
		publish(t, v.app, "/ext/rrpc/7/sys/"+dev+"/thing/service/s", `{"id":"7"}`)
		publish(t, v.app, "/"+dev+"/user/get", `{"id":"u"}`)
		rightsSettle(t, v.app)
		// corral's answers to the victim's own requests.
		c := w.device(t, v.d)
		own := newInbox()
		mustSubscribe(t, c, "/sys/"+dev+"/thing/event/property/post_reply", own)
		publish(t, c, "/sys/"+dev+"/thing/event/property/post", `{"id":"p","params":{}}`)
		own.next(t)
		publish(t, c, "/ext/ntp/"+dev+"/request", `{"deviceSendTime":"1"}`)
		rightsSettle(t, c)
	}
	self := w.T1.DevA.ProductKey + "/" + w.T1.DevA.DeviceName
	publish(t, app1, "/sys/"+self+"/thing/service/property/set", `{"id":"fence"}`)
	rightsNone(t, "devA's wildcard filters", rightsUntilPayload(t, in, "fence"), func(m paho.Message) bool {
		return !strings.Contains(m.Topic(), self)
	})
}

// wildGwCall publishes a gateway request and waits for its reply code.
func wildGwCall(t *testing.T, c paho.Client, in *inbox, topic string, params any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"id": "1", "version": "1.0", "params": params})
	publish(t, c, topic, string(body))
	for {
		m := in.next(t)
		if m.Topic() != topic+"_reply" {
			continue
		}
		if !strings.Contains(string(m.Payload()), `"code":200`) {
			t.Fatalf("%s: %s", topic, m.Payload())
		}
		return
	}
}

// wildSubSign is what a gateway sends for a sub-device in topo.add and login.
func wildSubSign(d apptest.Device) map[string]any {
	return mqtttest.SubDeviceParams(d.ProductKey, d.DeviceName, d.DeviceSecret)
}

// TestWildcardGatewayGetsOnlyItsSubDevices: account 1's gateway
// subscribed to /sys/+/+/# receives its logged-in sub-device's downlinks,
// not those of account 2's same-named sub-device, nor of a device of its
// own account that is not its sub-device, nor its sub-device's once it
// logged out.
func TestWildcardGatewayGetsOnlyItsSubDevices(t *testing.T) {
	w := newWorld(t)
	gw := w.device(t, w.T1.GW)
	in := newInbox()
	mustSubscribe(t, gw, "/sys/+/+/#", in)
	mustSubscribe(t, gw, "/ext/session/+/+/#", in)
	g := w.T1.GW.ProductKey + "/" + w.T1.GW.DeviceName
	wildGwCall(t, gw, in, "/sys/"+g+"/thing/topo/add", []any{wildSubSign(w.T1.Sub1)})
	wildGwCall(t, gw, in, "/ext/session/"+g+"/combine/login", wildSubSign(w.T1.Sub1))
	app1, app2 := w.app(t, w.T1.Operator), w.app(t, w.T2.Operator)
	set := func(c paho.Client, d apptest.Device, payload string) {
		publish(t, c, "/sys/"+d.ProductKey+"/"+d.DeviceName+"/thing/service/property/set", payload)
	}
	set(app1, w.T1.Sub1, `{"id":"mine"}`)
	rightsUntilPayload(t, in, "mine")
	foreign := func(m paho.Message) bool {
		p := string(m.Payload())
		return strings.Contains(p, "theirs") || strings.Contains(p, "not-a-sub") || strings.Contains(p, "after-logout")
	}
	set(app2, w.T2.Sub1, `{"id":"theirs"}`)
	set(app1, w.T1.DevB, `{"id":"not-a-sub"}`)
	rightsSettle(t, app2)
	set(app1, w.T1.GW, `{"id":"fence1"}`)
	rightsNone(t, "gateway /sys/+/+/#", rightsUntilPayload(t, in, "fence1"), foreign)

	wildGwCall(t, gw, in, "/ext/session/"+g+"/combine/logout", map[string]any{"productKey": w.T1.Sub1.ProductKey, "deviceName": w.T1.Sub1.DeviceName})
	set(app1, w.T1.Sub1, `{"id":"after-logout"}`)
	set(app1, w.T1.GW, `{"id":"fence2"}`)
	rightsNone(t, "gateway after logout", rightsUntilPayload(t, in, "fence2"), foreign)
}
