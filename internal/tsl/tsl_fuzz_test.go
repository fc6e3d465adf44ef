package tsl

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// echoes reports whether msg repeats more than maxEchoed consecutive bytes
// of in: errors go back to devices in replies and to operators in API
// answers.
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

// fuzzModels are model seeds: the test model and small ones for each type.
func fuzzModels(f *testing.F) [][]byte {
	data, err := os.ReadFile("testdata/model.json")
	if err != nil {
		f.Fatal(err)
	}
	export, err := os.ReadFile("testdata/console_export.json")
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{data, export,
		[]byte(`{"properties":[{"identifier":"p","dataType":{"type":"int"}}],"services":[{"identifier":"get","inputData":["p"],"outputData":[{"identifier":"p","accessMode":"r","required":true,"dataType":{"type":"int"}}]}]}`),
		[]byte(`{"properties":[{"identifier":"e","dataType":{"type":"enum","specs":{"-9223372036854775808":"min","2":"two"}}}]}`),
		[]byte(`{"properties":[{"identifier":"i","dataType":{"type":"int","specs":{"min":"-2147483648","max":2147483647}}},{"identifier":"t","accessMode":"r","dataType":{"type":"text","specs":{"length":"3"}}}]}`),
		[]byte(`{"properties":[{"identifier":"a","dataType":{"type":"array","specs":{"size":"2","item":{"type":"struct","specs":[{"identifier":"b","dataType":{"type":"int"}}]}}}}]}`),
		[]byte(`{"properties":[{"identifier":"f","dataType":{"type":"float","specs":{"min":"` + strings.Repeat("9", 100) + `x"}}}]}`),
		[]byte(`{"properties":[{"identifier":"b","dataType":{"type":"bool","specs":{"` + strings.Repeat("1", 100) + `":"x"}}}]}`),
		[]byte(`{"events":[{"identifier":"e","type":"info","outputData":[{"identifier":"d","dataType":{"type":"date"}}]}],"services":[{"identifier":"s","inputData":[],"outputData":[]}]}`),
	}
}

// FuzzModelRoundTrip: an accepted model, written back as JSON, parses to a
// model that writes back the same; a refused one says why in an error that
// wraps ErrInvalidModel and repeats at most maxEchoed bytes of the model.
func FuzzModelRoundTrip(f *testing.F) {
	for _, m := range fuzzModels(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m *Model
		var err error
		limit := 64*uint64(len(b)) + 1<<20
		if n := allocated(func() { m, err = Parse(b) }); n > limit {
			// Measured again: other goroutines of the fuzzer allocate too.
			if n2 := allocated(func() { Parse(b) }); n2 > limit {
				t.Fatalf("parsing %d bytes allocated %d, then %d", len(b), n, n2)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidModel) {
				t.Fatalf("%v does not wrap ErrInvalidModel", err)
			}
			if echoes(err.Error(), b) {
				t.Fatalf("error %q repeats over %d bytes of the model", err, maxEchoed)
			}
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("writing back %s: %v", b, err)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("%s parsed, but its rewrite %s does not: %v", b, out, err)
		}
		out2, _ := json.Marshal(m2)
		if !bytes.Equal(out, out2) {
			t.Fatalf("rewrite not stable:\n%s\n%s", out, out2)
		}
	})
}

