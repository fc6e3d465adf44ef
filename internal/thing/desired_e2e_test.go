package thing_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
)

type desiredList struct {
	Desired []struct {
		Identifier string
		Value      json.RawMessage
		Version    int64
		Delivered  int64 `json:"deliveredVersion"`
	}
}

func (e env) desired(t *testing.T) desiredList {
	t.Helper()
	var l desiredList
	e.s.Admin("GET", "/v1/products/"+e.pk+"/devices/thermo-01/desired-properties", nil, 200).JSON(t, &l)
	return l
}

// TestDesiredValues: an operator's desired value reaches an online device
// at once as a property set; its 200 answer marks the version delivered;
// the device reads values with desired.get and clears the version it
// applied with desired.delete (a stale version clears nothing); values
// outside the model and stale versions are refused and change nothing.
func TestDesiredValues(t *testing.T) {
	e := setup(t)
	path := "/v1/products/" + e.pk + "/devices/thermo-01/desired-properties"
	if r := e.s.Do(e.s.AdminKey, "PUT", path, `{"values":{"TargetTemp":99}}`); r.Status != 400 || !strings.Contains(string(r.Body), "TargetTemp") {
		t.Fatalf("a value outside the model: %d %s", r.Status, r.Body)
	}
	if r := e.s.Do(e.s.AdminKey, "PUT", path, `{"values":{"Temperature":20}}`); r.Status != 400 {
		t.Fatalf("a read-only property: %d %s", r.Status, r.Body)
	}
	e.s.Admin("PUT", path, `{"values":{"TargetTemp":25}}`, 200)
	set := e.next(t, e.topic("thing/service/property/set"))
	params, _ := set["params"].(map[string]any)
	if set["method"] != "thing.service.property.set" || params["TargetTemp"] != 25.0 || len(params) != 1 {
		t.Fatalf("the online device got %v", set)
	}
	if err := e.c.Publish(context.Background(), e.topic("thing/service/property/set_reply"), 1, []byte(`{"id":"`+set["id"].(string)+`","code":200,"data":{}}`)); err != nil {
		t.Fatal(err)
	}
	// The acknowledgement is recorded (read back: the API answers after it).
	for i := 0; ; i++ {
		l := e.desired(t)
		if len(l.Desired) == 1 && l.Desired[0].Delivered == 1 {
			break
		}
		if i == 200 {
			t.Fatalf("delivery not recorded: %+v", l)
		}
		e.post(t, "thing/property/desired/get", "fence", `[]`) // one round trip through the broker before looking again
	}
	if r := e.s.Do(e.s.AdminKey, "PUT", path, `{"values":{"TargetTemp":26},"versions":{"TargetTemp":0}}`); r.Status != 409 || !strings.Contains(string(r.Body), "version_conflict") {
		t.Fatalf("a stale version: %d %s", r.Status, r.Body)
	}
	e.s.Admin("PUT", path, `{"values":{"TargetTemp":26},"versions":{"TargetTemp":1}}`, 200)
	e.next(t, e.topic("thing/service/property/set")) // version 2, unanswered
	r := e.post(t, "thing/property/desired/get", "g1", `["TargetTemp","FanLevel"]`)
	data, _ := r["data"].(map[string]any)
	tt, _ := data["TargetTemp"].(map[string]any)
	if r["code"] != 200.0 || r["id"] != "g1" || tt["value"] != 26.0 || tt["version"] != 2.0 || len(data) != 1 {
		t.Fatalf("desired.get: %v", r)
	}
	if r := e.post(t, "thing/property/desired/delete", "d1", `{"TargetTemp":{"version":1}}`); r["code"] != 200.0 {
		t.Fatalf("desired.delete of a stale version: %v", r)
	}
	if l := e.desired(t); len(l.Desired) != 1 || l.Desired[0].Version != 2 {
		t.Fatalf("a stale delete removed the value: %+v", l)
	}
	if r := e.post(t, "thing/property/desired/delete", "d2", `{"TargetTemp":{"version":2}}`); r["code"] != 200.0 {
		t.Fatalf("desired.delete: %v", r)
	}
	if l := e.desired(t); len(l.Desired) != 0 {
		t.Fatalf("after the device deleted it: %+v", l)
	}
	if r := e.post(t, "thing/property/desired/delete", "d3", `"nonsense"`); r["code"] != 460.0 || r["id"] != "d3" {
		t.Fatalf("bad params: %v", r)
	}
}

// TestDesiredReachesADeviceThatSubscribesLater: a device without _ss=1
// subscribes after its CONNACK, too late for the delivery at session
// start; its SUBSCRIBE to the property-set topic brings the desired value
// set while it was away.
func TestDesiredReachesADeviceThatSubscribesLater(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("thermo", nil)
	model, _ := os.ReadFile("testdata/model.json")
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/tsl", string(model), 200)
	d := s.CreateDevice(p.ProductKey, "thermo-01")
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/devices/thermo-01/desired-properties", map[string]any{"values": map[string]any{"TargetTemp": 24}}, 200)
	c, err := device.Connect(context.Background(), device.Options{Broker: "tcp://" + s.App.Broker().Addr("tcp"),
		Triple: device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sets := make(chan device.Message, 4)
	if err := c.Subscribe(context.Background(), "/sys/"+d.ProductKey+"/"+d.DeviceName+"/thing/service/#", 1, func(m device.Message) { sets <- m }); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sets:
		if !strings.Contains(string(m.Payload), `"TargetTemp":24`) {
			t.Fatalf("got %s", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the desired value never reached a device that subscribed after connecting")
	}
}
