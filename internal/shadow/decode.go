package shadow

import (
	"encoding/json"
	"unicode/utf16"
	"unicode/utf8"
)

// maxNesting is how deep encoding/json lets arrays and objects nest
// before it calls a text invalid; the decoder refuses at the same depth.
const maxNesting = 10000

// decoder reads JSON (RFC 8259) into a state tree in one pass over the
// bytes, giving exactly the values encoding/json's Decoder with UseNumber
// gives: numbers as written, duplicate keys the last one winning, escapes
// (surrogate pairs included, an invalid surrogate becoming U+FFFD) and
// bytes that are not UTF-8 (each becoming U+FFFD) unquoted as it does.
// It only says whether the text is JSON, never why not.
type decoder struct {
	b   []byte
	i   int
	buf []byte // unescaped string bytes
	// stored: the text is a stored document (Parse), whose top-level
	// "metadata" member is read with stamps set: there an object that is
	// exactly {"timestamp":N}, N an integer, decodes as Stamp{At: N} (what
	// normalize would make of it) rather than as a map of one key.
	stored, stamps bool
}

// decodeJSON decodes b, one JSON value with optional whitespace around it
// (what json.Valid accepts); ok is false when b is not JSON.
func decodeJSON(b []byte) (v any, ok bool) {
	d := decoder{b: b}
	if v, ok = d.value(0); !ok {
		return nil, false
	}
	if d.space(); d.i != len(b) {
		return nil, false
	}
	return v, true
}

// decodeFirstObject decodes the first value of b (after whitespace) when
// it is an object, ignoring what follows it as a json.Decoder does; ok is
// false otherwise.
func decodeFirstObject(b []byte) (map[string]any, bool) {
	return decodeFirst(decoder{b: b})
}

// decodeStored is decodeFirstObject for a stored document, its metadata
// leaves read as Stamps where they are only a timestamp (decoder.stored).
func decodeStored(b []byte) (map[string]any, bool) {
	return decodeFirst(decoder{b: b, stored: true})
}

// storedDoc reads a stored document as decodeStored and parseStored do
// together, without making maps of its top two levels: the sections of
// its "state" and "metadata" are decoded as trees, its "version" read,
// every other member read and dropped. ok is false when b does not start
// with a JSON object (err is then nil; Parse says why).
func storedDoc(b []byte) (doc Document, ok bool, err error) {
	d := decoder{b: b, stored: true}
	d.space()
	if d.i == len(b) || b[d.i] != '{' {
		return doc, false, nil
	}
	var st, md [2]map[string]any // desired, reported
	var version any
	if !d.members(1, func(k string) bool {
		switch k {
		case "state":
			return d.sections(2, &st)
		case "metadata":
			d.stamps = true
			ok := d.sections(2, &md)
			d.stamps = false
			return ok
		default:
			v, ok := d.value(1)
			if k == "version" {
				version = v
			}
			return ok
		}
	}) {
		return doc, false, nil
	}
	if doc.Version, err = storedVersion(version); err != nil {
		return Document{}, true, err
	}
	doc.Desired, doc.Metadata.Desired = normalize(st[0], md[0])
	doc.Reported, doc.Metadata.Reported = normalize(st[1], md[1])
	return doc, true, nil
}

// members reads the object at d.i, nest deep, calling member for each of
// its members with d at the member's value, which member reads (false:
// not JSON); false when the object is not JSON.
func (d *decoder) members(nest int, member func(k string) bool) bool {
	if nest > maxNesting {
		return false
	}
	d.i++ // {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return true
	}
	for {
		d.space()
		if d.i == len(d.b) || d.b[d.i] != '"' {
			return false
		}
		k, ok := d.key()
		if !ok {
			return false
		}
		d.space()
		if d.i == len(d.b) || d.b[d.i] != ':' {
			return false
		}
		d.i++
		if !member(k) {
			return false
		}
		if done, ok := d.sep('}'); !ok {
			return false
		} else if done {
			return true
		}
	}
}

