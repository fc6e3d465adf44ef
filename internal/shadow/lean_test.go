package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestApplyAWSLean: ApplyAWSLean gives everything ApplyAWS gives but
// update/documents, and DocumentsAWS builds that from the stored forms
// byte for byte, tokens needing escapes and no token included.
func TestApplyAWSLean(t *testing.T) {
	now := time.Unix(1700000000, 0)
	doc := New(&Tombstone{Version: 4, DeletedAt: now}, now) // a new shadow after a delete
	for i, req := range []string{
		`{"state":{"desired":{"color":"red","cfg":{"mode":"eco"}}},"clientToken":"a<b>&\"c\u00e9"}`,
		`{"state":{"reported":{"color":"red<"}}}`,
		`{"state":{"desired":null,"reported":{"n":1.50}},"clientToken":"t3"}`,
	} {
		at := now.Add(time.Duration(i) * time.Second)
		full, err := ApplyAWS(doc, []byte(req), at, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		lean, err := ApplyAWSLean(doc, []byte(req), at, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if lean.Documents != nil || !bytes.Equal(lean.Accepted, full.Accepted) || !bytes.Equal(lean.Delta, full.Delta) ||
			!bytes.Equal(lean.Stored, full.Stored) || lean.Next.Version != full.Next.Version {
			t.Fatalf("update %d: lean %+v, full %+v", i, lean, full)
		}
		var r struct{ ClientToken string }
		if err := json.Unmarshal([]byte(req), &r); err != nil {
			t.Fatal(err)
		}
		prev, _ := doc.MarshalJSON()
		if got := DocumentsAWS(prev, lean.Stored, at.Unix(), r.ClientToken); !bytes.Equal(got, full.Documents) {
			t.Fatalf("update %d documents:\n got %s\nwant %s", i, got, full.Documents)
		}
		doc = full.Next
	}
}

// TestSetReportedLeaf: the leaf set without a request is the update
// {"state":{"reported":{key:value}}} of ApplyAWSLean, byte for byte
// (stored form and delta), its metadata leaf replaced when given.
func TestSetReportedLeaf(t *testing.T) {
	now := time.Unix(1700000000, 0)
	docs := map[string]Document{"none": New(nil, now), "after delete": New(&Tombstone{Version: 4, DeletedAt: now}, now)}
	for name, req := range map[string]string{
		"desired and reported": `{"state":{"desired":{"connected":false,"color":"red"},"reported":{"connected":true,"n":1.50}}}`,
		"desired only":         `{"state":{"desired":{"mode":{"a":1}}}}`,
		"nested connected":     `{"state":{"reported":{"connected":{"x":1}}}}`,
	} {
		r, err := ApplyAWS(New(nil, now), []byte(req), now, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		docs[name] = r.Next
	}
	for name, doc := range docs {
		for _, connected := range []bool{true, false} {
			at := now.Add(time.Minute)
			req := `{"state":{"reported":{"connected":` + strconv.FormatBool(connected) + `}}}`
			want, err := ApplyAWSLean(doc, []byte(req), at, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := SetReportedLeaf(doc, "connected", connected, "", at, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Stored, want.Stored) || !bytes.Equal(got.Delta, want.Delta) || !got.Next.Equal(want.Next) || got.Accepted != nil {
				t.Fatalf("%s, %v:\n got %s delta %s\nwant %s delta %s", name, connected, got.Stored, got.Delta, want.Stored, want.Delta)
			}
			// With a reason: the metadata leaf as given, in Next and its stored form.
			got, err = SetReportedLeaf(doc, "connected", connected, "MQTT_KEEP_ALIVE_TIMEOUT", at, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			want.Next.Metadata.Reported["connected"] = map[string]any{"timestamp": at.Unix(), "reason": "MQTT_KEEP_ALIVE_TIMEOUT"}
			if b, _ := want.Next.MarshalJSON(); !bytes.Equal(got.Stored, b) || !got.Next.Equal(want.Next) {
				t.Fatalf("%s, %v with a reason:\n got %s\nwant %s", name, connected, got.Stored, b)
			}
			if p, err := Parse(got.Stored); err != nil || !p.Equal(got.Next) {
				t.Fatalf("%s: stored form parses to %+v (%v), want %+v", name, p, err, got.Next)
			}
		}
	}
	// Refusals: too big after the merge, the version at its end; doc unchanged.
	big, err := ApplyAWS(New(nil, now), []byte(`{"state":{"reported":{"s":"`+strings.Repeat("x", 8170)+`"}}}`), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := big.Next.MarshalJSON()
	var e *ErrorAWS
	if _, err := SetReportedLeaf(big.Next, "connected", true, "", now, Limits{}); !errors.As(err, &e) || e.Code != 413 {
		t.Fatalf("over the limit: %v", err)
	}
	if after, _ := big.Next.MarshalJSON(); !bytes.Equal(before, after) {
		t.Fatal("a refused update changed the document")
	}
	if _, err := SetReportedLeaf(Document{Version: math.MaxInt64}, "connected", true, "", now, Limits{}); !errors.As(err, &e) || e.Code != 409 {
		t.Fatalf("at the last version: %v", err)
	}
}
