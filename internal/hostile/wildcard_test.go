package hostile_test

import (
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
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
