package alink

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
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
		{`{"id":-1}`, "", "", "", true},
		{`{"id":1.5}`, "", "", "", true},
		{`{"id":"1","method":5}`, "", "", "", true},
		{`{"id":"1","params":"{bad"}`, "", "", "", true},
		{`not json`, "", "", "", true},
		{`{"id":"` + strings.Repeat("9", 65) + `"}`, "", "", "", true},
	}
	for _, tt := range tests {
		r, err := DecodeRequest([]byte(tt.in))
		if tt.err {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeRequest(%s) err = %v", tt.in, err)
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
		if r.ID == "" || len(r.ID) > 64 {
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
