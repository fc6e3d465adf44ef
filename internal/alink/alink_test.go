package alink

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/alink/alinktest"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		in, id, method, params string
		err                    bool
	}{
		{`{"id":"123","version":"1.0","params":[{"productKey":"pk","deviceName":"dn"}],"method":"thing.topo.add"}`, "123", "thing.topo.add", `[{"productKey":"pk","deviceName":"dn"}]`, false},
		{`{"id":42,"version":"1.0","params":{}}`, "42", "", `{}`, false},
		{`{"id":"7","params":"{}","method":"thing.topo.get"}`, "7", "thing.topo.get", `{}`, false},
		{`{"id":"7","params":""}`, "7", "", `{}`, false},
		{`{"id":"7","sys":{"ack":0},"params":{"a":1}}`, "7", "", `{"a":1}`, false},
		{`{"params":{}}`, "", "", "", true},
		{`{"id":-1}`, "-1", "", "", true},
		{`{"id":1.5}`, "1.5", "", "", true},
		{`{"id":"1|exp-topic|/sys/a1PK/dev-01/thing/event/property/post_reply","params":{}}`, "1|exp-topic|/sys/a1PK/dev-01/thing/event/property/post_reply", "", `{}`, false},
		{`{"id":123456789012345678901234567890}`, "123456789012345678901234567890", "", "", false},
		{`{"id":"` + strings.Repeat("9", 256) + `"}`, strings.Repeat("9", 256), "", "", false},
		{`{"id":"` + strings.Repeat("9", 257) + `"}`, strings.Repeat("9", 257), "", "", true},
		{`{"id":""}`, "", "", "", true},
		{`{"id":"5","params":{"a":1},"sys":{"ack":"x"}}`, "5", "", "", true},
		{`{"id":"6","params":[1,`, "6", "", "", true},
		{`{"params":{"id":"inner"},"id":"outer","x":`, "outer", "", "", true},
		{`{"id":"1","method":5}`, "1", "", "", true},
		{`{"id":"1","params":"{bad"}`, "1", "", "", true},
		{`not json`, "", "", "", true},
		{`["id","x"]`, "", "", "", true},
	}
	for _, tt := range tests {
		r, err := DecodeRequest([]byte(tt.in))
		if tt.err {
			if !errors.Is(err, ErrMalformed) || r.ID != tt.id {
				t.Errorf("DecodeRequest(%s) = id %q, err %v; want id %q", tt.in, r.ID, err, tt.id)
			}
			continue
		}
		if err != nil || r.ID != tt.id || r.Method != tt.method || string(r.Params) != tt.params {
			t.Errorf("DecodeRequest(%s) = %+v %s, %v", tt.in, r, r.Params, err)
		}
	}
	r, _ := DecodeRequest([]byte(`{"id":"1","sys":{"ack":0}}`))
	if r.WantsReply() {
		t.Error("ack 0 wants a reply")
	}
}

func TestReplyHasAllFourFields(t *testing.T) {
	var m map[string]any
	json.Unmarshal(EncodeReply(Reply{ID: "1", Code: 200}), &m)
	for _, k := range []string{"id", "code", "data", "message"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("reply lacks %s: %v", k, m)
		}
	}
}

// TestReplyGolden pins the reply envelopes: success and error, short
// and long ids (the Node SDK's), numeric ids echoed as strings.
func TestReplyGolden(t *testing.T) {
	long := "1|exp-topic|/sys/a1PK/dev-01/thing/event/property/post_reply"
	for _, tt := range []struct {
		name string
		in   string
		rep  Reply
	}{
		{"reply_success", `{"id":"123","params":{}}`, Reply{Code: CodeSuccess, Method: "thing.event.property.post_reply", Version: "1.0"}},
		{"reply_success_long_id", `{"id":"` + long + `","params":{}}`, Reply{Code: CodeSuccess, Data: map[string]any{}}},
		{"reply_success_number_id", `{"id":42,"params":{}}`, Reply{Code: CodeSuccess}},
		{"reply_error_bad_params", `{"id":"` + long + `","params":[1,`, Reply{Code: CodeBadParams, Message: "request parameter error"}},
		{"reply_error_id_too_long", `{"id":"` + strings.Repeat("x", 300) + `"}`, Reply{Code: CodeBadParams, Message: "request parameter error: id must be 1 to 256 characters"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := DecodeRequest([]byte(tt.in))
			tt.rep.ID = req.ID
			b := EncodeReply(tt.rep)
			alinktest.Golden(t, tt.name, b)
			var back struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(b, &back); err != nil || back.ID != req.ID || back.ID == "" {
				t.Fatalf("reply id %q (%v), request id %q", back.ID, err, req.ID)
			}
		})
	}
}

