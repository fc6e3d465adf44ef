package shadow

import (
	"bytes"
	"encoding/json"
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
