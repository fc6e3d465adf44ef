package tsl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Sentinels of data checks.
var (
	ErrUnknownIdentifier = errors.New("identifier not in the thing model")
	ErrTypeMismatch      = errors.New("value has the wrong type")
	ErrOutOfRange        = errors.New("value out of range")
	ErrReadOnly          = errors.New("property is read-only")
	ErrMissing           = errors.New("required value missing")
	ErrMalformed         = errors.New("params malformed")
)

// Codes in Alink replies for data that breaks the model (corral's, in the
// platform's 63xx range for thing-model checks).
const (
	CodeCheckFailed = 6300
	CodeUnknown     = 6301
	CodeType        = 6302
	CodeRange       = 6303
	CodeReadOnly    = 6304
	CodeMissing     = 6305
	CodeNoModel     = 6306
)

// Error is a check failure naming the offending identifier.
type Error struct {
	Kind       error
	Identifier string
	Reason     string
}

func (e *Error) Error() string {
	if e.Identifier == "" {
		return e.Reason
	}
	return e.Identifier + ": " + e.Reason
}

// Unwrap exposes the kind.
func (e *Error) Unwrap() error { return e.Kind }

// Code is the Alink reply code of a check failure.
func Code(err error) int {
	switch {
	case errors.Is(err, ErrUnknownIdentifier):
		return CodeUnknown
	case errors.Is(err, ErrTypeMismatch):
		return CodeType
	case errors.Is(err, ErrOutOfRange):
		return CodeRange
	case errors.Is(err, ErrReadOnly):
		return CodeReadOnly
	case errors.Is(err, ErrMissing):
		return CodeMissing
	}
	return CodeCheckFailed
}

// fail makes a check failure. The identifier may come from the device's
// data (an unknown property), so it is clipped: errors go back in replies
// and into logs.
func fail(kind error, id, format string, args ...any) *Error {
	return &Error{Kind: kind, Identifier: clip(id), Reason: fmt.Sprintf(format, args...)}
}

// maxEchoed bounds how much of a device's data an error repeats.
const maxEchoed = 64

// clip cuts s to at most maxEchoed bytes on a character boundary, marking
// the cut with "…".
func clip(s string) string {
	if len(s) <= maxEchoed {
		return s
	}
	n := maxEchoed
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Value is a checked property value and the time the device gave it
// (UTC milliseconds; 0 when not given).
type Value struct {
	Value json.RawMessage `json:"value"`
	Time  int64           `json:"time,omitempty"`
}

func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if len(raw) == 0 || dec.Decode(&m) != nil || m == nil {
		return nil, fail(ErrMalformed, "", "params must be a JSON object")
	}
	return m, nil
}

// ValidateProperties checks a property post (thing.event.property.post):
// values plain or as {"value":…,"time":…}. All or nothing.
func (m *Model) ValidateProperties(params json.RawMessage) (map[string]Value, error) {
	return m.properties(params, false)
}

// ValidatePropertySet checks a property set (thing.service.property.set):
// read-only properties are refused.
func (m *Model) ValidatePropertySet(params json.RawMessage) (map[string]Value, error) {
	return m.properties(params, true)
}

func (m *Model) properties(params json.RawMessage, set bool) (map[string]Value, error) {
	obj, err := decodeObject(params)
	if err != nil {
		return nil, err
	}
	if len(obj) == 0 {
		return nil, fail(ErrMalformed, "", "params hold no properties")
	}
	out := make(map[string]Value, len(obj))
	for id, raw := range obj {
		p, ok := m.props[id]
		if !ok {
			return nil, fail(ErrUnknownIdentifier, id, "no such property in the thing model")
		}
		if set && p.AccessMode == "r" {
			return nil, fail(ErrReadOnly, id, "read-only property cannot be set")
		}
		v := Value{Value: raw}
		if !set {
			if inner, ok := timed(raw); ok {
				v = inner
			}
		}
		if err := p.DataType.check(id, v.Value); err != nil {
			return nil, err
		}
		out[id] = v
	}
	return out, nil
}

// timed unwraps {"value": v, "time": ms}.
func timed(raw json.RawMessage) (Value, bool) {
	var w struct {
		Value json.RawMessage `json:"value"`
		Time  json.RawMessage `json:"time"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if len(raw) == 0 || raw[0] != '{' || dec.Decode(&w) != nil || len(w.Value) == 0 {
		return Value{}, false
	}
	v := Value{Value: w.Value}
	if len(w.Time) > 0 {
		t, err := strconv.ParseInt(string(bytes.Trim(w.Time, `"`)), 10, 64)
		if err != nil {
			return Value{}, false
		}
		v.Time = t
	}
	return v, true
}

// ValidateEvent checks an event post (thing.event.{id}.post): params
// {"value":{…},"time":…} or the output fields directly.
func (m *Model) ValidateEvent(id string, params json.RawMessage) error {
	e, ok := m.events[id]
	if !ok {
		return fail(ErrUnknownIdentifier, id, "no such event in the thing model")
	}
	data := params
	if v, ok := timed(params); ok {
		data = v.Value
	}
	return checkFields(id, e.OutputData, data)
}

