package tsl

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

func model(t testing.TB) *Model {
	data, err := os.ReadFile("testdata/model.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseRejectsBadModels(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"not json", `{`, "not TSL JSON"},
		{"bad identifier", `{"properties":[{"identifier":"a-b","dataType":{"type":"int"}}]}`, "properties[0].identifier"},
		{"duplicate", `{"properties":[{"identifier":"a","dataType":{"type":"int"}},{"identifier":"a","dataType":{"type":"int"}}]}`, "defined twice"},
		{"unknown type", `{"properties":[{"identifier":"a","dataType":{"type":"complex"}}]}`, "properties[0].dataType.type"},
		{"min above max", `{"properties":[{"identifier":"a","dataType":{"type":"int","specs":{"min":"10","max":"1"}}}]}`, "specs.max"},
		{"bad step", `{"properties":[{"identifier":"a","dataType":{"type":"float","specs":{"step":"0"}}}]}`, "specs.step"},
		{"non-numeric bound", `{"properties":[{"identifier":"a","dataType":{"type":"float","specs":{"min":"x"}}}]}`, "specs.min"},
		{"enum without values", `{"properties":[{"identifier":"a","dataType":{"type":"enum","specs":{}}}]}`, "at least one"},
		{"bool key", `{"properties":[{"identifier":"a","dataType":{"type":"bool","specs":{"2":"x"}}}]}`, "0 or 1"},
		{"text too long", `{"properties":[{"identifier":"a","dataType":{"type":"text","specs":{"length":"99999"}}}]}`, "specs.length"},
		{"struct in struct", `{"properties":[{"identifier":"a","dataType":{"type":"struct","specs":[{"identifier":"b","dataType":{"type":"struct","specs":[{"identifier":"c","dataType":{"type":"int"}}]}}]}}]}`, "struct cannot hold"},
		{"array size", `{"properties":[{"identifier":"a","dataType":{"type":"array","specs":{"size":"0","item":{"type":"int"}}}}]}`, "specs.size"},
		{"array of bool", `{"properties":[{"identifier":"a","dataType":{"type":"array","specs":{"size":"2","item":{"type":"bool"}}}}]}`, "item.type"},
		{"access mode", `{"properties":[{"identifier":"a","accessMode":"w","dataType":{"type":"int"}}]}`, "accessMode"},
		{"event type", `{"events":[{"identifier":"e","type":"panic","outputData":[]}]}`, "events[0].type"},
		{"call type", `{"services":[{"identifier":"s","callType":"later","inputData":[],"outputData":[]}]}`, "services[0].callType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestValidateProperties(t *testing.T) {
	m := model(t)
	tests := []struct {
		params string
		kind   error
		ident  string
	}{
		{`{"Temperature": 23.5, "FanLevel": 3, "PowerSwitch": 1, "Mode": 2, "Label": "kitchen"}`, nil, ""},
		{`{"Temperature": {"value": 23.5, "time": 1524448722000}}`, nil, ""},
		{`{"PowerSwitch": true}`, nil, ""},
		{`{"LastService": "1524448722000", "Location": {"Lat": 31.2, "Lon": 121.4}, "History": [1, 2, 3]}`, nil, ""},
		{`{"Humidity": 40}`, ErrUnknownIdentifier, "Humidity"},
		{`{"Temperature": "hot"}`, ErrTypeMismatch, "Temperature"},
		{`{"Temperature": 500}`, ErrOutOfRange, "Temperature"},
		{`{"FanLevel": 2.5}`, ErrTypeMismatch, "FanLevel"},
		{`{"FanLevel": 9}`, ErrOutOfRange, "FanLevel"},
		{`{"Mode": 7}`, ErrOutOfRange, "Mode"},
		{`{"PowerSwitch": 2}`, ErrOutOfRange, "PowerSwitch"},
		{`{"Label": "` + strings.Repeat("x", 17) + `"}`, ErrOutOfRange, "Label"},
		{`{"Label": 5}`, ErrTypeMismatch, "Label"},
		{`{"Location": {"Lat": 95}}`, ErrOutOfRange, "Location.Lat"},
		{`{"Location": {"Alt": 5}}`, ErrUnknownIdentifier, "Location.Alt"},
		{`{"History": [1, 2, 3, 4, 5]}`, ErrOutOfRange, "History"},
		{`{"History": ["a"]}`, ErrTypeMismatch, "History[0]"},
		{`{"LastService": "yesterday"}`, ErrTypeMismatch, "LastService"},
		{`[]`, ErrMalformed, ""},
		{`{}`, ErrMalformed, ""},
	}
	for _, tt := range tests {
		_, err := m.ValidateProperties(json.RawMessage(tt.params))
		if tt.kind == nil {
			if err != nil {
				t.Errorf("%s: %v", tt.params, err)
			}
			continue
		}
		var te *Error
		if !errors.Is(err, tt.kind) || !errors.As(err, &te) || te.Identifier != tt.ident {
			t.Errorf("%s: err = %v, want %v naming %q", tt.params, err, tt.kind, tt.ident)
		}
	}
	if Code(&Error{Kind: ErrOutOfRange}) != CodeRange {
		t.Fatal("code")
	}
}

func TestSetEventsAndServices(t *testing.T) {
	m := model(t)
	if _, err := m.ValidatePropertySet(json.RawMessage(`{"Temperature": 20}`)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("set of a read-only property: %v", err)
	}
	if _, err := m.ValidatePropertySet(json.RawMessage(`{"TargetTemp": 21.5}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.ValidateEvent("Overheat", json.RawMessage(`{"value": {"Temperature": 99}, "time": 1524448722000}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.ValidateEvent("Overheat", json.RawMessage(`{"value": {"Temperature": 999}}`)); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("event out of range: %v", err)
	}
	if err := m.ValidateEvent("Flood", json.RawMessage(`{}`)); !errors.Is(err, ErrUnknownIdentifier) {
		t.Fatal(err)
	}
	s, err := m.ValidateServiceInput("Calibrate", json.RawMessage(`{"Offset": 1.5}`))
	if err != nil || s.CallType != "sync" {
		t.Fatal(s, err)
	}
	if _, err := m.ValidateServiceInput("Calibrate", json.RawMessage(`{"Offset": 9}`)); !errors.Is(err, ErrOutOfRange) {
		t.Fatal(err)
	}
	if err := m.ValidateServiceOutput("Calibrate", json.RawMessage(`{"Applied": 1}`)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("testdata/model.json")
	f.Add(data)
	f.Add([]byte(`{"properties":[{"identifier":"a","dataType":{"type":"array","specs":{"size":"2","item":{"type":"struct","specs":[{"identifier":"b","dataType":{"type":"int"}}]}}}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		for _, p := range m.Properties {
			if p.DataType.c == nil {
				t.Fatalf("%s not compiled", p.Identifier)
			}
		}
	})
}

func FuzzValidateProperties(f *testing.F) {
	m := model(f)
	for _, s := range []string{`{"Temperature":1}`, `{"Location":{"Lat":1}}`, `{"History":[1]}`, `{"Mode":{"value":1,"time":"5"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := m.ValidateProperties(b)
		if err != nil {
			return
		}
		// Accepted values re-validate one by one.
		for id, v := range vals {
			one, _ := json.Marshal(map[string]json.RawMessage{id: v.Value})
			if _, err := m.ValidateProperties(one); err != nil {
				t.Fatalf("accepted %s=%s does not re-validate: %v", id, v.Value, err)
			}
		}
	})
}