// FuzzModelValidate checks device data against a fuzzed model: a refusal
// is an *Error of a documented kind that repeats at most maxEchoed bytes of
// the data; an accepted number is within its bounds, an accepted enum or
// bool value is one of its keys, an accepted text fits its length; and
// checking never changes the model.
func FuzzModelValidate(f *testing.F) {
	params := []string{
		`{"Temperature": 23.5, "FanLevel": 3, "PowerSwitch": 1, "Mode": 2, "Label": "kitchen"}`,
		`{"Temperature": {"value": 23.5, "time": 1524448722000}}`, `{"PowerSwitch": true}`,
		`{"LastService": "1524448722000", "Location": {"Lat": 31.2, "Lon": 121.4}, "History": [1, 2, 3]}`,
		`{"e": 1e300}`, `{"e": 2}`, `{"i": 2147483647.0}`, `{"t": "abc"}`, `{"a": [{"b": 1}]}`,
		`{"` + strings.Repeat("x", 200) + `": 1}`, `{"Location": {"` + strings.Repeat("y", 200) + `": 1}}`,
		`{"value": {"d": "5"}, "time": 1}`, `[]`, `{}`, `null`,
	}
	models := fuzzModels(f)
	for _, p := range params {
		f.Add(models[0], []byte(p))
	}
	for i, m := range models[1:] {
		f.Add(m, []byte(params[4+i]))
	}
	base, err := Parse(models[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, model, data []byte) {
		m, err := Parse(model)
		if err != nil {
			m = base // most mutations break the model: check the data against the test one
		}
		before, _ := json.Marshal(m)
		checkErr := func(err error) {
			if err == nil {
				return
			}
			var te *Error
			if !errors.As(err, &te) || te.Kind == nil || Code(err) < CodeCheckFailed || Code(err) > CodeNoModel {
				t.Fatalf("%v is not a check failure", err)
			}
			if echoes(err.Error(), data) || echoes(te.Identifier, data) {
				t.Fatalf("error %q repeats over %d bytes of the data", err, maxEchoed)
			}
		}
		for _, set := range []bool{false, true} {
			vals, err := m.properties(data, set)
			checkErr(err)
			for id, v := range vals {
				p, ok := m.Property(id)
				if !ok || set && p.AccessMode == "r" {
					t.Fatalf("accepted %s (set %v)", id, set)
				}
				checkAccepted(t, id, p.DataType.c, v.Value)
			}
		}
		for _, e := range m.Events {
			checkErr(m.ValidateEvent(e.Identifier, data))
		}
		for _, s := range m.Services {
			_, err := m.ValidateServiceInput(s.Identifier, data)
			checkErr(err)
			checkErr(m.ValidateServiceOutput(s.Identifier, data))
		}
		if after, _ := json.Marshal(m); !bytes.Equal(before, after) {
			t.Fatalf("checking %s changed the model", data)
		}
	})
}

// checkAccepted re-checks an accepted value against its compiled type
// without the validator's code.
func checkAccepted(t *testing.T, id string, c *compiled, raw json.RawMessage) {
	t.Helper()
	raw = bytes.TrimSpace(raw)
	switch c.kind {
	case "int", "float", "double":
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || c.hasMin && f < c.min || c.hasMax && f > c.max {
			t.Fatalf("%s: accepted %s outside [%v, %v]", id, raw, c.min, c.max)
		}
		if c.kind == "int" && (f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32) {
			t.Fatalf("%s: accepted %s as a 32-bit int", id, raw)
		}
	case "bool", "enum":
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil && c.kind == "bool" {
			switch string(raw) {
			case "true":
				f, err = 1, nil
			case "false":
				f, err = 0, nil
			}
		}
		if err != nil {
			t.Fatalf("%s: accepted %s as %s", id, raw, c.kind)
		}
		if c.kind == "bool" && f != 0 && f != 1 {
			t.Fatalf("%s: accepted bool %s", id, raw)
		}
		if len(c.enum) > 0 {
			found := false
			for k := range c.enum {
				if n, err := strconv.ParseFloat(k, 64); err == nil && n == f {
					found = true
				}
			}
			if !found {
				t.Fatalf("%s: accepted %s, not a key of %v", id, raw, c.enum)
			}
		}
	case "text":
		var s string
		if json.Unmarshal(raw, &s) != nil || len([]rune(s)) > c.length {
			t.Fatalf("%s: accepted text %s over %d characters", id, raw, c.length)
		}
	case "array":
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil || len(items) > c.size {
			t.Fatalf("%s: accepted array %s over %d items", id, raw, c.size)
		}
		for _, it := range items {
			checkAccepted(t, id+"[]", c.item.c, it)
		}
	case "struct":
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			t.Fatalf("%s: accepted struct %s", id, raw)
		}
		for k, v := range obj {
			fd, ok := c.fieldsBy[k]
			if !ok {
				t.Fatalf("%s: accepted unknown field %s", id, k)
			}
			checkAccepted(t, id+"."+k, fd.DataType.c, v)
		}
	}
}
