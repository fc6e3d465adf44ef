package shadow

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// sameAsLean holds ApplyAWSStored on doc's stored form to ApplyAWSLean on
// doc: when it applies (ok), the same refusal or the same stored form,
// accepted payload, token and version, and no delta. It returns ok.
func sameAsLean(t *testing.T, doc Document, req []byte, now time.Time, lim Limits) bool {
	t.Helper()
	stored, err := doc.MarshalJSON()
	if err != nil {
		return false
	}
	got, ok, gerr := ApplyAWSStored(stored, req, now, lim)
	if !ok {
		if gerr != nil || got.Stored != nil {
			t.Fatalf("not applied, yet %v %q", gerr, got.Stored)
		}
		return false
	}
	want, werr := ApplyAWSLean(doc, req, now, lim)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("stored %s, request %s: error %v, want %v", stored, req, gerr, werr)
	}
	if werr != nil {
		var g, w *ErrorAWS
		if !errors.As(gerr, &g) || !errors.As(werr, &w) || string(g.Payload()) != string(w.Payload()) || g.Code != w.Code {
			t.Fatalf("stored %s, request %s: refused %v, want %v", stored, req, gerr, werr)
		}
		return true
	}
	if string(got.Stored) != string(want.Stored) {
		t.Fatalf("stored %s, request %s:\n got %s\nwant %s", stored, req, got.Stored, want.Stored)
	}
	if string(got.Accepted) != string(want.Accepted) || got.ClientToken != want.ClientToken {
		t.Fatalf("stored %s, request %s: accepted %s %q, want %s %q", stored, req, got.Accepted, got.ClientToken, want.Accepted, want.ClientToken)
	}
	if got.Next.Version != want.Next.Version || got.Delta != nil || want.Delta != nil {
		t.Fatalf("version %d, want %d; delta %s (want %s)", got.Next.Version, want.Next.Version, got.Delta, want.Delta)
	}
	return true
}

