// Package tsl owns thing models in Alibaba IoT Platform's TSL (Thing
// Specification Language) JSON format: properties with typed, ranged data;
// events; services with input and output. It checks a model when an
// operator sets it, and checks device data against it: property posts,
// event posts, property sets and service calls.
package tsl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Limits of a model.
const (
	MaxIdentifierLen = 50
	MaxItems         = 1000
	MaxTextLength    = 10240
	MaxArraySize     = 512
	MaxModelBytes    = 1 << 20
)

// ErrInvalidModel means a model breaks a rule; the error names the path.
var ErrInvalidModel = errors.New("invalid thing model")

// Model is a product's thing model.
type Model struct {
	Schema     string          `json:"schema,omitempty"`
	Profile    json.RawMessage `json:"profile,omitempty"`
	Properties []Property      `json:"properties"`
	Events     []Event         `json:"events"`
	Services   []Service       `json:"services"`

	props    map[string]*Property
	events   map[string]*Event
	services map[string]*Service
}

// Property is a property of the thing.
type Property struct {
	Identifier string   `json:"identifier"`
	Name       string   `json:"name,omitempty"`
	AccessMode string   `json:"accessMode,omitempty"` // "r" or "rw" (default)
	Required   bool     `json:"required,omitempty"`
	Desc       string   `json:"desc,omitempty"`
	DataType   DataType `json:"dataType"`
}

// Field is a member of a struct, event output or service input/output.
// The console repeats properties as fields (the standard post event, the
// set and get services), accessMode and all. The standard get service
// (thing.service.property.get) lists its inputData as identifier strings:
// such a field is a reference (Ref) to the property of that identifier,
// and is written back as the string.
type Field struct {
	Identifier string   `json:"identifier"`
	Name       string   `json:"name,omitempty"`
	AccessMode string   `json:"accessMode,omitempty"`
	Required   bool     `json:"required,omitempty"`
	Desc       string   `json:"desc,omitempty"`
	DataType   DataType `json:"dataType"`
	// Ref marks a field given as a property identifier string.
	Ref bool `json:"-"`
}

type plainField Field

// UnmarshalJSON reads a field object or a property identifier string.
func (f *Field) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var id string
		if err := json.Unmarshal(b, &id); err != nil {
			return err
		}
		*f = Field{Identifier: id, Ref: true}
		return nil
	}
	var pf plainField
	if err := json.Unmarshal(b, &pf); err != nil {
		return err
	}
	*f = Field(pf)
	f.Ref = false
	return nil
}

// MarshalJSON writes a reference back as its identifier string.
func (f Field) MarshalJSON() ([]byte, error) {
	if f.Ref {
		return json.Marshal(f.Identifier)
	}
	return json.Marshal(plainField(f))
}

// Event is an event the thing posts.
type Event struct {
	Identifier string  `json:"identifier"`
	Name       string  `json:"name,omitempty"`
	Type       string  `json:"type"` // info, alert, error
	Required   bool    `json:"required,omitempty"`
	Desc       string  `json:"desc,omitempty"`
	Method     string  `json:"method,omitempty"`
	OutputData []Field `json:"outputData"`
}

// Service is a service the thing offers.
type Service struct {
	Identifier string  `json:"identifier"`
	Name       string  `json:"name,omitempty"`
	CallType   string  `json:"callType"` // async, sync
	Required   bool    `json:"required,omitempty"`
	Desc       string  `json:"desc,omitempty"`
	Method     string  `json:"method,omitempty"`
	InputData  []Field `json:"inputData"`
	OutputData []Field `json:"outputData"`
}

// DataType is a type with its specs, as TSL JSON spells them (numbers in
// specs are often strings: "min": "0").
type DataType struct {
	Type  string          `json:"type"`
	Specs json.RawMessage `json:"specs,omitempty"`

	c *compiled
}

// compiled is a checked data type ready for validation.
type compiled struct {
	kind      string
	min, max  float64
	hasMin    bool
	hasMax    bool
	step      float64
	enum      map[string]string
	length    int
	fields    []Field
	fieldsBy  map[string]*Field
	size      int
	item      *DataType
	hasLength bool
}

// Parse decodes and checks a model.
func Parse(data []byte) (*Model, error) {
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("%w: over %d bytes", ErrInvalidModel, MaxModelBytes)
	}
	var m Model
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: not TSL JSON: %v", ErrInvalidModel, err)
	}
	if err := m.compile(); err != nil {
		return nil, err
	}
	return &m, nil
}

func bad(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidModel, path, fmt.Sprintf(format, args...))
}

