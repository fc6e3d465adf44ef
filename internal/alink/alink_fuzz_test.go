package alink

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// maxEchoed is the longest run of input bytes an error may repeat.
const maxEchoed = 64

func echoes(msg string, in []byte) bool {
	if len(in) > 4096 {
		in = in[:4096]
	}
	// A clipped value may sit between quotes that match the input too.
	for i := 0; i+maxEchoed+8 < len(in); i++ {
		if strings.Contains(msg, string(in[i:i+maxEchoed+9])) {
			return true
		}
	}
	return false
}

// allocated reports how many bytes fn allocates: small inputs must not
// make large allocations.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// sameJSON reports whether a and b hold the same JSON value (encoding/json
// escapes <, > and & when it re-encodes, so bytes may differ).
func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	dec := func(x []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		var v any
		return v, d.Decode(&v)
	}
	va, ea := dec(a)
	vb, eb := dec(b)
	return ea == nil && eb == nil && reflect.DeepEqual(va, vb)
}

// wireRequests are requests as devices and gateways send them
// (specs/alink-device-protocol.md and the gateway tests).
var wireRequests = []string{
	`{"id":"123","version":"1.0","params":[{"productKey":"a1PK0000001","deviceName":"sub01","clientId":"a1PK0000001.sub01","timestamp":"1524448722000","signmethod":"hmacSha256","sign":"9f7c"}],"method":"thing.topo.add"}`,
	`{"id":"1","version":"1.0","sys":{"ack":0},"params":{"Temperature":{"value":23.5,"time":1524448722000}},"method":"thing.event.property.post"}`,
	`{"id":42,"version":"1.0","params":{"deviceList":[{"productKey":"pk","deviceName":"dn","cleanSession":"true"}]}}`,
	`{"id":"7","params":"{}","method":"thing.topo.get"}`,
	`{"id":"7","params":"","method":"thing.topo.get"}`,
	`{"id":"8","params":{"proxieds":[{"productKey":"pk","deviceName":"dn","random":"r","sign":"s","signMethod":"hmacsha256"}]}}`,
	`{"id":"1","params":"[1,"}`, `{"id":-1}`, `{"id":1.5}`, `{"id":null}`, `[]`, `{"id":"1"} trailing`,
	`{"id":"` + strings.Repeat("9", 65) + `"}`,
	`{"id":"1","method":"` + strings.Repeat("m", 100) + `",` + `"version":{"x":"` + strings.Repeat("v", 100) + `"}}`,
}

// FuzzRequestRoundTrip: decoding allocates a bounded multiple of the
// payload; an accepted request re-encoded decodes to the same request; an id is 1 to MaxIDLen characters; params are JSON; a refusal is
// ErrMalformed and repeats at most maxEchoed bytes of the payload (replies
// carry the message back, logs may too).
func FuzzRequestRoundTrip(f *testing.F) {
	for _, s := range wireRequests {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		var err error
		limit := 64*uint64(len(b)) + 256<<10
		if n := allocated(func() { r, err = DecodeRequest(b) }); n > limit {
			// Measured again: other goroutines of the fuzzer allocate too.
			if n2 := allocated(func() { DecodeRequest(b) }); n2 > limit {
				t.Fatalf("decoding %d bytes allocated %d, then %d", len(b), n, n2)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v is not ErrMalformed", err)
			}
			if echoes(err.Error(), b) {
				t.Fatalf("error %q repeats over %d bytes of the payload", err, maxEchoed)
			}
			return
		}
		if r.ID == "" || len(r.ID) > MaxIDLen {
			t.Fatalf("accepted id %q", r.ID)
		}
		if len(r.Params) > 0 && !json.Valid(r.Params) {
			t.Fatalf("params %q not JSON", r.Params)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", r, err)
		}
		r2, err := DecodeRequest(again)
		if err != nil {
			t.Fatalf("re-encoded %s does not decode: %v", again, err)
		}
		if r2.ID != r.ID || r2.Method != r.Method || r2.Version != r.Version || r2.WantsReply() != r.WantsReply() {
			t.Fatalf("%s → %+v, re-encoded %s → %+v", b, r, again, r2)
		}
		if !sameJSON(r.Params, r2.Params) {
			t.Fatalf("params %s then %s", r.Params, r2.Params)
		}
	})
}

