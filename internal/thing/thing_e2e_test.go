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

type env struct {
	s   *apptest.Server
	pk  string
	dev apptest.Device
	c   *device.Client
	in  chan device.Message
}

func setup(t *testing.T) env {
	s := apptest.Start(t)
	p := s.CreateProduct("thermo", nil)
	model, _ := os.ReadFile("testdata/model.json")
	if r := s.Do(s.AdminKey, "PUT", "/v1/products/"+p.ProductKey+"/tsl", `{"properties":[{"identifier":"x-y","dataType":{"type":"int"}}]}`); r.Status != 400 || !strings.Contains(string(r.Body), "properties[0].identifier") {
		t.Fatalf("bad model: %d %s", r.Status, r.Body)
	}
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/tsl", string(model), 200)
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/tsl", nil, 200)
	d := s.CreateDevice(p.ProductKey, "thermo-01")
	e := env{s: s, pk: p.ProductKey, dev: d, in: make(chan device.Message, 100)}
	var err error
	e.c, err = device.Connect(context.Background(), device.Options{Broker: "tcp://" + s.App.Broker().Addr("tcp"),
		Triple: device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.c.Close)
	if err := e.c.Subscribe(context.Background(), "/sys/"+d.ProductKey+"/"+d.DeviceName+"/#", 1, func(m device.Message) { e.in <- m }); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e env) topic(rest string) string { return "/sys/" + e.pk + "/" + e.dev.DeviceName + "/" + rest }

func (e env) next(t *testing.T, topic string) map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-e.in:
			if m.Topic == topic {
				var v map[string]any
				json.Unmarshal(m.Payload, &v)
				return v
			}
		case <-deadline:
			t.Fatalf("nothing on %s", topic)
		}
	}
}

func (e env) post(t *testing.T, rest, id, params string) map[string]any {
	t.Helper()
	if err := e.c.Publish(context.Background(), e.topic(rest), 1, []byte(`{"id":"`+id+`","version":"1.0","params":`+params+`}`)); err != nil {
		t.Fatal(err)
	}
	return e.next(t, e.topic(rest)+"_reply")
}

func TestPropertyAndEventPostsAreChecked(t *testing.T) {
	e := setup(t)
	r := e.post(t, "thing/event/property/post", "1", `{"Temperature": 21.5, "Mode": {"value": 1, "time": 1524448722000}}`)
	if r["code"].(float64) != 200 || r["id"] != "1" {
		t.Fatalf("good post: %v", r)
	}
	r = e.post(t, "thing/event/property/post", "2", `{"Temperature": "hot", "Mode": 2}`)
	if r["code"].(float64) != 6302 || !strings.Contains(r["message"].(string), "Temperature") {
		t.Fatalf("bad post: %v", r)
	}
	r = e.post(t, "thing/event/property/post", "3", `{"Humidity": 50}`)
	if r["code"].(float64) != 6301 {
		t.Fatalf("unknown property: %v", r)
	}
	var props struct {
		Properties []struct {
			Identifier string
			Value      json.RawMessage
			Time       time.Time
		}
	}
	e.s.Admin("GET", "/v1/products/"+e.pk+"/devices/thermo-01/properties", nil, 200).JSON(t, &props)
	got := map[string]string{}
	for _, p := range props.Properties {
		got[p.Identifier] = string(p.Value)
	}
	if got["Temperature"] != "21.5" || got["Mode"] != "1" || len(got) != 2 {
		t.Fatalf("stored properties (the bad post must change nothing): %v", got)
	}
	if r := e.post(t, "thing/event/Overheat/post", "4", `{"value": {"Temperature": 99}, "time": 1524448722000}`); r["code"].(float64) != 200 {
		t.Fatalf("event: %v", r)
	}
	if r := e.post(t, "thing/event/Overheat/post", "5", `{"value": {"Temperature": 999}}`); r["code"].(float64) != 6303 {
		t.Fatalf("bad event: %v", r)
	}
	if err := e.c.Publish(context.Background(), e.topic("thing/event/property/post"), 1, []byte(`{"id":"6","params":`)); err != nil {
		t.Fatal(err)
	}
	if r := e.next(t, e.topic("thing/event/property/post")+"_reply"); r["code"].(float64) != 460 {
		t.Fatalf("malformed: %v", r)
	}
}

