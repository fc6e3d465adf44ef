package shadow

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink/alinktest"
)

var t0 = time.Unix(1700000000, 0)

// mustAWS applies req to doc and fails the test on a refusal.
func mustAWS(t *testing.T, doc Document, req string, now time.Time) UpdateAWS {
	t.Helper()
	u, err := ApplyAWS(doc, []byte(req), now, Limits{})
	if err != nil {
		t.Fatalf("ApplyAWS(%s): %v", req, err)
	}
	return u
}

func stateJSON(d Document) string { return string(marshal(d.state())) }

func TestApplyAWSRefusals(t *testing.T) {
	long := strings.Repeat("x", 65)
	deep := `{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}`
	doc := mustAWS(t, Document{}, `{"state":{"reported":{"a":1}}}`, t0).Next // version 1
	tests := []struct {
		name, req string
		code      int
		msg       string
		token     string
	}{
		{"not_utf8", "{\"state\":{\"reported\":{\"a\":\"\xff\"}}}", 415, MsgNotUTF8, ""},
		{"invalid_json", `{"state":`, 400, MsgInvalidJSON, ""},
		{"not_an_object", `[1]`, 400, MsgInvalidJSON, ""},
		{"top_null", `null`, 400, MsgInvalidJSON, ""},
		{"trailing_data", `{"state":{}} {}`, 400, MsgInvalidJSON, ""},
		{"missing_state", `{"clientToken":"t1"}`, 400, MsgMissingState, "t1"},
		{"state_not_object", `{"state":[1],"clientToken":"t1"}`, 400, MsgStateNotObject, "t1"},
		{"state_string", `{"state":"x"}`, 400, MsgStateNotObject, ""},
		{"desired_not_object", `{"state":{"desired":1},"clientToken":"t1"}`, 400, MsgDesiredNotObject, "t1"},
		{"desired_array", `{"state":{"desired":[]}}`, 400, MsgDesiredNotObject, ""},
		{"reported_not_object", `{"state":{"reported":"x"},"clientToken":"t1"}`, 400, MsgReportedNotObject, "t1"},
		{"invalid_version_string", `{"state":{},"version":"1","clientToken":"t1"}`, 400, MsgInvalidVersion, "t1"},
		{"invalid_version_float", `{"state":{},"version":1.5}`, 400, MsgInvalidVersion, ""},
		{"invalid_version_negative", `{"state":{},"version":-1}`, 400, MsgInvalidVersion, ""},
		{"invalid_version_huge", `{"state":{},"version":99999999999999999999}`, 400, MsgInvalidVersion, ""},
		{"client_token_too_long", `{"state":{},"clientToken":"` + long + `"}`, 400, MsgInvalidToken, ""},
		{"client_token_not_string", `{"state":{},"clientToken":5}`, 400, MsgInvalidToken, ""},
		{"too_deep", `{"state":{"reported":` + deep + `},"clientToken":"t1"}`, 400, MsgTooDeep, "t1"},
		{"too_deep_array", `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":[1]}}}}}}}}`, 400, MsgTooDeep, ""},
		{"invalid_node", `{"state":{"delta":{"a":1}},"clientToken":"t1"}`, 400, MsgInvalidNode, "t1"},
		{"null_in_array", `{"state":{"reported":{"a":[1,null]}},"clientToken":"t1"}`, 400, MsgInvalidNode, "t1"},
		{"null_in_nested_array", `{"state":{"desired":{"a":[[{"b":null}]]}}}`, 400, MsgInvalidNode, ""},
		{"version_conflict", `{"state":{},"version":7,"clientToken":"t1"}`, 409, MsgVersionConflict, "t1"},
		{"version_conflict_old", `{"state":{},"version":0}`, 409, MsgVersionConflict, ""},
		{"too_large", `{"state":{"desired":{"big":"` + strings.Repeat("x", 8<<10) + `"}},"clientToken":"t1"}`, 413, MsgTooLarge, "t1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ApplyAWS(doc, []byte(tc.req), t0.Add(time.Second), Limits{})
			var e *ErrorAWS
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *ErrorAWS", err)
			}
			if e.Code != tc.code || e.Message != tc.msg || e.ClientToken != tc.token {
				t.Fatalf("got %d %q token %q, want %d %q token %q", e.Code, e.Message, e.ClientToken, tc.code, tc.msg, tc.token)
			}
			alinktest.Golden(t, "aws_rejected_"+tc.name, e.Payload())
		})
	}
}