// FuzzEncodeReply: every reply is one JSON object with id, code, data and
// message, whatever data holds; the id and code come back unchanged.
func FuzzEncodeReply(f *testing.F) {
	f.Add("1", 200, []byte(`{}`), "", "thing.topo.add_reply")
	f.Add("2", 460, []byte(`[{"productKey":"pk"}]`), "request parameter error", "")
	f.Add("3", 6100, []byte(`{bad`), "x", "")
	f.Add("\xff", -1, []byte(nil), "\x00", "m")
	f.Fuzz(func(t *testing.T, id string, code int, data []byte, msg, method string) {
		rep := Reply{ID: id, Code: code, Message: msg, Method: method}
		if data != nil {
			rep.Data = json.RawMessage(data)
		}
		out := EncodeReply(rep)
		var back map[string]json.RawMessage
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("reply %q is not JSON: %v", out, err)
		}
		for _, k := range []string{"id", "code", "data", "message"} {
			if _, ok := back[k]; !ok {
				t.Fatalf("reply %s lacks %s", out, k)
			}
		}
		var got struct {
			ID   string `json:"id"`
			Code int    `json:"code"`
		}
		json.Unmarshal(out, &got)
		var want strings.Builder // encoding/json replaces each invalid byte
		for _, r := range id {
			want.WriteRune(r)
		}
		if got.ID != want.String() {
			t.Fatalf("id %q came back %q", id, got.ID)
		}
		if got.Code != code && got.Code != CodeInternal {
			t.Fatalf("code %d came back %d", code, got.Code)
		}
	})
}

// FuzzTopicRoundTrip: a parsed topic rebuilds to itself, its ProductKey
// and DeviceName are non-empty and never hold '/', '+' or '#', and its
// method names the rest of the topic.
func FuzzTopicRoundTrip(f *testing.F) {
	for _, s := range []string{
		"/sys/a1PK0000001/dev1/thing/topo/add", "/sys/a1PK0000001/dev1/thing/topo/add_reply",
		"/sys/a1PK0000001/dev1/thing/event/property/post", "/sys/pk/dn/thing/proxy/provisioning/product_register",
		"/ext/session/a1PK0000001/gw01/combine/batch_login", "/ext/session/pk/dn/combine/login_reply", "/ext/ntp/a1PK0000001/dev1/request", "/ext/ntp/pk/+/request",
		"/a1PK0000001/dev1/user/update", "/sys/pk/dn/rrpc/request/123", "/sys/+/dn/thing/x", "/sys/pk/#",
		"/+/dn/user/x", "/", "/sys//dn/x", "$aws/things/x/shadow/update", "/ext/session/pk",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTopic(s)
		if err != nil {
			if echoes(err.Error(), []byte(s)) {
				t.Fatalf("error %q repeats the topic", err)
			}
			return
		}
		for _, seg := range []string{tp.ProductKey, tp.DeviceName} {
			if seg == "" || strings.ContainsAny(seg, "/+#") {
				t.Fatalf("ParseTopic(%q) = %+v", s, tp)
			}
		}
		rest := tp.Rest
		if tp.Reply {
			rest += "_reply"
		}
		var back string
		switch tp.Kind {
		case "sys":
			back = SysTopic(tp.ProductKey, tp.DeviceName, rest)
		case "session":
			back = SessionTopic(tp.ProductKey, tp.DeviceName, rest)
		case "ntp":
			back = NTPTopic(tp.ProductKey, tp.DeviceName, rest)
		case "user":
			back = "/" + tp.ProductKey + "/" + tp.DeviceName + "/" + rest
		default:
			t.Fatalf("kind %q", tp.Kind)
		}
		if back != s {
			t.Fatalf("ParseTopic(%q) = %+v rebuilds to %q", s, tp, back)
		}
		if tp.Method() != strings.ReplaceAll(tp.Rest, "/", ".") || strings.HasSuffix(tp.Method(), "_reply") && !strings.HasSuffix(s, "_reply_reply") {
			t.Fatalf("method %q of %q", tp.Method(), s)
		}
	})
}
