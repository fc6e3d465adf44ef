package shadow

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink/alinktest"
)

func mustAli(t *testing.T, doc Document, req string, now time.Time) AlibabaResult {
	t.Helper()
	r, err := ApplyAlibaba(doc, []byte(req), now, Limits{})
	if err != nil {
		t.Fatalf("ApplyAlibaba(%s): %v", req, err)
	}
	return r
}

func TestApplyAlibabaRefusals(t *testing.T) {
	doc := mustAli(t, Document{}, `{"method":"update","state":{"reported":{"a":1}},"version":5}`, t0).Next
	var many strings.Builder
	many.WriteString(`{"method":"update","state":{"reported":{`)
	for i := range MaxReportedAttributes { // the stored "a" makes 129
		fmt.Fprintf(&many, `"k%d":1,`, i)
	}
	many.WriteString(`"k":1}}}`)
	tests := []struct {
		name, req string
		doc       Document
		code      int
	}{
		{"bad_json", `{"method":`, doc, 400},
		{"not_object", `"get"`, doc, 400},
		{"not_utf8", "{\"method\":\"get\",\"x\":\"\xff\"}", doc, 400},
		{"no_method", `{"state":{"reported":{"a":1}},"version":6}`, doc, 401},
		{"no_state", `{"method":"update","version":6}`, doc, 402},
		{"state_not_object", `{"method":"update","state":[],"version":6}`, doc, 402},
		{"version_not_number", `{"method":"update","state":{"reported":{"a":1}},"version":"6"}`, doc, 403},
		{"version_float", `{"method":"update","state":{"reported":{"a":1}},"version":6.5}`, doc, 403},
		{"version_negative", `{"method":"update","state":{"reported":{"a":1}},"version":-6}`, doc, 403},
		{"version_too_big", `{"method":"update","state":{"reported":{"a":1}},"version":9007199254740993}`, doc, 403},
		{"no_reported", `{"method":"update","state":{"other":{"a":1}},"version":6}`, doc, 404},
		{"delete_no_reported", `{"method":"delete","state":{},"version":6}`, doc, 404},
		{"reported_empty", `{"method":"update","state":{"reported":{}},"version":6}`, doc, 405},
		{"bad_method", `{"method":"patch","state":{"reported":{"a":1}},"version":6}`, doc, 406},
		{"method_not_string", `{"method":1}`, doc, 406},
		{"get_empty", `{"method":"get"}`, Document{Version: 3}, 407},
		{"delete_empty", `{"method":"delete","state":{"reported":"null"},"version":0}`, Document{Version: 3}, 407},
		{"too_many_reported", many.String(), doc, 408},
		{"version_conflict_equal", `{"method":"update","state":{"reported":{"a":2}},"version":5}`, doc, 409},
		{"version_conflict_lower", `{"method":"delete","state":{"reported":{"a":"null"}},"version":4}`, doc, 409},
		{"reported_wrong_type", `{"method":"update","state":{"reported":5},"version":6}`, doc, 400},
		{"null_in_array", `{"method":"update","state":{"reported":{"a":[null]}},"version":6}`, doc, 400},
		{"too_deep", `{"method":"update","state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}},"version":6}`, doc, 400},
		{"too_large", `{"method":"update","state":{"reported":{"a":"` + strings.Repeat("x", 9000) + `"}},"version":6}`, doc, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ApplyAlibaba(tc.doc, []byte(tc.req), t0.Add(time.Second), Limits{})
			var e *AlibabaError
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("err = %v, want code %d", err, tc.code)
			}
			if r.Changed || !r.Next.Equal(tc.doc) {
				t.Fatalf("refused request changed the document")
			}
			alinktest.Golden(t, "ali_error_"+tc.name, r.Reply)
		})
	}
}