func TestApplyAWSAccepts(t *testing.T) {
	base := mustAWS(t, Document{}, `{"state":{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}}`, t0).Next
	tests := []struct {
		name, req, state string
	}{
		{"state_empty", `{"state":{}}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}`},
		{"state_null_keeps_shadow", `{"state":null}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}`},
		{"desired_empty", `{"state":{"desired":{}}}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}`},
		{"null_leaf_deletes", `{"state":{"reported":{"r":null}}}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1}}`},
		{"desired_null_removes_section", `{"state":{"desired":null}}`, `{"reported":{"a":1,"r":true}}`},
		{"nested_merge", `{"state":{"desired":{"n":{"y":3,"z":[1,2]}}}}`, `{"desired":{"a":1,"n":{"x":1,"y":3,"z":[1,2]}},"reported":{"a":1,"r":true}}`},
		{"last_nested_leaf_prunes", `{"state":{"desired":{"n":{"x":null,"y":null}}}}`, `{"desired":{"a":1},"reported":{"a":1,"r":true}}`},
		{"array_replaces_whole", `{"state":{"reported":{"r":[3]}}}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":[3]}}`},
		{"object_replaces_leaf", `{"state":{"reported":{"r":{"s":1}}}}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":{"s":1}}}`},
		{"empty_object_leaves_leaf", `{"state":{"reported":{"r":{}}}}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}`},
		{"other_members_ignored", `{"state":{"reported":{"b":"<&>"}},"metadata":{"x":1},"timestamp":5}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"b":"<&>","r":true}}`},
		{"version_matches", `{"state":{},"version":1}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}`},
		{"version_null_is_absent", `{"state":{},"version":null}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}`},
		{"client_token_64", `{"state":{},"clientToken":"` + strings.Repeat("x", 64) + `"}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}`},
		{"depth_6", `{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}`, `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}},"r":true}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := mustAWS(t, base, tc.req, t0.Add(time.Second))
			if got := stateJSON(u.Next); got != tc.state {
				t.Errorf("state %s, want %s", got, tc.state)
			}
			if u.Next.Version != base.Version+1 {
				t.Errorf("version %d, want %d", u.Next.Version, base.Version+1)
			}
			if stateJSON(base) != `{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"a":1,"r":true}}` {
				t.Fatalf("ApplyAWS modified its input: %s", stateJSON(base))
			}
		})
	}
}

func TestApplyAWSSizeMeasuredAfterMerge(t *testing.T) {
	// 8 KB: the state {"desired":…} itself is not counted, only the sections.
	fill := func(n int) string { return strings.Repeat("x", n) }
	// {"a":"…"} is 8 bytes + n.
	full := mustAWS(t, Document{}, `{"state":{"desired":{"a":"`+fill(DefaultMaxStateBytes-8)+`"}}}`, t0).Next
	if full.Size() != DefaultMaxStateBytes {
		t.Fatalf("size %d", full.Size())
	}
	// One more byte anywhere is refused, though the request is tiny.
	if _, err := ApplyAWS(full, []byte(`{"state":{"reported":{}}}`), t0, Limits{}); err != nil {
		t.Fatalf("no-op refused: %v", err)
	}
	_, err := ApplyAWS(full, []byte(`{"state":{"reported":{"b":1}}}`), t0, Limits{})
	if e, ok := err.(*ErrorAWS); !ok || e.Code != 413 {
		t.Fatalf("err %v, want 413", err)
	}
	// A big request that shrinks the document is accepted.
	if _, err := ApplyAWS(full, []byte(`{"state":{"desired":{"a":null},"reported":{"pad":"`+fill(4000)+`"}}}`), t0, Limits{}); err != nil {
		t.Fatalf("shrinking update refused: %v", err)
	}
	// Metadata is not counted: many short leaves with long metadata fit.
	// Configured up to 64 KB.
	big := `{"state":{"desired":{"a":"` + fill(30<<10) + `"}}}`
	if _, err := ApplyAWS(Document{}, []byte(big), t0, Limits{MaxStateBytes: 32 << 10}); err != nil {
		t.Fatalf("32 KB limit: %v", err)
	}
	if _, err := ApplyAWS(Document{}, []byte(big), t0, Limits{}); err == nil {
		t.Fatal("default limit accepted 30 KB")
	}
	if (Limits{MaxStateBytes: 64 << 10}).Validate() != nil || (Limits{MaxStateBytes: 64<<10 + 1}).Validate() == nil || (Limits{MaxStateBytes: -1}).Validate() == nil {
		t.Fatal("Validate bounds")
	}
	huge := `{"state":{"desired":{"a":"` + fill(70<<10) + `"}}}`
	if _, err := ApplyAWS(Document{}, []byte(huge), t0, Limits{MaxStateBytes: 1 << 20}); err == nil {
		t.Fatal("limit above 64 KB was not capped")
	}
}

func TestApplyAWSVersions(t *testing.T) {
	d := Document{}
	for i := int64(1); i <= 3; i++ {
		d = mustAWS(t, d, `{"state":{"reported":{"n":1}}}`, t0).Next // no-op updates still count
		if d.Version != i {
			t.Fatalf("version %d, want %d", d.Version, i)
		}
	}
	d = mustAWS(t, d, `{"state":{},"version":3}`, t0).Next
	if d.Version != 4 {
		t.Fatalf("version %d", d.Version)
	}
}

func TestDeleteAndRecreate(t *testing.T) {
	d := mustAWS(t, Document{}, `{"state":{"reported":{"a":1}}}`, t0).Next
	d = mustAWS(t, d, `{"state":{"reported":{"a":2}}}`, t0).Next
	tomb, payload := DeleteAWS(d, t0.Add(time.Minute))
	alinktest.Golden(t, "aws_delete_accepted", payload)
	if tomb.Version != 2 || !tomb.DeletedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("tombstone %+v", tomb)
	}
	within := New(&tomb, tomb.DeletedAt.Add(VersionRetention-time.Second))
	if r := mustAWS(t, within, `{"state":{"reported":{"a":1}}}`, t0).Next; r.Version != 3 || stateJSON(r) != `{"reported":{"a":1}}` {
		t.Fatalf("recreated within 48 h: %d %s", r.Version, stateJSON(r))
	}
	// The version check runs against the continued version.
	if _, err := ApplyAWS(within, []byte(`{"state":{},"version":2}`), t0, Limits{}); err != nil {
		t.Fatalf("version of the deleted shadow refused: %v", err)
	}
	after := New(&tomb, tomb.DeletedAt.Add(VersionRetention))
	if r := mustAWS(t, after, `{"state":{}}`, t0).Next; r.Version != 1 {
		t.Fatalf("recreated after 48 h: version %d, want 1", r.Version)
	}
	if New(nil, t0).Version != 0 {
		t.Fatal("New(nil)")
	}
}

func TestDeltaAWS(t *testing.T) {
	tests := []struct{ name, desired, reported, delta string }{
		{"none", `{"a":1}`, `{"a":1}`, ``},
		{"desired_only_leaf", `{"a":1,"b":2}`, `{"a":1}`, `{"b":2}`},
		{"reported_only_excluded", `{"a":1}`, `{"a":1,"z":9}`, ``},
		{"nested_path_kept", `{"n":{"x":1,"y":2}}`, `{"n":{"x":1,"y":3}}`, `{"n":{"y":2}}`},
		{"nested_against_leaf", `{"n":{"x":1}}`, `{"n":5}`, `{"n":{"x":1}}`},
		{"leaf_against_nested", `{"n":5}`, `{"n":{"x":1}}`, `{"n":5}`},
		{"array_whole", `{"l":[1,2,3]}`, `{"l":[1,2]}`, `{"l":[1,2,3]}`},
		{"array_equal", `{"l":[1,{"a":"b"}]}`, `{"l":[1.0,{"a":"b"}]}`, ``},
		{"numbers_by_value", `{"a":21,"b":1e2,"c":0,"d":-0.0}`, `{"a":21.0,"b":100,"c":-0,"d":0e7}`, ``},
		{"number_differs", `{"a":21}`, `{"a":21.5}`, `{"a":21}`},
		{"type_differs", `{"a":"1"}`, `{"a":1}`, `{"a":"1"}`},
		{"no_reported", `{"a":{"b":true}}`, ``, `{"a":{"b":true}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := map[string]any{}
			if tc.desired != "" {
				st["desired"] = json.RawMessage(tc.desired)
			}
			if tc.reported != "" {
				st["reported"] = json.RawMessage(tc.reported)
			}
			d := mustAWS(t, Document{}, string(marshal(map[string]any{"state": st})), t0).Next
			got, meta := d.Delta()
			if tc.delta == "" {
				if got != nil || meta != nil {
					t.Fatalf("delta %s, want none", marshal(got))
				}
				return
			}
			if string(marshal(got)) != tc.delta {
				t.Fatalf("delta %s, want %s", marshal(got), tc.delta)
			}
		})
	}
}

