package shadow

import (
	"encoding/json"
	"errors"
	"testing"
)

// fuzzLimits is small so that fuzzed inputs reach the 413 path.
var fuzzLimits = Limits{MaxStateBytes: 512}

var awsSeeds = [][2]string{
	{`{"state":{"desired":{"a":1,"n":{"x":[1,2]}},"reported":{"a":1}}}`, `{"state":{"reported":{"n":{"x":[1,2]},"a":null}},"clientToken":"t"}`},
	{`{"state":{"reported":{"a":{"b":{"c":1}}}}}`, `{"state":{"desired":{"a":{"b":{"c":1.0,"d":"x"}}}},"version":1}`},
	{`{"state":null}`, `{"state":{"desired":null,"reported":{"a":[{"b":1}]}}}`},
	{`{}`, `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}`},
	{`{"state":{"desired":{"timestamp":{"timestamp":1}}}}`, `{"state":{"reported":{"timestamp":5}},"version":"1"}`},
}

// subset is desired ⊆ reported, written apart from delta.
func subset(d, r map[string]any) bool {
	for k, v := range d {
		w, ok := r[k]
		if !ok {
			return false
		}
		if dm, isMap := v.(map[string]any); isMap {
			rm, isMap := w.(map[string]any)
			if !isMap || !subset(dm, rm) {
				return false
			}
			continue
		}
		if !equal(v, w) {
			return false
		}
	}
	return true
}

// checkDocument holds an accepted document to the limits and invariants.
func checkDocument(t *testing.T, d Document) {
	t.Helper()
	if d.Size() > fuzzLimits.maxStateBytes() {
		t.Fatalf("accepted %d bytes", d.Size())
	}
	if depth(d.Desired) > MaxDepth || depth(d.Reported) > MaxDepth {
		t.Fatalf("accepted depth %d/%d", depth(d.Desired), depth(d.Reported))
	}
	st, md := d.Delta()
	if (st == nil) != subset(d.Desired, d.Reported) || (st == nil) != (md == nil) {
		t.Fatalf("delta %s with desired %s reported %s", marshal(st), marshal(d.Desired), marshal(d.Reported))
	}
	b, _ := json.Marshal(d)
	back, err := Parse(b)
	if err != nil || !back.Equal(d) {
		t.Fatalf("stored round trip: %v\n%s\n%s", err, b, marshal(back))
	}
}

func validJSON(t *testing.T, what string, b []byte) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("%s is not JSON: %q", what, b)
	}
}

func withoutVersion(req []byte) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(req, &top) != nil {
		return req
	}
	delete(top, "version")
	b, _ := json.Marshal(top)
	return b
}

func FuzzApplyAWS(f *testing.F) {
	for _, s := range awsSeeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, first, req []byte) {
		doc := Document{}
		if u, err := ApplyAWS(doc, first, t0, fuzzLimits); err == nil {
			doc = u.Next
		}
		u, err := ApplyAWS(doc, req, t0, fuzzLimits)
		if err != nil {
			var e *ErrorAWS
			if !errors.As(err, &e) {
				t.Fatalf("err %T %v", err, err)
			}
			validJSON(t, "rejected", e.Payload())
			return
		}
		checkDocument(t, u.Next)
		if u.Next.Version != doc.Version+1 {
			t.Fatalf("version %d after %d", u.Next.Version, doc.Version)
		}
		validJSON(t, "accepted", u.Accepted)
		// The accepted payload, encoded from the request's trees, is the
		// one their maps encode (MessageAWS).
		if pu, tok, code, _ := parseAWS(doc, req); code != 0 {
			t.Fatalf("accepted, but parseAWS says %d", code)
		} else if want := acceptedAWSSlow(pu, u.Next.Version, t0.Unix(), tok); string(u.Accepted) != string(want) {
			t.Fatalf("accepted %s, want %s", u.Accepted, want)
		}
		validJSON(t, "documents", u.Documents)
		if want, _ := u.Next.MarshalJSON(); string(u.Stored) != string(want) {
			t.Fatalf("stored form %s, want %s", u.Stored, want)
		}
		if st, _ := u.Next.Delta(); (st == nil) != (u.Delta == nil) {
			t.Fatalf("delta payload %q for delta %v", u.Delta, st)
		}
		if u.Delta != nil {
			validJSON(t, "delta", u.Delta)
		}
		validJSON(t, "get", GetAWS(u.Next, t0, ""))

		// What changed since the previous version, applied to it, gives
		// the new state.
		c, err := ChangedSince([]Document{u.Next, doc}, doc.Version)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ApplyAWS(doc, c.Update(), t0, fuzzLimits)
		if err != nil {
			t.Fatalf("changes %s refused: %v", c.Update(), err)
		}
		if !equalSection(p.Next.Desired, u.Next.Desired) || !equalSection(p.Next.Reported, u.Next.Reported) {
			t.Fatalf("changes %s gave %s, want %s", c.Update(), marshal(p.Next.state()), marshal(u.Next.state()))
		}

		// The same update twice, version left out, leaves the same state.
		again := withoutVersion(req)
		a, err := ApplyAWS(doc, again, t0, fuzzLimits)
		if err != nil {
			t.Fatalf("accepted update refused without its version: %v", err)
		}
		b, err := ApplyAWS(a.Next, again, t0, fuzzLimits)
		if err != nil {
			t.Fatalf("second application refused: %v", err)
		}
		if !equalSection(a.Next.Desired, b.Next.Desired) || !equalSection(a.Next.Reported, b.Next.Reported) ||
			string(marshal(a.Next.metadata())) != string(marshal(b.Next.metadata())) {
			t.Fatalf("not idempotent:\n%s\n%s", marshal(a.Next.state()), marshal(b.Next.state()))
		}
	})
}

func FuzzApplyAlibaba(f *testing.F) {
	for _, s := range [][2]string{
		{`{"method":"update","state":{"reported":{"a":1,"n":{"x":1}}},"version":1}`, `{"method":"delete","state":{"reported":{"n":{"x":"null"}}},"version":2}`},
		{`{"method":"update","state":{"desired":{"a":2}},"version":0}`, `{"method":"update","state":{"desired":"null","reported":{"a":2}},"version":0}`},
		{`{"method":"update","state":{"reported":{"a":[1]}}}`, `{"method":"get"}`},
		{`{}`, `{"method":"delete","state":{"reported":"null"},"version":9}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, first, req []byte) {
		doc := Document{}
		if r, err := ApplyAlibaba(doc, first, t0, fuzzLimits); err == nil && r.Changed {
			doc = r.Next
		}
		r, err := ApplyAlibaba(doc, req, t0, fuzzLimits)
		validJSON(t, "reply", r.Reply)
		if err != nil {
			var e *AlibabaError
			if !errors.As(err, &e) || r.Changed || !r.Next.Equal(doc) {
				t.Fatalf("refusal %v changed=%v", err, r.Changed)
			}
			return
		}
		if !r.Changed {
			if r.Method != "get" || !r.Next.Equal(doc) {
				t.Fatalf("%q left the document unchanged", r.Method)
			}
			return
		}
		checkDocument(t, r.Next)
		if r.Next.Version <= doc.Version {
			t.Fatalf("version %d after %d", r.Next.Version, doc.Version)
		}
		if len(r.Next.Reported) > MaxReportedAttributes {
			t.Fatalf("%d reported attributes", len(r.Next.Reported))
		}
		validJSON(t, "control", Control(r.Next, t0))
	})
}
