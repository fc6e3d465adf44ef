package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// refDecodeJSON is what decodeJSON must give: encoding/json's value with
// UseNumber, for what json.Valid accepts.
func refDecodeJSON(b []byte) (any, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	v, err := refDecodeTree(b)
	return v, err == nil
}

// decodeCases are texts where a hand-written decoder could part from
// encoding/json.
var decodeCases = []string{
	``, ` `, `null`, `true`, `false`, `nul`, `truex`, `"a"`, `"a"x`, `1`, `-`, `-0`, `01`, `1.`, `1.5e`, `1e+`, `1E-7`, `-12.50e+003`,
	`{}`, `[]`, `{"a":[]}`, `[[]]`, `{"a":{}}`, ` {"a" : 1 , "b":[ 1 , 2 ] } `, `{"a":1,}`, `[1,]`, `{,}`, `{"a" 1}`, `{"a":1 "b":2}`,
	`{"a":1,"a":2}`, `{"a":{"x":1},"a":null}`, `{"a":1}}`, `{"a":1} {}`, `{"a":1}x`, "\t{\r\n}\n", "\v{}", "\u00a0{}",
	`"\u0041\u00e9\u4e2d"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`,
	`"\ud83d\uZZZZ"`, `"\u12"`, `"\u12G4"`, `"\x"`, `"\'"`, `"\/\b\f\n\r\t\"\\"`, "\"a\x01\"", "\"a\x7f\"", "\"tab\there\"",
	"\"\xff\"", "\"a\xc3\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"é中😀\"", "{\"k\xff\":\"\\u00e9\xfe\"}", `"abc`, `"abc\`,
	`{"version":99999999999999999999,"n":1e400,"m":-0.0}`, `[1,null,{"a":[null]}]`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 9999) + "[]" + strings.Repeat("}", 9999),
	strings.Repeat(`{"a":`, 10000) + "[]" + strings.Repeat("}", 10000),
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range decodeCases {
		checkDecode(t, []byte(s))
	}
}

func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	got, ok := decodeJSON(b)
	want, wantOK := refDecodeJSON(b)
	if ok != wantOK || !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeJSON(%.80q) = %#v %v, encoding/json %#v %v", b, got, ok, want, wantOK)
	}
	obj, ok := decodeFirstObject(b)
	first, err := refDecodeTree(b)
	want, wantOK = first.(map[string]any)
	if ok != (err == nil && wantOK) || ok && !reflect.DeepEqual(obj, want) {
		t.Fatalf("decodeFirstObject(%.80q) = %#v %v, json.Decoder %#v %v", b, obj, ok, first, err)
	}
}

// diffDoc is the document a differential run starts from: first applied
// by the old code when it accepts it (a version to check against, state
// to merge into and delete from).
func diffDoc(first []byte) Document {
	if u, err := refApplyAWS(Document{}, first, t0, Limits{}, false); err == nil {
		return u.Next
	}
	if r, err := refApplyAlibaba(Document{}, first, t0, Limits{}); err == nil && r.Changed {
		return r.Next
	}
	return Document{Version: 3}
}

func checkAWS(t *testing.T, doc Document, req []byte) {
	t.Helper()
	for _, v := range []struct{ documents, inPlace bool }{{true, false}, {false, false}, {false, true}} {
		documents := v.documents
		in := doc
		if v.inPlace {
			in = doc.clone() // changed by the update
		}
		got, err := applyAWS(in, req, t0, fuzzLimits, documents, v.inPlace)
		want, wantErr := refApplyAWS(doc, req, t0, fuzzLimits, documents)
		var e, we *ErrorAWS
		if errors.As(err, &e) != errors.As(wantErr, &we) || (err == nil) != (wantErr == nil) {
			t.Fatalf("ApplyAWS(%.200q): %v, old code %v", req, err, wantErr)
		}
		if e != nil && *e != *we {
			t.Fatalf("ApplyAWS(%.200q): %+v, old code %+v", req, *e, *we)
		}
		if !sameUpdateAWS(got, want) {
			t.Fatalf("ApplyAWS(%.200q):\n%+v\nold code\n%+v", req, got, want)
		}
	}
}

func sameUpdateAWS(a, b UpdateAWS) bool {
	am, _ := a.Next.MarshalJSON()
	bm, _ := b.Next.MarshalJSON()
	return bytes.Equal(am, bm) && bytes.Equal(a.Accepted, b.Accepted) && bytes.Equal(a.Delta, b.Delta) &&
		bytes.Equal(a.Documents, b.Documents) && bytes.Equal(a.Stored, b.Stored) && a.ClientToken == b.ClientToken &&
		(a.Accepted == nil) == (b.Accepted == nil) && (a.Delta == nil) == (b.Delta == nil) && (a.Documents == nil) == (b.Documents == nil)
}

func checkAlibaba(t *testing.T, doc Document, req []byte) {
	t.Helper()
	got, err := ApplyAlibaba(doc, req, t0, fuzzLimits)
	want, wantErr := refApplyAlibaba(doc, req, t0, fuzzLimits)
	var e, we *AlibabaError
	if errors.As(err, &e) != errors.As(wantErr, &we) || (err == nil) != (wantErr == nil) || e != nil && *e != *we {
		t.Fatalf("ApplyAlibaba(%.200q): %v, old code %v", req, err, wantErr)
	}
	gm, _ := got.Next.MarshalJSON()
	wm, _ := want.Next.MarshalJSON()
	if got.Method != want.Method || got.Changed != want.Changed || got.DesiredChanged != want.DesiredChanged ||
		!bytes.Equal(got.Reply, want.Reply) || !bytes.Equal(gm, wm) {
		t.Fatalf("ApplyAlibaba(%.200q):\n%+v\nold code\n%+v", req, got, want)
	}
}

func checkParse(t *testing.T, b []byte) {
	t.Helper()
	got, err := Parse(b)
	want, wantErr := refParse(b)
	if (err == nil) != (wantErr == nil) || err != nil && (err.Error() != wantErr.Error() || !errors.Is(err, ErrStored)) {
		t.Fatalf("Parse(%.200q): %v, old code %v", b, err, wantErr)
	}
	gm, _ := got.MarshalJSON()
	wm, _ := want.MarshalJSON()
	if !bytes.Equal(gm, wm) {
		t.Fatalf("Parse(%.200q): %s, old code %s", b, gm, wm)
	}
}

// diffSeeds are the golden payloads (a stored document among them), the
// other fuzz tests' requests and the decoder's edge cases.
func diffSeeds(t testing.TB) []string {
	seeds := append([]string{}, decodeCases...)
	golden, err := filepath.Glob("testdata/*.golden")
	if err != nil || len(golden) == 0 {
		t.Fatalf("golden files: %v", err)
	}
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, string(b))
	}
	for _, s := range awsSeeds {
		seeds = append(seeds, s[0], s[1])
	}
	return append(seeds,
		`{"state":{"reported":{"temperature":21.5,"humidity":40,"status":"ok"}},"clientToken":"c-1"}`,
		`{"state":{"desired":{"a":null},"reported":{"a":[1,[2,{"b":"c"}]]}},"version":1,"clientToken":null}`,
		`{"state":{"reported":{"a":1}},"version":null,"clientToken":"\u00e9\ud83d\ude00"}`,
		`{"state":{"reported":{"a":1}},"st\u0061te":null}`,
		`{"state":{"desired":{"x":1}},"state":{"reported":{"y":2}},"version":3}`,
		`{"state":{"reported":{"a":1}},"version":1.0}`, `{"state":{"reported":{"a":1}},"version":-0}`,
		`{"method":"update","state":{"reported":{"a":1,"n":{"x":1}}},"version":1}`,
		`{"method":"delete","state":{"reported":{"n":{"x":"null"}}},"version":2}`,
		`{"method":"update","state":{"desired":"null","reported":{"a":2}},"version":0}`,
		`{"method":"delete","state":{"reported":"null"},"version":9}`,
		`{"method":"get"}`, `{"method":null}`, `{"method":5}`, `{"method":"update","state":{}}`,
		`{"method":"update","state":{"reported":{}},"version":9007199254740993}`,
		`{"state":{"desired":{"l":[{"a":1}]},"reported":{"n":1e400}},"metadata":{"desired":{"l":{"timestamp":17}},"reported":{"n":{"timestamp":"x"}}},"version":1} trailing`,
		`{"state":{},"version":-1}`, `{"state":{},"version":1e3}`, ` [ {"state":{}} ]`,
		// Stored metadata leaves: the forms Parse reads as a Stamp at once
		// and those it leaves to normalize.
		`{"state":{"reported":{"a":1,"b":2,"c":3,"d":4}},"metadata":{"reported":{"a":{"timestamp":17},"b":{ "timestamp" : -0 },"c":{"timestamp":0},"d":{"timestamp":-5}}},"version":2}`,
		`{"state":{"reported":{"a":1,"b":2,"c":3,"d":4,"e":5}},"metadata":{"reported":{"a":{"timestamp":1.5},"b":{"timestamp":1e9},"c":{"timestamp":017},"d":{"timestamp":1234567890123456789},"e":{"timestamp":99999999999999999999}}},"version":2}`,
		`{"state":{"reported":{"a":1,"b":2,"c":3}},"metadata":{"reported":{"a":{"t\u0069mestamp":17},"b":{"timestamp":17,"timestamp":18},"c":{"reason":"gone","timestamp":19}}},"version":2}`,
		`{"state":{"reported":{"a":1,"b":2,"c":{"d":1}}},"metadata":{"reported":{"a":{"timestamp":17,"reason":5},"b":{"timestamp":"17"},"c":{"timestamp":7},"x":{"timestamp":1}}},"version":2}`,
		`{"state":{"reported":{"timestamp":{"timestamp":1}}},"metadata":{"reported":{"timestamp":{"timestamp":{"timestamp":8}}}},"version":2}`,
		`{"state":{"desired":{"a":1}},"metadata":{"desired":{"timestamp":5}},"version":2}`,
		`{"state":{"desired":{"a":1}},"metadata":{"desired":{"a":{"timestamp":5}}},"version":2,"metadata":{"desired":{"a":{"timestamp":6}}}}`,
		`{"state":{"desired":{"a":1}},"metadata":{"desired":{"a":{"timestamp":5 `,
	)
}

// TestParseStamps: Parse reads stored metadata leaves as Stamps, the
// reason kept, whatever form they were stored in; a state key named
// "timestamp" stays state.
func TestParseStamps(t *testing.T) {
	d, err := Parse([]byte(`{"state":{"reported":{"a":1,"b":2,"timestamp":{"timestamp":3}}},` +
		`"metadata":{"reported":{"a":{"timestamp":17},"b":{"reason":"gone","timestamp":18},` +
		`"timestamp":{"timestamp":{ "timestamp" : 19 }}}},"version":4}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": Stamp{At: 17}, "b": Stamp{At: 18, Reason: "gone"},
		"timestamp": map[string]any{"timestamp": Stamp{At: 19}}}
	if !reflect.DeepEqual(d.Metadata.Reported, want) {
		t.Fatalf("metadata %#v, want %#v", d.Metadata.Reported, want)
	}
	if st, ok := d.Reported["timestamp"].(map[string]any); !ok || st["timestamp"] != json.Number("3") {
		t.Fatalf("state %#v", d.Reported)
	}
	if b, _ := d.MarshalJSON(); string(b) != `{"state":{"reported":{"a":1,"b":2,"timestamp":{"timestamp":3}}},`+
		`"metadata":{"reported":{"a":{"timestamp":17},"b":{"reason":"gone","timestamp":18},"timestamp":{"timestamp":{"timestamp":19}}}},"version":4}` {
		t.Fatalf("stored form %s", b)
	}
}

// TestParseStampsOnlyInMetadata: a state object that looks like a
// timestamp, read after the metadata, stays state.
func TestParseStampsOnlyInMetadata(t *testing.T) {
	d, err := Parse([]byte(`{"metadata":{"reported":{"x":{"timestamp":{"timestamp":1}}}},"state":{"reported":{"x":{"timestamp":5}}},"version":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if x, ok := d.Reported["x"].(map[string]any); !ok || x["timestamp"] != json.Number("5") {
		t.Fatalf("state %#v", d.Reported)
	}
}

func TestDiffSeeds(t *testing.T) {
	seeds := diffSeeds(t)
	for _, first := range []string{
		``,
		`{"state":{"desired":{"a":1,"n":{"x":[1,2]},"s":"on"},"reported":{"a":1,"temperature":20}}}`,
		`{"method":"update","state":{"reported":{"a":1,"n":{"x":1}}},"version":1}`,
	} {
		doc := diffDoc([]byte(first))
		for _, s := range seeds {
			checkAWS(t, doc, []byte(s))
			checkAlibaba(t, doc, []byte(s))
		}
	}
	for _, s := range seeds {
		checkDecode(t, []byte(s))
		checkParse(t, []byte(s))
	}
}

// FuzzDecodeDiff holds the one-pass decoder and ApplyAWS, ApplyAlibaba
// and Parse built on it to encoding/json and the code they replaced:
// the same values, and the same results or refusals byte for byte.
func FuzzDecodeDiff(f *testing.F) {
	seeds := diffSeeds(f)
	for i, s := range seeds {
		f.Add([]byte(seeds[(i*7)%len(seeds)]), []byte(s))
	}
	f.Fuzz(func(t *testing.T, first, req []byte) {
		checkDecode(t, req)
		checkParse(t, req)
		doc := diffDoc(first)
		checkAWS(t, doc, req)
		checkAlibaba(t, doc, req)
	})
}

// TestStoredDocAsMaps: storedDoc, which reads a stored document's top
// two levels without maps, makes what decoding them as maps and reading
// those does (duplicates, the last winning; sections that are not
// objects; a metadata that is a bare timestamp; versions that are not).
func TestStoredDocAsMaps(t *testing.T) {
	for _, b := range []string{
		`{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":5}}},"version":3,"timestamp":9}`,
		`{"state":{"reported":{"a":1}},"state":{"desired":{"b":2}},"version":1}`,
		`{"state":{"desired":{"b":2},"desired":7},"metadata":{"desired":{"b":{"timestamp":1}}}}`,
		`{"state":[1,2],"metadata":{"timestamp":4},"version":"7"}`,
		`{"st\u0061te":{"reported":{"x":null,"y":{"z":1}}},"metadata":{"reported":{"y":{"z":{"timestamp":2}}}},"version":2}`,
		`{"version":-1}`, `{"version":1.5}`, `{"version":2,"version":"x"}`, `{}`, ` {"state":{}} trailing`,
	} {
		got, ok, gotErr := storedDoc([]byte(b))
		top, topOK := decodeStored([]byte(b))
		if !ok || !topOK {
			t.Fatalf("%s: storedDoc ok %v, decodeStored ok %v", b, ok, topOK)
		}
		want, wantErr := parseStored(top)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%s: error %v, as maps %v", b, gotErr, wantErr)
		}
		gm, _ := got.MarshalJSON()
		wm, _ := want.MarshalJSON()
		if !bytes.Equal(gm, wm) || got.Version != want.Version {
			t.Fatalf("%s: %s (version %d), as maps %s (version %d)", b, gm, got.Version, wm, want.Version)
		}
	}
}

// TestAWSRequestAsMaps: an update request read without maps of its top
// level and state (decodeAWSRequest) is accepted or refused as the code
// decoding it whole does: duplicates (the last winning), a state that is
// not an object or null, other members, whitespace and trailing bytes.
func TestAWSRequestAsMaps(t *testing.T) {
	doc := diffDoc([]byte(`{"state":{"desired":{"a":1},"reported":{"b":2}}}`))
	for _, req := range []string{
		`{"state":{"reported":{"a":1}},"clientToken":"x"}`,
		` {"state":{"reported":{"a":1}}} `,
		`{"state":{"reported":{"a":1}}} x`,
		`{"state":{"reported":{"a":1}},"state":7}`,
		`{"state":7,"state":{"desired":{"a":2}}}`,
		`{"state":null}`, `{"state":{}}`, `{"state":[]}`, `{"state":"s"}`, `{}`, `[]`, `7`, ``,
		`{"state":{"desired":null,"reported":{"a":1}}}`,
		`{"state":{"desired":1,"x":2}}`, `{"state":{"reported":{"a":1},"reported":5}}`,
		`{"state":{"reported":5,"reported":{"a":1}}}`,
		`{"state":{"desired":{"a":[null]}}}`,
		`{"clientToken":"a","clientToken":5,"state":{}}`, `{"clientToken":5,"clientToken":null,"state":{}}`,
		`{"version":1,"version":"1","state":{}}`, `{"version":"1","version":1,"state":{"reported":{"z":1}}}`,
		`{"version":null,"state":{"reported":{"z":1}}}`, `{"version":2,"state":{"reported":{"z":1}}}`,
		`{"st\u0061te":{"reported":{"z":1}}}`, `{"state":{"repo\u0072ted":{"z":1}}}`,
		`{"state":{"reported":{"a":1}},"metadata":{"x":[1,{"y":2}]},"other":[true,false,null]}`,
		`{"state":{"reported":{"a":1}`, `{"state":{"reported":{"a":1}},}`,
	} {
		checkAWS(t, doc, []byte(req))
	}
}