// ValidateServiceInput checks a service call's input.
func (m *Model) ValidateServiceInput(id string, params json.RawMessage) (*Service, error) {
	s, ok := m.services[id]
	if !ok {
		return nil, fail(ErrUnknownIdentifier, id, "no such service in the thing model")
	}
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	if t := bytes.TrimSpace(params); len(t) > 0 && t[0] == '[' {
		return s, checkNames(id, s.InputData, t)
	}
	return s, checkFields(id, s.InputData, params)
}

// checkNames checks the input of the standard get service
// (thing.service.property.get): a list of property identifiers, each one
// of the service's inputData.
func checkNames(owner string, fs []Field, raw json.RawMessage) error {
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return fail(ErrMalformed, owner, "must be a JSON object or a list of identifiers")
	}
	for _, n := range names {
		found := false
		for i := range fs {
			if fs[i].Identifier == n {
				found = true
				break
			}
		}
		if !found {
			return fail(ErrUnknownIdentifier, owner+"."+n, "no such input")
		}
	}
	return nil
}

// ValidateServiceOutput checks a service reply's data.
func (m *Model) ValidateServiceOutput(id string, data json.RawMessage) error {
	s, ok := m.services[id]
	if !ok {
		return fail(ErrUnknownIdentifier, id, "no such service in the thing model")
	}
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return checkFields(id, s.OutputData, data)
}

// checkFields checks an object against a field list: no unknown fields,
// every field of the right type (fields may be omitted).
func checkFields(owner string, fs []Field, raw json.RawMessage) error {
	obj, err := decodeObject(raw)
	if err != nil {
		return fail(ErrMalformed, owner, "must be a JSON object")
	}
	by := make(map[string]*Field, len(fs))
	for i := range fs {
		by[fs[i].Identifier] = &fs[i]
	}
	for k, v := range obj {
		f, ok := by[k]
		if !ok {
			return fail(ErrUnknownIdentifier, owner+"."+k, "no such field")
		}
		if err := f.DataType.check(owner+"."+k, v); err != nil {
			return err
		}
	}
	return nil
}

// check validates one value.
func (dt *DataType) check(id string, raw json.RawMessage) error {
	c := dt.c
	if c == nil {
		return fail(ErrMalformed, id, "data type not compiled")
	}
	raw = bytes.TrimSpace(raw)
	switch c.kind {
	case "int", "float", "double":
		f, err := number(raw)
		if err != nil {
			return fail(ErrTypeMismatch, id, "must be a number (%s)", c.kind)
		}
		if c.kind == "int" && (f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32) {
			return fail(ErrTypeMismatch, id, "must be a 32-bit integer")
		}
		if c.hasMin && f < c.min || c.hasMax && f > c.max {
			return fail(ErrOutOfRange, id, "%v is outside [%v, %v]", f, c.min, c.max)
		}
	case "bool", "enum":
		f, err := number(raw)
		if err != nil && c.kind == "bool" {
			var b bool
			if json.Unmarshal(raw, &b) == nil {
				f, err = map[bool]float64{false: 0, true: 1}[b], nil
			}
		}
		if err != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
			return fail(ErrTypeMismatch, id, "must be a 32-bit integer %s value", c.kind)
		}
		key := strconv.FormatInt(int64(f), 10)
		if c.kind == "bool" && key != "0" && key != "1" {
			return fail(ErrOutOfRange, id, "bool must be 0 or 1")
		}
		if len(c.enum) > 0 {
			if _, ok := c.enum[key]; !ok {
				return fail(ErrOutOfRange, id, "%s is not one of the listed values", key)
			}
		}
	case "text":
		var s string
		if json.Unmarshal(raw, &s) != nil || len(raw) == 0 || raw[0] != '"' {
			return fail(ErrTypeMismatch, id, "must be a string")
		}
		if n := utf8.RuneCountInString(s); n > c.length {
			return fail(ErrOutOfRange, id, "%d characters, at most %d", n, c.length)
		}
	case "date":
		var s string
		if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
			raw = []byte(s)
		}
		if _, err := strconv.ParseInt(string(raw), 10, 64); err != nil {
			return fail(ErrTypeMismatch, id, "must be UTC milliseconds")
		}
	case "struct":
		return checkStruct(id, c, raw)
	case "array":
		var items []json.RawMessage
		if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			return fail(ErrTypeMismatch, id, "must be an array")
		}
		if len(items) > c.size {
			return fail(ErrOutOfRange, id, "%d items, at most %d", len(items), c.size)
		}
		for i, it := range items {
			if err := c.item.check(fmt.Sprintf("%s[%d]", id, i), it); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkStruct(id string, c *compiled, raw json.RawMessage) error {
	obj, err := decodeObject(raw)
	if err != nil {
		return fail(ErrTypeMismatch, id, "must be an object")
	}
	for k, v := range obj {
		f, ok := c.fieldsBy[k]
		if !ok {
			return fail(ErrUnknownIdentifier, id+"."+k, "no such field")
		}
		if err := f.DataType.check(id+"."+k, v); err != nil {
			return err
		}
	}
	return nil
}

func number(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || raw[0] == '"' || raw[0] == '{' || raw[0] == '[' || raw[0] == 't' || raw[0] == 'f' || raw[0] == 'n' {
		return 0, errors.New("not a number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("not a number")
	}
	return f, nil
}