// TestAWSPayloads pins every accepted payload: a device with desired and
// reported, then an update touching both with a clientToken.
func TestAWSPayloads(t *testing.T) {
	first := mustAWS(t, Document{}, `{"state":{"desired":{"color":"red","cfg":{"mode":"eco","levels":[1,2]}},"reported":{"color":"red"}},"clientToken":"c1"}`, t0)
	alinktest.Golden(t, "aws_update_accepted_first", first.Accepted)
	alinktest.Golden(t, "aws_update_delta_first", first.Delta)
	alinktest.Golden(t, "aws_update_documents_first", first.Documents)

	second := mustAWS(t, first.Next, `{"state":{"desired":{"color":"green","cfg":{"fan":null}},"reported":{"cfg":{"mode":"eco"},"temp":21.5,"gone":null}},"version":1,"clientToken":"c2"}`, t0.Add(10*time.Second))
	alinktest.Golden(t, "aws_update_accepted", second.Accepted)
	alinktest.Golden(t, "aws_update_delta", second.Delta)
	alinktest.Golden(t, "aws_update_documents", second.Documents)
	alinktest.Golden(t, "aws_get_accepted", GetAWS(second.Next, t0.Add(20*time.Second), "g1"))

	cleared := mustAWS(t, second.Next, `{"state":{"desired":null}}`, t0.Add(30*time.Second))
	alinktest.Golden(t, "aws_update_accepted_desired_null", cleared.Accepted)
	if cleared.Delta != nil {
		t.Fatalf("delta published for an empty delta: %s", cleared.Delta)
	}
	alinktest.Golden(t, "aws_get_accepted_no_delta", GetAWS(cleared.Next, t0.Add(40*time.Second), ""))
	alinktest.Golden(t, "aws_get_accepted_empty", GetAWS(Document{Version: 3}, t0, ""))
	alinktest.Golden(t, "aws_rejected_not_found", NewErrorAWS(404, MsgNoShadow("lamp"), "c9", t0).Payload())

	// The delta and the accepted payload carry the same new version.
	var a, d struct{ Version int64 }
	_ = json.Unmarshal(second.Accepted, &a)
	_ = json.Unmarshal(second.Delta, &d)
	if a.Version != 2 || d.Version != 2 {
		t.Fatalf("versions accepted %d delta %d, want 2 and 2", a.Version, d.Version)
	}
}

func TestStoredRoundTrip(t *testing.T) {
	d := mustAWS(t, Document{}, `{"state":{"desired":{"timestamp":{"timestamp":1},"l":[{"a":1}]},"reported":{"n":1e400}}}`, t0).Next
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	alinktest.Golden(t, "stored_document", b)
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(d) {
		t.Fatalf("round trip:\n%s\n%s", b, marshal(back))
	}
	if _, err := Parse([]byte(`[]`)); !errors.Is(err, ErrStored) {
		t.Fatalf("Parse([]) = %v", err)
	}
	// A hand-edited document is brought back to the invariants.
	e, err := Parse([]byte(`{"state":{"reported":{"a":{},"b":null,"c":1}},"version":4}`))
	if err != nil || stateJSON(e) != `{"reported":{"c":1}}` || string(marshal(e.Metadata)) != `{"reported":{"c":{"timestamp":0}}}` || e.Version != 4 {
		t.Fatalf("Parse: %v %s %s", err, stateJSON(e), marshal(e.Metadata))
	}
}
