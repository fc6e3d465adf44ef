package shadowsvc

import (
	"bytes"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

func TestParseAWSTopic(t *testing.T) {
	for _, c := range []struct {
		topic string
		want  awsTopic
		ok    bool
	}{
		{"$aws/things/pk.dn/shadow/update", awsTopic{"pk.dn", "", "update"}, true},
		{"$aws/things/pk.dn/shadow/get", awsTopic{"pk.dn", "", "get"}, true},
		{"$aws/things/factory:7/shadow/delete", awsTopic{"factory:7", "", "delete"}, true},
		{"$aws/things/t/shadow/name/cfg/update", awsTopic{"t", "cfg", "update"}, true},
		{"$aws/things/t/shadow/name/$a:b_c-d/get", awsTopic{"t", "$a:b_c-d", "get"}, true},
		{"$aws/things/t/shadow/update/accepted", awsTopic{}, false},
		{"$aws/things/t/shadow/update/delta", awsTopic{}, false},
		{"$aws/things/t/shadow/name/cfg/update/accepted", awsTopic{}, false},
		{"$aws/things/t/shadow/name", awsTopic{}, false},
		{"$aws/things/t/shadow/name//get", awsTopic{}, false},
		{"$aws/things/t/shadow/list", awsTopic{}, false},
		{"$aws/things//shadow/get", awsTopic{}, false},
		{"$aws/things/t/jobs/get", awsTopic{}, false},
		{"/shadow/update/pk/dn", awsTopic{}, false},
		{"", awsTopic{}, false},
	} {
		got, ok := parseAWSTopic(c.topic)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("parseAWSTopic(%q) = %+v, %v; want %+v, %v", c.topic, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseAWSTopic: a topic read as a request is rebuilt exactly from
// its parts, so nothing else in the topic was ignored.
func FuzzParseAWSTopic(f *testing.F) {
	for _, s := range []string{"$aws/things/t/shadow/get", "$aws/things/t/shadow/name/n/update", "$aws/things/t/shadow/update/accepted", "$aws/things//shadow//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		p, ok := parseAWSTopic(topic)
		if !ok {
			return
		}
		if p.thing == "" || (p.op != "get" && p.op != "update" && p.op != "delete") {
			t.Fatalf("%q read as %+v", topic, p)
		}
		if again := awsPrefix(p.thing, p.name) + "/" + p.op; again != topic {
			t.Fatalf("%q read as %+v, rebuilt as %q", topic, p, again)
		}
	})
}

func TestParseAWSRead(t *testing.T) {
	now := time.Unix(1700000000, 0)
	v := func(n int64) *int64 { return &n }
	for _, c := range []struct {
		payload string
		token   string
		since   *int64
		code    int
		msg     string
	}{
		{payload: ""},
		{payload: "  "},
		{payload: `{}`},
		{payload: `{"clientToken":"c1"}`, token: "c1"},
		{payload: `{"clientToken":"c1","sinceVersion":3}`, token: "c1", since: v(3)},
		{payload: `{"sinceVersion":0}`, since: v(0)},
		{payload: `{"other":1}`},
		{payload: `nope`, code: 400, msg: shadow.MsgInvalidJSON},
		{payload: `[]`, code: 400, msg: shadow.MsgInvalidJSON},
		{payload: `null`, code: 400, msg: shadow.MsgInvalidJSON},
		{payload: "{\"clientToken\":\"\xff\"}", code: 415, msg: shadow.MsgNotUTF8},
		{payload: `{"clientToken":7}`, code: 400, msg: shadow.MsgInvalidToken},
		{payload: `{"clientToken":"` + string(bytes.Repeat([]byte("x"), 65)) + `"}`, code: 400, msg: shadow.MsgInvalidToken},
		{payload: `{"clientToken":"c","sinceVersion":-1}`, token: "c", code: 400, msg: shadow.MsgInvalidVersion},
		{payload: `{"sinceVersion":1.5}`, code: 400, msg: shadow.MsgInvalidVersion},
		{payload: `{"sinceVersion":"3"}`, code: 400, msg: shadow.MsgInvalidVersion},
		{payload: `{"sinceVersion":9007199254740993}`, code: 400, msg: shadow.MsgInvalidVersion},
	} {
		r, rej, ok := parseAWSRead([]byte(c.payload), now)
		if c.code != 0 {
			if ok || rej == nil || rej.Code != c.code || rej.Message != c.msg || rej.ClientToken != c.token {
				t.Errorf("%q: got %+v %+v %v, want %d %q", c.payload, r, rej, ok, c.code, c.msg)
			}
			continue
		}
		if !ok || r.token != c.token || (r.since == nil) != (c.since == nil) || (r.since != nil && *r.since != *c.since) {
			t.Errorf("%q: got %+v %+v %v", c.payload, r, rej, ok)
		}
	}
}

// FuzzParseAWSRead: any payload is read or refused with one of AWS's
// codes, never a panic.
func FuzzParseAWSRead(f *testing.F) {
	for _, s := range []string{"", `{"clientToken":"a","sinceVersion":2}`, `{"sinceVersion":-1}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, rej, ok := parseAWSRead(b, time.Unix(0, 0))
		if ok == (rej != nil) {
			t.Fatalf("ok %v with refusal %+v", ok, rej)
		}
		if !ok && rej.Code != 400 && rej.Code != 415 {
			t.Fatalf("code %d", rej.Code)
		}
		if len(r.token) > shadow.MaxClientToken || (r.since != nil && *r.since < 0) {
			t.Fatalf("read %+v", r)
		}
	})
}

// TestPayloadsMatchTheCore: the delta and documents this package builds
// for changes that did not come through an AWS update are byte for byte
// what internal/shadow gives for one.
func TestPayloadsMatchTheCore(t *testing.T) {
	now := time.Unix(1700000000, 0)
	doc := shadow.New(nil, now)
	for i, req := range []string{
		`{"state":{"desired":{"color":"red","cfg":{"mode":"eco","levels":[1,2]}},"reported":{"color":"red"}},"clientToken":"c1"}`,
		`{"state":{"desired":{"color":"green"},"reported":{"cfg":{"mode":"eco"}}}}`,
		`{"state":{"reported":{"color":"green","cfg":{"levels":[1,2]}}},"clientToken":"c3"}`,
		`{"state":{"desired":null}}`,
	} {
		at := now.Add(time.Duration(i) * time.Second)
		u, err := shadow.ApplyAWS(doc, []byte(req), at, shadow.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		_, token, _ := bytes.Cut([]byte(req), []byte(`"clientToken":"`))
		tok := string(bytes.TrimSuffix(token, []byte(`"}`)))
		if got := documentsPayload(doc, u.Next, at, tok); !bytes.Equal(got, u.Documents) {
			t.Errorf("update %d documents:\n got %s\nwant %s", i, got, u.Documents)
		}
		if got := deltaPayload(u.Next, at, tok); !bytes.Equal(got, u.Delta) {
			t.Errorf("update %d delta:\n got %s\nwant %s", i, got, u.Delta)
		}
		doc = u.Next
	}
}