func checkIdentifier(path, id string) error {
	if id == "" || len(id) > MaxIdentifierLen {
		return bad(path+".identifier", "must be 1 to %d characters", MaxIdentifierLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return bad(path+".identifier", "%q: use letters, digits and underscores", id)
		}
	}
	return nil
}

func (m *Model) compile() error {
	if len(m.Properties)+len(m.Events)+len(m.Services) > MaxItems {
		return bad("model", "at most %d properties, events and services", MaxItems)
	}
	m.props, m.events, m.services = map[string]*Property{}, map[string]*Event{}, map[string]*Service{}
	for i := range m.Properties {
		p := &m.Properties[i]
		path := fmt.Sprintf("properties[%d]", i)
		if err := checkIdentifier(path, p.Identifier); err != nil {
			return err
		}
		if _, dup := m.props[p.Identifier]; dup {
			return bad(path+".identifier", "%q is defined twice", p.Identifier)
		}
		switch p.AccessMode {
		case "":
			p.AccessMode = "rw"
		case "r", "rw":
		default:
			return bad(path+".accessMode", "must be r or rw")
		}
		if err := p.DataType.compile(path+".dataType", 0); err != nil {
			return err
		}
		m.props[p.Identifier] = p
	}
	for i := range m.Events {
		e := &m.Events[i]
		path := fmt.Sprintf("events[%d]", i)
		if err := checkIdentifier(path, e.Identifier); err != nil {
			return err
		}
		if _, dup := m.events[e.Identifier]; dup {
			return bad(path+".identifier", "%q is defined twice", e.Identifier)
		}
		switch e.Type {
		case "info", "alert", "error":
		default:
			return bad(path+".type", "must be info, alert or error")
		}
		if err := m.resolveRefs(path+".outputData", e.OutputData); err != nil {
			return err
		}
		if _, err := compileFields(path+".outputData", e.OutputData, 0); err != nil {
			return err
		}
		m.events[e.Identifier] = e
	}
	for i := range m.Services {
		s := &m.Services[i]
		path := fmt.Sprintf("services[%d]", i)
		if err := checkIdentifier(path, s.Identifier); err != nil {
			return err
		}
		if _, dup := m.services[s.Identifier]; dup {
			return bad(path+".identifier", "%q is defined twice", s.Identifier)
		}
		switch s.CallType {
		case "":
			s.CallType = "async"
		case "async", "sync":
		default:
			return bad(path+".callType", "must be async or sync")
		}
		if err := m.resolveRefs(path+".inputData", s.InputData); err != nil {
			return err
		}
		if _, err := compileFields(path+".inputData", s.InputData, 0); err != nil {
			return err
		}
		if err := m.resolveRefs(path+".outputData", s.OutputData); err != nil {
			return err
		}
		if _, err := compileFields(path+".outputData", s.OutputData, 0); err != nil {
			return err
		}
		m.services[s.Identifier] = s
	}
	return nil
}

// resolveRefs gives each reference field (an identifier string) the data
// type of the property it names; a reference to no property is refused.
func (m *Model) resolveRefs(path string, fs []Field) error {
	for i := range fs {
		f := &fs[i]
		if !f.Ref {
			continue
		}
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := checkIdentifier(p, f.Identifier); err != nil {
			return err
		}
		prop, ok := m.props[f.Identifier]
		if !ok {
			return bad(p, "%q names no property", clipID(f.Identifier))
		}
		f.DataType = prop.DataType
	}
	return nil
}

// clipID cuts an identifier for an error message.
func clipID(s string) string {
	if len(s) > MaxIdentifierLen {
		return s[:MaxIdentifierLen]
	}
	return s
}

func compileFields(path string, fs []Field, depth int) (map[string]*Field, error) {
	by := map[string]*Field{}
	for i := range fs {
		f := &fs[i]
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := checkIdentifier(p, f.Identifier); err != nil {
			return nil, err
		}
		if _, dup := by[f.Identifier]; dup {
			return nil, bad(p+".identifier", "%q is defined twice", f.Identifier)
		}
		if f.Ref {
			if f.DataType.c == nil {
				return nil, bad(p, "must be a field object")
			}
			by[f.Identifier] = f // its property's type, compiled already
			continue
		}
		if err := f.DataType.compile(p+".dataType", depth); err != nil {
			return nil, err
		}
		by[f.Identifier] = f
	}
	return by, nil
}

// num reads a spec number given as a JSON number or a numeric string.
func num(raw json.RawMessage) (float64, bool, error) {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return 0, false, nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false, err
		}
	} else {
		s = string(raw)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, fmt.Errorf("%.32q is not a number", s)
	}
	return f, true, nil
}