// decodeAWSRequest reads b, an AWS update request, as decodeJSON would,
// into r: ok is false when b is not one JSON object (with optional
// whitespace around it).
func decodeAWSRequest(b []byte) (r awsRequest, ok bool) {
	d := decoder{b: b}
	d.space()
	if d.i == len(b) || b[d.i] != '{' {
		return r, false
	}
	if !d.members(1, func(k string) bool {
		if k == "state" {
			return d.awsState(&r)
		}
		v, ok := d.value(1)
		switch k {
		case "clientToken":
			r.token = v
		case "version":
			r.version = v
		}
		return ok
	}) {
		return r, false
	}
	if d.space(); d.i != len(b) {
		return r, false
	}
	return r, true
}

// awsState reads the value at d.i, a request's state, into r (forgetting
// an earlier state: the last one wins).
func (d *decoder) awsState(r *awsRequest) bool {
	r.hasState, r.stateObject, r.state, r.other = true, false, nil, false
	r.desired, r.reported, r.hasDesired, r.hasReported = nil, nil, false, false
	d.space()
	if d.i == len(d.b) || d.b[d.i] != '{' {
		var ok bool
		r.state, ok = d.value(1)
		return ok
	}
	r.stateObject = true
	return d.members(2, func(k string) bool {
		v, ok := d.value(2)
		switch k {
		case "desired":
			r.desired, r.hasDesired = v, true
		case "reported":
			r.reported, r.hasReported = v, true
		default:
			r.other = true
		}
		return ok
	})
}

// sections reads the value at d.i, a top-level member of a stored
// document that would be an object nest deep, into dst: its "desired"
// and "reported" members where they are objects, nil otherwise (the
// last of duplicates winning, as in a map); dst is emptied first.
func (d *decoder) sections(nest int, dst *[2]map[string]any) bool {
	*dst = [2]map[string]any{}
	d.space()
	if d.i == len(d.b) || d.b[d.i] != '{' {
		_, ok := d.value(nest - 1)
		return ok
	}
	if d.stamps {
		if _, ok := d.stamp(); ok {
			return true // a Stamp, not an object of sections
		}
	}
	return d.members(nest, func(k string) bool {
		v, ok := d.value(nest)
		switch k {
		case "desired":
			dst[0], _ = v.(map[string]any)
		case "reported":
			dst[1], _ = v.(map[string]any)
		}
		return ok
	})
}

func decodeFirst(d decoder) (map[string]any, bool) {
	b := d.b
	d.space()
	if d.i == len(b) || b[d.i] != '{' {
		return nil, false
	}
	v, ok := d.value(0)
	m, _ := v.(map[string]any)
	return m, ok
}

func (d *decoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value decodes the value at d.i (after whitespace); nest is how many
// containers hold it.
func (d *decoder) value(nest int) (any, bool) {
	d.space()
	if d.i == len(d.b) {
		return nil, false
	}
	switch c := d.b[d.i]; c {
	case '{':
		if d.stamps {
			if st, ok := d.stamp(); ok {
				return st, true
			}
		}
		return d.object(nest + 1)
	case '[':
		return d.array(nest + 1)
	case '"':
		return d.str()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return d.number()
		}
		return nil, false
	}
}

func (d *decoder) literal(lit string) bool {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return false
	}
	d.i += len(lit)
	return true
}

func (d *decoder) object(nest int) (any, bool) {
	m := map[string]any{}
	if !d.members(nest, func(k string) bool {
		metadata := d.stored && nest == 1 && k == "metadata"
		if metadata {
			d.stamps = true
		}
		v, ok := d.value(nest)
		if metadata {
			d.stamps = false
		}
		m[k] = v
		return ok
	}) {
		return nil, false
	}
	return m, true
}

