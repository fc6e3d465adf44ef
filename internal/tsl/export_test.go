package tsl

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
)

func consoleExport(t testing.TB) (*Model, []byte) {
	t.Helper()
	data, err := os.ReadFile("testdata/console_export.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data)
	if err != nil {
		t.Fatalf("the console export does not load: %v", err)
	}
	return m, data
}

// TestConsoleExportRoundTrip: a TSL as the Alibaba console exports it
// (standard post event, set and get services, the get service's inputData
// as identifier strings) loads unchanged; written back and loaded again it
// is the same model, and the identifier strings stay strings.
func TestConsoleExportRoundTrip(t *testing.T) {
	m, _ := consoleExport(t)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Parse(out)
	if err != nil {
		t.Fatalf("rewrite does not load: %v\n%s", err, out)
	}
	out2, _ := json.Marshal(m2)
	if string(out) != string(out2) {
		t.Fatalf("rewrite not stable:\n%s\n%s", out, out2)
	}
	if !reflect.DeepEqual(stripCompiled(m), stripCompiled(m2)) {
		t.Fatal("models differ after a round trip")
	}
	var back struct {
		Services []struct {
			Identifier string
			InputData  []json.RawMessage
		}
	}
	json.Unmarshal(out, &back)
	for _, s := range back.Services {
		if s.Identifier == "get" {
			if len(s.InputData) != 13 || string(s.InputData[0]) != `"LightSwitch"` {
				t.Fatalf("get inputData written back as %s", s.InputData)
			}
		}
	}
	get, _ := m.Service("get")
	if !get.InputData[7].Ref || get.InputData[7].DataType.Type != "struct" {
		t.Fatalf("get's GeoLocation input: %+v", get.InputData[7])
	}
}

// stripCompiled returns the model's exported shape (what JSON carries).
func stripCompiled(m *Model) map[string]any {
	b, _ := json.Marshal(m)
	var v map[string]any
	json.Unmarshal(b, &v)
	return v
}

// TestConsoleExportValidates checks device data against the export.
func TestConsoleExportValidates(t *testing.T) {
	m, _ := consoleExport(t)
	good := `{"LightSwitch":1,"Brightness":80,"ColorTemperature":4500.5,"PowerConsumption":{"value":12.34,"time":1700000000000},
		"DeviceLabel":"客厅","InstallDate":"1700000000000","WorkMode":2,"GeoLocation":{"Longitude":121.4,"Latitude":31.2,"Altitude":10,"CoordinateSystem":1},
		"IntArray":[1,2,3],"FloatArray":[1.5],"DoubleArray":[0.25,0.5],"TextArray":["a","b"],"StructArray":[{"Channel":1,"On":1},{"Channel":16,"On":0}]}`
	vals, err := m.ValidateProperties(json.RawMessage(good))
	if err != nil || len(vals) != 13 || vals["PowerConsumption"].Time != 1700000000000 {
		t.Fatalf("good post: %v %v", vals, err)
	}
	for _, tt := range []struct {
		post, id string
		kind     error
	}{
		{`{"Brightness":101}`, "Brightness", ErrOutOfRange},
		{`{"WorkMode":9}`, "WorkMode", ErrOutOfRange},
		{`{"LightSwitch":"on"}`, "LightSwitch", nil},
		{`{"GeoLocation":{"Longitude":500}}`, "", ErrOutOfRange},
		{`{"IntArray":[1,2,3,4,5,6,7,8,9,10,11]}`, "IntArray", nil},
		{`{"TextArray":[1]}`, "", nil},
		{`{"StructArray":[{"Channel":0}]}`, "", ErrOutOfRange},
		{`{"Unknown":1}`, "Unknown", ErrUnknownIdentifier},
	} {
		_, err := m.ValidateProperties(json.RawMessage(tt.post))
		var te *Error
		if !asError(err, &te) || tt.kind != nil && !isKind(err, tt.kind) || tt.id != "" && te.Identifier != tt.id {
			t.Errorf("%s: %v", tt.post, err)
		}
	}
	if _, err := m.ValidatePropertySet(json.RawMessage(`{"PowerConsumption":1}`)); !isKind(err, ErrReadOnly) {
		t.Errorf("set of a read-only property: %v", err)
	}
	for _, tt := range []struct {
		event, params string
		ok            bool
	}{
		{"Overheat", `{"value":{"Temperature":95.5,"At":"1700000000000"},"time":1700000000000}`, true},
		{"Overheat", `{"Temperature":200}`, false},
		{"Error", `{"value":{"ErrorCode":1,"Detail":"driver"}}`, true},
		{"Error", `{"value":{"ErrorCode":7}}`, false},
		{"Heartbeat", `{"value":{"Uptime":3600}}`, true},
		{"Nope", `{}`, false},
	} {
		if err := m.ValidateEvent(tt.event, json.RawMessage(tt.params)); (err == nil) != tt.ok {
			t.Errorf("event %s %s: %v", tt.event, tt.params, err)
		}
	}
	for _, tt := range []struct {
		service, params string
		ok              bool
	}{
		{"get", `["LightSwitch","GeoLocation"]`, true},
		{"get", `["Nope"]`, false},
		{"get", `[1]`, false},
		{"set", `{"Brightness":50}`, true},
		{"ToggleLight", `{"DelaySeconds":5}`, true},
		{"ToggleLight", `{"DelaySeconds":-1}`, false},
		{"SelfTest", `{"Depth":1,"Channels":[1,2]}`, true},
	} {
		if _, err := m.ValidateServiceInput(tt.service, json.RawMessage(tt.params)); (err == nil) != tt.ok {
			t.Errorf("service %s %s: %v", tt.service, tt.params, err)
		}
	}
	if s, _ := m.Service("SelfTest"); s.CallType != "sync" {
		t.Errorf("SelfTest callType %q", s.CallType)
	}
	if err := m.ValidateServiceOutput("SelfTest", json.RawMessage(`{"Passed":1,"Report":"ok","Readings":[0.5]}`)); err != nil {
		t.Errorf("SelfTest output: %v", err)
	}
}

// TestRefsOnlyWhereTheConsolePutsThem: an identifier string is a field
// only in event and service data, and only for a defined property.
func TestRefsOnlyWhereTheConsolePutsThem(t *testing.T) {
	for _, bad := range []string{
		`{"properties":[{"identifier":"a","dataType":{"type":"int"}}],"services":[{"identifier":"get","inputData":["b"]}]}`,
		`{"properties":[{"identifier":"a","dataType":{"type":"struct","specs":["a"]}}]}`,
		`{"properties":[{"identifier":"a","dataType":{"type":"int"}}],"services":[{"identifier":"get","inputData":["a b"]}]}`,
	} {
		if _, err := Parse([]byte(bad)); !isKind(err, ErrInvalidModel) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func asError(err error, te **Error) bool { return errors.As(err, te) }
func isKind(err, kind error) bool        { return errors.Is(err, kind) }
