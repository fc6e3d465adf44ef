package thing_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// rawDevice is a paho device connected like a stock Link SDK build (the
// clientId flags given, _ss=1: no SUBSCRIBE for system topics) that
// answers every sync call it gets, in the form it came in, and records
// the topics of the requests.
type rawDevice struct {
	c    paho.Client
	reqs chan string
}

func connectRaw(t *testing.T, s *apptest.Server, d apptest.Device, flags string) *rawDevice {
	t.Helper()
	rd := &rawDevice{reqs: make(chan string, 20)}
	cr := mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret, flags)
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID(cr.ClientID).
		SetUsername(cr.Username).SetPassword(cr.Password).SetAutoReconnect(false).SetOrderMatters(false).
		SetDefaultPublishHandler(rd.answer)
	rd.c = paho.NewClient(o)
	if err := apptest.ConnectMQTT(t, rd.c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.c.Disconnect(50) })
	return rd
}

// answer answers v3 RRPC on rrpc/response/{id}, v4 RRPC on the request's
// own topic; a custom-topic request gets "pong:" and its payload back.
func (rd *rawDevice) answer(_ paho.Client, m paho.Message) {
	topic := m.Topic()
	var req struct {
		ID   string `json:"id"`
		Code *int   `json:"code"`
	}
	json.Unmarshal(m.Payload(), &req)
	switch {
	case strings.Contains(topic, "/rrpc/request/"):
		rd.reqs <- topic
		rd.c.Publish(strings.Replace(topic, "/request/", "/response/", 1), 1, false, `{"id":"`+req.ID+`","code":200,"data":{"Applied":1},"message":"v3"}`)
	case strings.HasPrefix(topic, "/ext/rrpc/") && strings.Contains(topic, "/sys/"):
		if req.Code != nil {
			return // never delivered: NoLocal
		}
		rd.reqs <- topic
		rd.c.Publish(topic, 1, false, `{"id":"`+req.ID+`","code":200,"data":{"Applied":1},"message":"v4"}`)
	case strings.HasPrefix(topic, "/ext/rrpc/"):
		rd.reqs <- topic
		rd.c.Publish(topic, 1, false, append([]byte("pong:"), m.Payload()...))
	}
}

func (rd *rawDevice) next(t *testing.T) string {
	t.Helper()
	select {
	case topic := <-rd.reqs:
		return topic
	case <-time.After(5 * time.Second):
		t.Fatal("no request reached the device")
		return ""
	}
}

// TestSyncServiceFormsBySession: a sync service reaches a v3 device
// (ext=0) on /sys/…/rrpc/request/{id} and a v4 device (ext=3) on
// /ext/rrpc/{id}/sys/…/thing/service/Calibrate; both answers come back
// to the caller.
func TestSyncServiceFormsBySession(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("thermo", nil)
	model, _ := os.ReadFile("testdata/model.json")
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/tsl", string(model), 200)
	for _, tt := range []struct {
		name, flags, want, message string
	}{
		{"dev-v3", "_ss=1,ext=0", "/sys/" + p.ProductKey + "/dev-v3/rrpc/request/", "v3"},
		{"dev-v4", "_ss=1,ext=3", "", "v4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := s.CreateDevice(p.ProductKey, tt.name)
			rd := connectRaw(t, s, d, tt.flags)
			var res struct {
				MessageID string
				Replied   bool
				Code      int
				Message   string
			}
			s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices/"+tt.name+"/services/Calibrate",
				map[string]any{"params": map[string]any{"Offset": 1.5}, "timeoutMs": 5000}, 200).JSON(t, &res)
			if !res.Replied || res.Code != 200 || res.Message != tt.message {
				t.Fatalf("call: %+v", res)
			}
			got := rd.next(t)
			want := tt.want + res.MessageID
			if tt.want == "" {
				want = "/ext/rrpc/" + res.MessageID + "/sys/" + p.ProductKey + "/dev-v4/thing/service/Calibrate"
			}
			if got != want {
				t.Fatalf("request on %s, want %s", got, want)
			}
		})
	}
}

// TestCustomTopicRRPC: an operator's payload reaches the device on
// /ext/rrpc/{id}/{pk}/{dn}/user/cmd/… and the device's raw answer on the
// same topic is returned; a topic the device may not subscribe to, a
// wildcard and an offline device are refused.
func TestCustomTopicRRPC(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("meter", map[string]any{"topicClasses": []map[string]string{
		{"suffix": "cmd/+", "operation": "sub"}, {"suffix": "update", "operation": "pub"}}})
	d := s.CreateDevice(p.ProductKey, "mtr1")
	rd := connectRaw(t, s, d, "_ss=1,ext=3")
	filter := "/ext/rrpc/+/" + p.ProductKey + "/mtr1/user/cmd/+"
	if tok := rd.c.Subscribe(filter, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	path := "/v1/products/" + p.ProductKey + "/devices/mtr1/rrpc"
	var res struct {
		RRPCID, Topic, Payload, PayloadBase64 string
	}
	s.Admin("POST", path, map[string]any{"topic": "user/cmd/open", "payload": "AAEC", "payloadEncoding": "base64"}, 200).JSON(t, &res)
	if res.Payload != "pong:\x00\x01\x02" || res.PayloadBase64 != "cG9uZzoAAQI=" {
		t.Fatalf("answer: %+v", res)
	}
	wantTopic := "/ext/rrpc/" + res.RRPCID + "/" + p.ProductKey + "/mtr1/user/cmd/open"
	if got := rd.next(t); got != wantTopic || res.Topic != wantTopic {
		t.Fatalf("request on %s (reported %s), want %s", got, res.Topic, wantTopic)
	}
	for _, tt := range []struct {
		name string
		body map[string]any
		want int
	}{
		{"publish-only class", map[string]any{"topic": "user/update", "payload": "x"}, 400},
		{"no class", map[string]any{"topic": "user/other", "payload": "x"}, 400},
		{"wildcard", map[string]any{"topic": "user/cmd/+", "payload": "x"}, 400},
		{"not custom", map[string]any{"topic": "thing/service/x", "payload": "x"}, 400},
		{"bad base64", map[string]any{"topic": "user/cmd/a", "payload": "!", "payloadEncoding": "base64"}, 400},
		{"bad timeout", map[string]any{"topic": "user/cmd/a", "payload": "x", "timeoutMs": 60001}, 400},
	} {
		if r := s.Do(s.AdminKey, "POST", path, tt.body); r.Status != tt.want {
			t.Errorf("%s: %d %s", tt.name, r.Status, r.Body)
		}
	}
	if r := s.Do(s.AdminKey, "POST", "/v1/products/"+p.ProductKey+"/devices/nope/rrpc", map[string]any{"topic": "user/cmd/a"}); r.Status != 404 {
		t.Errorf("unknown device: %d %s", r.Status, r.Body)
	}
	s.CreateDevice(p.ProductKey, "mtr2")
	if r := s.Do(s.AdminKey, "POST", "/v1/products/"+p.ProductKey+"/devices/mtr2/rrpc", map[string]any{"topic": "user/cmd/a"}); r.Status != 409 {
		t.Errorf("offline device: %d %s", r.Status, r.Body)
	}
}