func TestOperatorSetAndServices(t *testing.T) {
	e := setup(t)
	base := "/v1/products/" + e.pk + "/devices/thermo-01"
	// Property set: checked, then delivered.
	if r := e.s.Do(e.s.AdminKey, "PUT", base+"/properties", map[string]any{"params": map[string]any{"Temperature": 20}}); r.Status != 400 || !strings.Contains(string(r.Body), "read-only") {
		t.Fatalf("read-only set: %d %s", r.Status, r.Body)
	}
	e.s.Admin("PUT", base+"/properties", map[string]any{"params": map[string]any{"TargetTemp": 22.5}}, 200)
	if v := e.next(t, e.topic("thing/service/property/set")); v["method"] != "thing.service.property.set" {
		t.Fatalf("set: %v", v)
	}
	// Async service.
	var res struct {
		MessageID string
		Replied   bool
		Code      int
		Data      map[string]any
	}
	e.s.Admin("POST", base+"/services/Reboot", map[string]any{"params": map[string]any{"DelaySeconds": 5}}, 200).JSON(t, &res)
	if res.MessageID == "" || res.Replied {
		t.Fatalf("async: %+v", res)
	}
	e.next(t, e.topic("thing/service/Reboot"))
	if r := e.s.Do(e.s.AdminKey, "POST", base+"/services/Reboot", map[string]any{"params": map[string]any{"DelaySeconds": 9999}}); r.Status != 400 {
		t.Fatalf("bad input: %d %s", r.Status, r.Body)
	}
	// Sync service (RRPC): the device answers.
	e.c.Subscribe(context.Background(), e.topic("rrpc/request/+"), 1, func(m device.Message) {
		var req struct{ ID string }
		json.Unmarshal(m.Payload, &req)
		if strings.Contains(string(m.Payload), `"Offset":4`) {
			return // this one the device ignores
		}
		id := m.Topic[strings.LastIndexByte(m.Topic, '/')+1:]
		e.c.Publish(context.Background(), e.topic("rrpc/response/"+id), 1, []byte(`{"id":"`+req.ID+`","code":200,"data":{"Applied":1},"message":"success"}`))
	})
	e.s.Admin("POST", base+"/services/Calibrate", map[string]any{"params": map[string]any{"Offset": 1.5}, "timeoutMs": 3000}, 200).JSON(t, &res)
	if !res.Replied || res.Code != 200 || res.Data["Applied"] != float64(1) {
		t.Fatalf("sync: %+v", res)
	}
	start := time.Now()
	if r := e.s.Do(e.s.AdminKey, "POST", base+"/services/Calibrate", map[string]any{"params": map[string]any{"Offset": 4}, "timeoutMs": 300}); r.Status != 504 {
		t.Fatalf("no answer: %d %s", r.Status, r.Body)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	// An offline device cannot be called.
	e.c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var d struct{ Status string }
		e.s.Admin("GET", base, nil, 200).JSON(t, &d)
		if d.Status == "offline" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device still %s after its session closed", d.Status)
		}
	}
	if r := e.s.Do(e.s.AdminKey, "POST", base+"/services/Calibrate", map[string]any{"params": map[string]any{"Offset": 1}}); r.Status != 409 {
		t.Fatalf("offline: %d %s", r.Status, r.Body)
	}
}

// TestLongAndNumericIDsAreEchoed: the Node SDK's long ids and numeric ids
// come back exactly, as strings, in replies and error replies alike.
func TestLongAndNumericIDsAreEchoed(t *testing.T) {
	e := setup(t)
	long := "1|exp-topic|" + e.topic("thing/event/property/post_reply")
	if r := e.post(t, "thing/event/property/post", long, `{"Temperature": 21.5}`); r["code"].(float64) != 200 || r["id"] != long {
		t.Fatalf("long id: %v", r)
	}
	if r := e.post(t, "thing/event/property/post", long, `{"Temperature": 500}`); r["code"].(float64) != 6303 || r["id"] != long {
		t.Fatalf("long id, error: %v", r)
	}
	tooLong := strings.Repeat("x", 257)
	if r := e.post(t, "thing/event/property/post", tooLong, `{}`); r["code"].(float64) != 460 || r["id"] != tooLong {
		t.Fatalf("over-long id: %v", r)
	}
	if err := e.c.Publish(context.Background(), e.topic("thing/event/property/post"), 1, []byte(`{"id":12345678901234567890,"params":{"Temperature":1}}`)); err != nil {
		t.Fatal(err)
	}
	if r := e.next(t, e.topic("thing/event/property/post")+"_reply"); r["code"].(float64) != 200 || r["id"] != "12345678901234567890" {
		t.Fatalf("numeric id: %v", r)
	}
}