func (dt *DataType) compile(path string, depth int) error {
	c := &compiled{kind: dt.Type}
	specs := dt.Specs
	if len(specs) == 0 || string(specs) == "null" {
		specs = nil
	}
	switch dt.Type {
	case "int", "float", "double":
		var s struct {
			Min, Max, Step json.RawMessage
			Unit, UnitName string
		}
		if specs != nil {
			if err := json.Unmarshal(specs, &s); err != nil {
				return bad(path+".specs", "must be an object with min, max, step, unit")
			}
		}
		var err error
		if c.min, c.hasMin, err = num(s.Min); err != nil {
			return bad(path+".specs.min", "%v", err)
		}
		if c.max, c.hasMax, err = num(s.Max); err != nil {
			return bad(path+".specs.max", "%v", err)
		}
		if c.hasMin && c.hasMax && c.min > c.max {
			return bad(path+".specs.max", "max %v is below min %v", c.max, c.min)
		}
		var hasStep bool
		if c.step, hasStep, err = num(s.Step); err != nil {
			return bad(path+".specs.step", "%v", err)
		}
		if hasStep && c.step <= 0 {
			return bad(path+".specs.step", "must be above 0")
		}
		if dt.Type == "int" {
			for _, v := range []struct {
				has bool
				v   float64
			}{{c.hasMin, c.min}, {c.hasMax, c.max}} {
				if v.has && (v.v != math.Trunc(v.v) || v.v < math.MinInt32 || v.v > math.MaxInt32) {
					return bad(path+".specs", "int bounds must be 32-bit integers")
				}
			}
		}
	case "bool", "enum":
		var m map[string]string
		if specs != nil {
			if err := json.Unmarshal(specs, &m); err != nil {
				return bad(path+".specs", "must map values to labels, e.g. {\"0\":\"off\",\"1\":\"on\"}")
			}
		}
		for k := range m {
			n, err := strconv.ParseInt(k, 10, 32)
			if err != nil || dt.Type == "bool" && n != 0 && n != 1 {
				return bad(path+".specs", "%s key %.32q must be a 32-bit integer%s", dt.Type, k, map[bool]string{true: " 0 or 1", false: ""}[dt.Type == "bool"])
			}
		}
		if dt.Type == "enum" && len(m) == 0 {
			return bad(path+".specs", "an enum needs at least one value")
		}
		c.enum = m
	case "text":
		c.length = MaxTextLength
		if specs != nil {
			var s struct{ Length json.RawMessage }
			if err := json.Unmarshal(specs, &s); err != nil {
				return bad(path+".specs", "must be an object with length")
			}
			n, ok, err := num(s.Length)
			if err != nil || ok && (n < 1 || n > MaxTextLength || n != math.Trunc(n)) {
				return bad(path+".specs.length", "must be an integer from 1 to %d", MaxTextLength)
			}
			if ok {
				c.length, c.hasLength = int(n), true
			}
		}
	case "date":
	case "struct":
		if depth > 0 {
			return bad(path, "a struct cannot hold another struct")
		}
		var fs []Field
		if specs == nil || json.Unmarshal(specs, &fs) != nil || len(fs) == 0 {
			return bad(path+".specs", "a struct needs a list of fields")
		}
		by, err := compileFields(path+".specs", fs, depth+1)
		if err != nil {
			return err
		}
		c.fields, c.fieldsBy = fs, by
	case "array":
		if depth > 0 {
			return bad(path, "an array inside a struct or array is not allowed")
		}
		var s struct {
			Size json.RawMessage
			Item *DataType
		}
		if specs == nil || json.Unmarshal(specs, &s) != nil || s.Item == nil {
			return bad(path+".specs", "an array needs size and item")
		}
		n, ok, err := num(s.Size)
		if err != nil || !ok || n < 1 || n > MaxArraySize || n != math.Trunc(n) {
			return bad(path+".specs.size", "must be an integer from 1 to %d", MaxArraySize)
		}
		switch s.Item.Type {
		case "int", "float", "double", "text", "struct":
		default:
			return bad(path+".specs.item.type", "array items must be int, float, double, text or struct")
		}
		if err := s.Item.compile(path+".specs.item", 0); err != nil {
			return err
		}
		c.size, c.item = int(n), s.Item
	default:
		return bad(path+".type", "%.32q: must be int, float, double, bool, enum, text, date, struct or array", dt.Type)
	}
	dt.c = c
	return nil
}

// Property returns a property by identifier.
func (m *Model) Property(id string) (*Property, bool) { p, ok := m.props[id]; return p, ok }

// Service returns a service by identifier.
func (m *Model) Service(id string) (*Service, bool) { s, ok := m.services[id]; return s, ok }

// Event returns an event by identifier.
func (m *Model) Event(id string) (*Event, bool) { e, ok := m.events[id]; return e, ok }