// stamp reads the object at d.i when it is exactly {"timestamp":N} (N an
// integer of at most 18 digits, whitespace anywhere JSON allows it) as a
// Stamp; otherwise it reads nothing and says false, and the object is
// read as any other.
func (d *decoder) stamp() (Stamp, bool) {
	start := d.i
	d.i++ // {
	d.space()
	const key = `"timestamp"`
	if !d.literal(key) {
		d.i = start
		return Stamp{}, false
	}
	d.space()
	if d.i == len(d.b) || d.b[d.i] != ':' {
		d.i = start
		return Stamp{}, false
	}
	d.i++
	d.space()
	neg := d.i < len(d.b) && d.b[d.i] == '-'
	if neg {
		d.i++
	}
	j := digits(d.b, d.i)
	n := j - d.i
	if n == 0 || n > 18 || n > 1 && d.b[d.i] == '0' {
		d.i = start
		return Stamp{}, false
	}
	var v int64
	for _, c := range d.b[d.i:j] {
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	d.i = j
	d.space()
	if d.i == len(d.b) || d.b[d.i] != '}' {
		d.i = start
		return Stamp{}, false
	}
	d.i++
	return Stamp{At: v}, true
}

// sep reads what follows a member or an element: a comma (more follow) or
// closing (done); anything else fails.
func (d *decoder) sep(closing byte) (done, ok bool) {
	d.space()
	if d.i == len(d.b) {
		return false, false
	}
	switch d.b[d.i] {
	case ',':
		d.i++
		return false, true
	case closing:
		d.i++
		return true, true
	}
	return false, false
}

func (d *decoder) array(nest int) (any, bool) {
	if nest > maxNesting {
		return nil, false
	}
	d.i++ // [
	// encoding/json's empty array is not nil (it encodes as []).
	a := []any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, true
	}
	for {
		v, ok := d.value(nest)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if done, ok := d.sep(']'); !ok {
			return nil, false
		} else if done {
			return a, true
		}
	}
}

// number takes -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? as written;
// what follows it is for the caller to judge.
func (d *decoder) number() (any, bool) {
	b, start, i := d.b, d.i, d.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		if i++; i == len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		i = digits(b, i)
	}
	d.i = i
	return json.Number(b[start:i]), true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// key decodes a member's name at d.i (its opening quote): str, without
// allocating the names every document repeats.
func (d *decoder) key() (string, bool) {
	b, start := d.b, d.i+1
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			switch string(b[start:i]) {
			case "timestamp":
				return "timestamp", true
			case "state":
				return "state", true
			case "desired":
				return "desired", true
			case "reported":
				return "reported", true
			case "metadata":
				return "metadata", true
			case "version":
				return "version", true
			case "clientToken":
				return "clientToken", true
			case "method":
				return "method", true
			}
			return string(b[start:i]), true
		case c == '\\' || c < ' ' || c >= utf8.RuneSelf:
			return d.str()
		}
	}
	return "", false
}

// str decodes the string at d.i (its opening quote).
func (d *decoder) str() (string, bool) {
	b, start := d.b, d.i+1
	for i := start; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			return string(b[start:i]), true
		case c == '\\' || c < ' ':
			return d.strEscaped(start, i)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return d.strEscaped(start, i)
			}
			i += size
		}
	}
	return "", false
}

// strEscaped decodes a string from i on, where it needs unescaping (or
// replacing bytes that are not UTF-8) as encoding/json's unquote does;
// b[start:i] needs none.
func (d *decoder) strEscaped(start, i int) (string, bool) {
	b := d.b
	out := append(d.buf[:0], b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.i, d.buf = i+1, out
			return string(out), true
		case c < ' ':
			return "", false
		case c == '\\':
			if i+1 == len(b) {
				return "", false
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(b[i:])
				if r < 0 {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r2 := utf16.DecodeRune(r, hex4(b[i:])); r2 != utf8.RuneError {
						out = utf8.AppendRune(out, r2) // a valid pair: both taken
						i += 6
						continue
					}
					r = utf8.RuneError // the second escape, if any, is read on its own
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return "", false
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			out = utf8.AppendRune(out, r) // RuneError for a byte that is not UTF-8
			i += size
		}
	}
	return "", false
}

// hex4 reads \uXXXX at the start of b; -1 when b does not start so.
func hex4(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