// docOf applies updates to an empty document.
func docOf(t *testing.T, updates ...string) Document {
	t.Helper()
	var d Document
	for _, u := range updates {
		r, err := ApplyAWS(d, []byte(u), t0, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		d = r.Next
	}
	return d
}

func TestApplyAWSStored(t *testing.T) {
	presence := docOf(t, `{"state":{"reported":{"mode":"eco","n":{"x":[1,2],"y":{"z":true}}}}}`)
	if r, err := SetReportedLeaf(presence, "connected", true, "CLIENT_INITIATED_DISCONNECT", t0.Add(-time.Hour), Limits{}); err != nil {
		t.Fatal(err)
	} else {
		presence = r.Next
	}
	for _, tc := range []struct {
		name    string
		doc     Document
		req     string
		lim     Limits
		applies bool
	}{
		{"first report", Document{}, `{"state":{"reported":{"temp":21,"mode":"eco"}},"clientToken":"a"}`, Limits{}, true},
		{"after a deletion's version", Document{Version: 7}, `{"state":{"reported":{"temp":21}}}`, Limits{}, true},
		{"replace, add before, between and after", presence, `{"state":{"reported":{"a":1,"mode":"x\"y","m2":false,"zz":-1.5e3,"connected":false}},"version":2}`, Limits{}, true},
		{"an object replaced by a leaf", presence, `{"state":{"reported":{"n":"flat"}}}`, Limits{}, true},
		{"a unicode name", docOf(t, `{"state":{"reported":{"é":1,"\u2028":2}}}`), `{"state":{"reported":{"ü":"\u00e9\n"}}}`, Limits{}, false}, // \u2028 is escaped when stored
		{"a unicode name, none escaped", docOf(t, `{"state":{"reported":{"é":1}}}`), `{"state":{"reported":{"ü":"\u00e9\n","a":true}}}`, Limits{}, true},
		{"version conflict", presence, `{"state":{"reported":{"a":1}},"version":1,"clientToken":"c"}`, Limits{}, true},
		{"invalid JSON", presence, `{"state":`, Limits{}, true},
		{"too large", presence, `{"state":{"reported":{"a":"` + fmt.Sprintf("%0600d", 0) + `"}}}`, Limits{MaxStateBytes: 512}, true},
		{"desired stored", docOf(t, `{"state":{"desired":{"a":1}}}`), `{"state":{"reported":{"a":1}}}`, Limits{}, false},
		{"desired requested", presence, `{"state":{"desired":{"a":1}}}`, Limits{}, false},
		{"a nested report", presence, `{"state":{"reported":{"n":{"x":1}}}}`, Limits{}, false},
		{"a removal", presence, `{"state":{"reported":{"mode":null}}}`, Limits{}, false},
		{"an array", presence, `{"state":{"reported":{"a":[1]}}}`, Limits{}, false},
		{"state null", presence, `{"state":null}`, Limits{}, false},
		{"reported empty", presence, `{"state":{"reported":{}}}`, Limits{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameAsLean(t, tc.doc, []byte(tc.req), t0, tc.lim); got != tc.applies {
				t.Fatalf("applied %v, want %v", got, tc.applies)
			}
		})
	}
}

// TestApplyAWSStoredForms: stored forms storedForm does not write are not
// merged (ok false), whatever the request.
func TestApplyAWSStoredForms(t *testing.T) {
	req := []byte(`{"state":{"reported":{"a":1}}}`)
	for _, stored := range []string{
		``, `{}`, `{"state":{},"metadata":{},"version":01}`, `{"state":{},"metadata":{},"version":1} `,
		`{"state":{"reported":{"a":1}},"metadata":{},"version":1}`,
		`{"state":{"reported":{"b":1,"a":1}},"metadata":{"reported":{"b":{"timestamp":1},"a":{"timestamp":1}}},"version":1}`,
		`{"state":{"reported":{"a":1,"a":2}},"metadata":{"reported":{"a":{"timestamp":1}}},"version":1}`,
		`{"state":{"reported":{"a": 1}},"metadata":{"reported":{"a":{"timestamp":1}}},"version":1}`,
		`{"state":{"reported":{"\u0062":1}},"metadata":{"reported":{"b":{"timestamp":1}}},"version":1}`,
		`{"state":{"reported":{"b":1,}},"metadata":{"reported":{"b":{"timestamp":1}}},"version":1}`,
		`{"state":{"reported":[1]},"metadata":{"reported":{"b":{"timestamp":1}}},"version":1}`,
		`{"state":{"reported":{"b":1}},"metadata":{"reported":{"b":{"timestamp":1}}},"version":99999999999999999999}`,
	} {
		if _, ok, err := ApplyAWSStored([]byte(stored), req, t0, Limits{}); ok || err != nil {
			t.Errorf("%s: applied (%v)", stored, err)
		}
	}
}

func FuzzApplyAWSStored(f *testing.F) {
	for _, s := range awsSeeds {
		f.Add([]byte(s[0]), []byte(s[1]), "")
	}
	f.Add([]byte(`{"state":{"reported":{"b":{"c":[1,{"d":"\""}]},"m":"x"}}}`), []byte(`{"state":{"reported":{"a":1,"c":"x","z":true}},"clientToken":"t"}`), "connected")
	f.Add([]byte(`{"state":{"reported":{"b":1}}}`), []byte(`{"state":{"reported":{"b":"\u00e9\u2028"}},"version":2}`), "b")
	f.Fuzz(func(t *testing.T, first, req []byte, leaf string) {
		doc := Document{}
		if u, err := ApplyAWS(doc, first, t0, fuzzLimits); err == nil {
			doc = u.Next
		}
		if leaf != "" { // a presence leaf, with its reason
			if u, err := SetReportedLeaf(doc, leaf, true, "reason", t0, fuzzLimits); err == nil {
				doc = u.Next
			}
		}
		sameAsLean(t, doc, req, t0.Add(time.Second), fuzzLimits)
	})
}