// TestDSLTemplateEndToEnd: a device asks for its product's TSL.
func TestDSLTemplateEndToEnd(t *testing.T) {
	e := setup(t)
	for _, rest := range []string{"thing/dsltemplate/get", "thing/dynamicTsl/get"} {
		r := e.post(t, rest, "1|exp-topic|x", `"{}"`)
		data, _ := r["data"].(map[string]any)
		if r["code"].(float64) != 200 || r["id"] != "1|exp-topic|x" || data["properties"] == nil {
			t.Fatalf("%s: %v", rest, r)
		}
	}
}

// TestBatchAndHistoryPostsEndToEnd: values of batch and history posts are
// stored at the device's times; pack posts for a device that is not a
// sub-device are refused entry by entry.
func TestBatchAndHistoryPostsEndToEnd(t *testing.T) {
	e := setup(t)
	r := e.post(t, "thing/event/property/batch/post", "1", `{"properties":{"Temperature":[{"value":20,"time":1700000000000},{"value":21,"time":1700000060000}]},"events":{"Overheat":[{"value":{"Temperature":99},"time":1700000000000}]}}`)
	if r["code"].(float64) != 200 {
		t.Fatalf("batch: %v", r)
	}
	// History: Mode is new; the old Temperature does not replace the newer one.
	r = e.post(t, "thing/event/property/history/post", "2", `[{"identity":{"productKey":"`+e.pk+`","deviceName":"thermo-01"},"properties":[{"Mode":{"value":2,"time":1600000000000},"Temperature":{"value":5,"time":1600000000000}}]}]`)
	if r["code"].(float64) != 200 {
		t.Fatalf("history: %v", r)
	}
	r = e.post(t, "thing/event/property/pack/post", "3", `{"subDevices":[{"identity":{"productKey":"`+e.pk+`","deviceName":"nobody"},"properties":{"Mode":1}}]}`)
	if r["code"].(float64) != 6401 {
		t.Fatalf("pack for a stranger: %v", r)
	}
	var props struct {
		Properties []struct {
			Identifier string
			Value      json.RawMessage
			Time       time.Time
		}
	}
	e.s.Admin("GET", "/v1/products/"+e.pk+"/devices/thermo-01/properties", nil, 200).JSON(t, &props)
	got := map[string]string{}
	for _, p := range props.Properties {
		got[p.Identifier] = string(p.Value) + "@" + p.Time.UTC().Format(time.RFC3339)
	}
	if got["Temperature"] != "21@2023-11-14T22:14:20Z" || got["Mode"] != "2@2020-09-13T12:26:40Z" || len(got) != 2 {
		t.Fatalf("stored %v", got)
	}
}

// TestDeviceInfoEndToEnd: tags set and deleted by the device are its
// attributes in the REST API.
func TestDeviceInfoEndToEnd(t *testing.T) {
	e := setup(t)
	if r := e.post(t, "thing/deviceinfo/update", "1", `[{"attrKey":"site","attrValue":"lab"},{"attrKey":"floor","attrValue":"3"}]`); r["code"].(float64) != 200 {
		t.Fatalf("update: %v", r)
	}
	if r := e.post(t, "thing/deviceinfo/delete", "2", `[{"attrKey":"floor"}]`); r["code"].(float64) != 200 {
		t.Fatalf("delete: %v", r)
	}
	if r := e.post(t, "thing/deviceinfo/update", "3", `[{"attrKey":"bad key","attrValue":"x"}]`); r["code"].(float64) != 460 {
		t.Fatalf("bad key: %v", r)
	}
	var d struct{ Attributes map[string]string }
	e.s.Admin("GET", "/v1/products/"+e.pk+"/devices/thermo-01", nil, 200).JSON(t, &d)
	if len(d.Attributes) != 1 || d.Attributes["site"] != "lab" {
		t.Fatalf("attributes %v", d.Attributes)
	}
}
