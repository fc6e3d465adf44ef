package shadow

import (
	"bytes"
	"encoding/json"
	"testing"
)

// reference is what encoding/json writes for v without HTML escaping: what
// marshal wrote before appendJSON, and must still write.
func reference(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// appendJSON writes encoding/json's bytes for every value of a tree, and
// declines what it does not know.
func TestAppendJSON(t *testing.T) {
	var allBytes []byte
	for c := range 256 {
		allBytes = append(allBytes, byte(c))
	}
	tree := func(s string) any {
		v, err := refDecodeTree([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		v    any
		ok   bool
	}{
		{"every byte", string(allBytes), true},
		{"invalid UTF-8", "a\xc3\x28b\xe2\x82c\xff", true},
		{"line and paragraph separators", "a\u2028b\u2029c", true},
		{"HTML and quotes", `<a href="x">&amp;</a> \ / '`, true},
		{"multibyte", "température 20°C 🌡", true},
		{"numbers as written", tree(`[0,-0,1.50,1e3,-2.5E-7,12345678901234567890]`), true},
		{"empty number", json.Number(""), true},
		{"nested", tree(`{"b":{"z":[1,{"y":null,"x":true}],"a":[]},"a":"s","":false,"é":{}}`), true},
		{"nil map and array", []any{map[string]any(nil), []any(nil)}, true},
		{"timestamp", map[string]any{"timestamp": int64(1765000000), "reason": "keepalive timeout", "n": 3}, true},
		{"metadata", Metadata{Reported: map[string]any{"t": map[string]any{"timestamp": int64(1)}}}, true},
		{"metadata empty", Metadata{Desired: map[string]any{}}, true},
		{"state with delta", wireState{Desired: map[string]any{"a": json.Number("1")}, Delta: map[string]any{"a": json.Number("1")}}, true},
		{"state reported only", wireState{Reported: map[string]any{"a": "b"}}, true},
		{"stored", stored{State: wireState{Desired: map[string]any{"a": nil}, Reported: map[string]any{"b": []any{"c"}}}, Metadata: Metadata{Desired: map[string]any{"a": map[string]any{"timestamp": int64(2)}}}, Version: 42}, true},
		{"a float is not a tree's", map[string]any{"f": 1.5}, false},
		{"a struct is not a tree's", struct{ A int }{1}, false},
		{"invalid number", json.Number("1.2.3"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := appendJSON(nil, tt.v)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if want := reference(t, tt.v); !bytes.Equal(got, want) {
				t.Fatalf("\n got %q\nwant %q", got, want)
			}
			if m := marshal(tt.v); !bytes.Equal(m, got) || marshalledLen(tt.v) != len(got) {
				t.Fatalf("marshal %q (len %d), appendJSON %q", m, marshalledLen(tt.v), got)
			}
		})
	}
}

// Any JSON a device may send, decoded as a tree, encodes as encoding/json
// encodes it; so does any string.
func FuzzAppendJSON(f *testing.F) {
	for _, s := range awsSeeds {
		f.Add(s[0], s[1])
	}
	f.Add(`{"a":"\u2028\ud800x\u0007"}`, "\xff\x00<>&")
	f.Fuzz(func(t *testing.T, doc, s string) {
		if got, ok := appendJSON(nil, s); !ok || !bytes.Equal(got, reference(t, s)) {
			t.Fatalf("string %q: %q %v", s, got, ok)
		}
		v, err := refDecodeTree([]byte(doc))
		if err != nil {
			return
		}
		if got, ok := appendJSON(nil, v); !ok || !bytes.Equal(got, reference(t, v)) {
			t.Fatalf("tree %s: %q %v", doc, got, ok)
		}
		// A tree's metadata, encoded as it is walked, is encoding/json's
		// of the tree metaFor builds.
		if got := appendMeta(nil, v, 1700000000); !bytes.Equal(got, reference(t, metaFor(v, 1700000000))) {
			t.Fatalf("metadata of %s: %q", doc, got)
		}
	})
}

// The update/accepted and update/delta payload is encoding/json's encoding of its struct,
// with or without a token, and for values no tree holds.
func TestMessageAWS(t *testing.T) {
	tree := map[string]any{"a": json.Number("1"), "b": []any{"<x>", nil}}
	tests := []struct {
		name      string
		state, md map[string]any
		token     string
	}{
		{"both sections", map[string]any{"desired": tree, "reported": nil}, map[string]any{"desired": metaFor(tree, 7), "reported": stamp(7)}, "tok\"\u2028"},
		{"no token", map[string]any{"reported": tree}, map[string]any{"reported": metaFor(tree, 7)}, ""},
		{"empty", map[string]any{}, map[string]any{}, "t"},
		{"not a tree's value", map[string]any{"reported": map[string]any{"f": 1.5}}, map[string]any{}, "t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := reference(t, struct {
				State       map[string]any `json:"state"`
				Metadata    map[string]any `json:"metadata"`
				Version     int64          `json:"version"`
				Timestamp   int64          `json:"timestamp"`
				ClientToken string         `json:"clientToken,omitempty"`
			}{tt.state, tt.md, 3, 7, tt.token})
			if got := MessageAWS(tt.state, tt.md, 3, 7, tt.token); !bytes.Equal(got, want) {
				t.Fatalf("\n got %s\nwant %s", got, want)
			}
		})
	}
}