func TestParseTopic(t *testing.T) {
	tests := []struct {
		in, kind, pk, dn, method string
		reply, err               bool
	}{
		{"/sys/pk/dn/thing/topo/add", "sys", "pk", "dn", "thing.topo.add", false, false},
		{"/sys/pk/dn/thing/topo/add_reply", "sys", "pk", "dn", "thing.topo.add", true, false},
		{"/sys/pk/dn/thing/event/property/post", "sys", "pk", "dn", "thing.event.property.post", false, false},
		{"/sys/pk/dn/thing/proxy/provisioning/product_register", "sys", "pk", "dn", "thing.proxy.provisioning.product_register", false, false},
		{"/ext/session/pk/dn/combine/batch_login", "session", "pk", "dn", "combine.batch_login", false, false},
		{"/pk/dn/user/update", "user", "pk", "dn", "user.update", false, false},
		{"/ext/ntp/pk/dn/request", "ntp", "pk", "dn", "request", false, false},
		{"/ext/ntp/pk/+/request", "", "", "", "", false, true},
		{"/pk/dn/get", "", "", "", "", false, true},
		{"/sys/pk", "", "", "", "", false, true},
		{"/sys//dn/x", "", "", "", "", false, true},
		{"$aws/things/x", "", "", "", "", false, true},
	}
	for _, tt := range tests {
		tp, err := ParseTopic(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseTopic(%q) accepted", tt.in)
			}
			continue
		}
		if err != nil || tp.Kind != tt.kind || tp.ProductKey != tt.pk || tp.DeviceName != tt.dn || tp.Method() != tt.method || tp.Reply != tt.reply {
			t.Errorf("ParseTopic(%q) = %+v %s, %v", tt.in, tp, tp.Method(), err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"id":"1","params":{}}`, `{"id":1,"params":"{}"}`, `{"id":"x","sys":{"ack":0}}`, `[]`, `{"id":"1","params":"[1,"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		if r.ID == "" || len(r.ID) > MaxIDLen {
			t.Fatalf("accepted id %q", r.ID)
		}
		if len(r.Params) > 0 && !json.Valid(r.Params) {
			t.Fatalf("params %q not JSON", r.Params)
		}
		var back map[string]any
		if err := json.Unmarshal(EncodeReply(Reply{ID: r.ID, Code: 200, Data: r.Params}), &back); err != nil {
			t.Fatalf("reply does not encode: %v", err)
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"/sys/pk/dn/thing/topo/add", "/ext/session/pk/dn/combine/login_reply", "/pk/dn/user/x", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTopic(s)
		if err != nil {
			return
		}
		if tp.ProductKey == "" || tp.DeviceName == "" || strings.Contains(tp.ProductKey, "/") || strings.Contains(tp.DeviceName, "/") {
			t.Fatalf("ParseTopic(%q) = %+v", s, tp)
		}
	})
}

// FuzzIDOf: the id recovered from a payload that did not decode comes
// from the payload: never over three times its length (invalid UTF-8
// is read as U+FFFD).
func FuzzIDOf(f *testing.F) {
	for _, s := range []string{`{"id":"12","params":[`, `{"id":12,"params":"{bad"}`, `{"x":{"id":"inner"},"id":"outer"`,
		`[{"id":"1"}]`, `{"id":"` + strings.Repeat("9", 300) + `"}`, `{"id":{"a":1}}`, `{"id":1e400}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		id := IDOf(payload)
		if len(id) > 3*len(payload) { // invalid UTF-8 becomes U+FFFD
			t.Fatalf("id %q from %q", id, payload)
		}
	})
}

func TestSubDeviceErrorGolden(t *testing.T) {
	b := SubDeviceError("1700000000001", CodeNoSession, "sub-device a1Sub/s1 is not logged in", "a1Sub", "s1")
	alinktest.Golden(t, "ext_error", b)
	var m struct {
		ID   *string
		Code int
		Data struct{ ProductKey, DeviceName string }
	}
	if err := json.Unmarshal(b, &m); err != nil || m.ID == nil || m.Code != 520 || m.Data.ProductKey != "a1Sub" || m.Data.DeviceName != "s1" {
		t.Fatalf("%s: %v", b, err)
	}
	if ErrorTopic("a1Gw", "gw1") != "/ext/error/a1Gw/gw1" {
		t.Fatal(ErrorTopic("a1Gw", "gw1"))
	}
}

// TestReplyEchoesIDBytes: an id holding '&', '<' or '>' is echoed as
// sent, not HTML-escaped (\u0026), so a device comparing bytes matches it.
func TestReplyEchoesIDBytes(t *testing.T) {
	got := string(EncodeReply(Reply{ID: "a&b<c>d", Code: CodeSuccess}))
	if want := `{"id":"a&b<c>d","code":200,"data":{},"message":"success"}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