func TestApplyAlibabaUpdateDelete(t *testing.T) {
	d := Document{}
	step := func(req, wantState string, wantVersion int64) {
		t.Helper()
		r := mustAli(t, d, req, t0)
		if !r.Changed {
			t.Fatalf("%s: not changed", req)
		}
		d = r.Next
		if got := stateJSON(d); got != wantState || d.Version != wantVersion {
			t.Fatalf("%s:\n got %s v%d\nwant %s v%d", req, got, d.Version, wantState, wantVersion)
		}
	}
	step(`{"method":"update","state":{"reported":{"color":"red","n":{"x":1,"y":2}}},"version":1}`, `{"reported":{"color":"red","n":{"x":1,"y":2}}}`, 1)
	step(`{"method":"update","state":{"desired":{"color":"green"}},"version":0}`, `{"desired":{"color":"green"},"reported":{"color":"red","n":{"x":1,"y":2}}}`, 2)
	step(`{"method":"update","state":{"reported":{"color":"green","z":null}},"version":10}`, `{"desired":{"color":"green"},"reported":{"color":"green","n":{"x":1,"y":2}}}`, 10)
	step(`{"method":"update","state":{"desired":"null"},"version":11}`, `{"reported":{"color":"green","n":{"x":1,"y":2}}}`, 11)
	// delete: the string "null" marks a key, other values are left alone.
	step(`{"method":"delete","state":{"reported":{"color":"null","n":{"x":"null","y":7}}},"version":12}`, `{"reported":{"n":{"y":2}}}`, 12)
	step(`{"method":"delete","state":{"reported":{"n":{"y":null}}}}`, `{}`, 13)
	step(`{"method":"update","state":{"reported":{"a":"null"}}}`, `{"reported":{"a":"null"}}`, 14) // a string value in an update
	step(`{"method":"update","state":{"reported":"null"},"version":20}`, `{}`, 20)
	step(`{"method":"update","state":{"reported":{"a":1},"desired":{"a":2}}}`, `{"desired":{"a":2},"reported":{"a":1}}`, 21)
	step(`{"method":"delete","state":{"reported":"null"},"version":22}`, `{"desired":{"a":2}}`, 22)
	step(`{"method":"update","state":{"reported":{"b":1}, "desired" : "\u006eull" },"version":23}`, `{"reported":{"b":1}}`, 23)
	step(`{"method":"update","state":{"reported":null}}`, `{}`, 24)
}

// TestVersionsAcrossDialects pins the mapping of the two version rules
// onto one counter: AWS +1 (request must equal), Alibaba N (> stored) or +1.
func TestVersionsAcrossDialects(t *testing.T) {
	d := mustAWS(t, Document{}, `{"state":{"reported":{"a":1}}}`, t0).Next // 1
	d = mustAli(t, d, `{"method":"update","state":{"reported":{"a":2}},"version":7}`, t0).Next
	if d.Version != 7 {
		t.Fatalf("alibaba N: %d", d.Version)
	}
	if _, err := ApplyAWS(d, []byte(`{"state":{},"version":2}`), t0, Limits{}); err == nil {
		t.Fatal("AWS client's stale version accepted after an Alibaba jump")
	}
	d = mustAWS(t, d, `{"state":{"desired":{"a":3}},"version":7}`, t0).Next
	if d.Version != 8 {
		t.Fatalf("AWS after alibaba: %d", d.Version)
	}
	if _, err := ApplyAlibaba(d, []byte(`{"method":"update","state":{"reported":{"a":3}},"version":8}`), t0, Limits{}); err == nil {
		t.Fatal("alibaba version equal to stored accepted")
	}
	d = mustAli(t, d, `{"method":"update","state":{"reported":{"a":3}},"version":0}`, t0).Next
	if d.Version != 9 {
		t.Fatalf("alibaba 0: %d", d.Version)
	}
	r := mustAli(t, d, `{"method":"get"}`, t0)
	if r.Changed || r.Next.Version != 9 {
		t.Fatal("get changed the document")
	}
}

func TestAlibabaPayloads(t *testing.T) {
	r := mustAli(t, Document{}, `{"method":"update","state":{"reported":{"color":"red","cfg":{"mode":"eco"}}},"version":1}`, t0)
	alinktest.Golden(t, "ali_reply_update", r.Reply)
	if r.DesiredChanged {
		t.Fatal("reported-only update flagged desired")
	}
	app := mustAli(t, r.Next, `{"method":"update","state":{"desired":{"color":"green"}},"version":2}`, t0.Add(5*time.Second))
	if !app.DesiredChanged {
		t.Fatal("desired update not flagged")
	}
	alinktest.Golden(t, "ali_control", Control(app.Next, t0.Add(5*time.Second)))
	get := mustAli(t, app.Next, `{"method":"get"}`, t0.Add(9*time.Second))
	alinktest.Golden(t, "ali_reply_get", get.Reply)
	del := mustAli(t, app.Next, `{"method":"delete","state":{"reported":{"color":"null"}},"version":3}`, t0.Add(10*time.Second))
	alinktest.Golden(t, "ali_reply_delete", del.Reply)
}
