package shadow

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// ApplyAWSStored is ApplyAWSLean for the commonest update, a device's
// report of leaves, applied to a document's stored form (MarshalJSON)
// without parsing it: when the document has no desired state and the
// request sets only reported leaves of scalar values (strings, numbers,
// booleans), the stored form's reported state and metadata are merged
// member by member, the untouched ones copied as they are. ok is false,
// with nothing done, for any other request or document: the caller parses
// the document and applies the request with ApplyAWSLean. When ok, the
// result and the refusal are exactly ApplyAWSLean's of the parsed
// document, but for Next, which holds only the version (Stored is the
// document: parse it to read more), and the delta, always empty (no
// desired).
func ApplyAWSStored(stored, req []byte, now time.Time, lim Limits) (res UpdateAWS, ok bool, err error) {
	f, ok := splitStored(stored)
	if !ok {
		return UpdateAWS{}, false, nil
	}
	ts := now.Unix()
	u, token, code, msg := parseAWS(Document{Version: f.version}, req)
	if code != 0 {
		return UpdateAWS{}, true, &ErrorAWS{Code: code, Message: msg, Timestamp: ts, ClientToken: token}
	}
	if u.desired.present || !u.reported.present || len(u.reported.tree) == 0 || len(u.reported.tree) > 16 {
		return UpdateAWS{}, false, nil
	}
	var small [16]string
	keys := sortedKeys(u.reported.tree, small[:0])
	for _, k := range keys {
		switch u.reported.tree[k].(type) {
		case string, json.Number, bool:
		default:
			return UpdateAWS{}, false, nil // a merge, a removal or an array: the trees'
		}
	}
	if f.version >= math.MaxInt64 {
		return UpdateAWS{}, true, &ErrorAWS{Code: 409, Message: MsgVersionConflict, Timestamp: ts, ClientToken: token}
	}
	version := f.version + 1

	b := make([]byte, 0, len(stored)+len(req)+32*len(keys))
	b = append(b, `{"state":{"reported":`...)
	at := len(b)
	if b, ok = mergeLeaves(b, f.reported, keys, u.reported.tree, func(b []byte, v any) ([]byte, bool) { return appendJSON(b, v) }); !ok {
		return UpdateAWS{}, false, nil
	}
	if len(b)-at > lim.maxStateBytes() {
		return UpdateAWS{}, true, &ErrorAWS{Code: 413, Message: MsgTooLarge, Timestamp: ts, ClientToken: token}
	}
	b = append(b, `},"metadata":{"reported":`...)
	if b, ok = mergeLeaves(b, f.metaReported, keys, u.reported.tree, func(b []byte, _ any) ([]byte, bool) { return appendStamp(b, Stamp{At: ts}), true }); !ok {
		return UpdateAWS{}, false, nil
	}
	b = strconv.AppendInt(append(b, `},"version":`...), version, 10)
	b = append(b, '}')
	return UpdateAWS{Next: Document{Version: version}, Accepted: acceptedAWS(u, version, ts, token), Stored: b, ClientToken: token}, true, nil
}

// storedParts is a stored form's parts ApplyAWSStored reads.
type storedParts struct {
	reported, metaReported []byte // the objects, or nil when absent
	version                int64
}

// splitStored reads a stored form as storedForm writes one with no
// desired state: {"state":{["reported":{…}]},"metadata":{["reported":{…}]},"version":N}.
// ok is false for anything else.
func splitStored(b []byte) (f storedParts, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"state":{`))
	if !ok {
		return f, false
	}
	if f.reported, rest, ok = reportedOf(rest); !ok {
		return f, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`},"metadata":{`)); !ok {
		return f, false
	}
	if f.metaReported, rest, ok = reportedOf(rest); !ok || (f.reported == nil) != (f.metaReported == nil) {
		return f, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`},"version":`)); !ok {
		return f, false
	}
	digits, ok := bytes.CutSuffix(rest, []byte{'}'})
	if !ok || len(digits) == 0 || len(digits) > 19 || digits[0] == '0' && len(digits) > 1 {
		return f, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return f, false
		}
	}
	v, err := strconv.ParseInt(string(digits), 10, 64)
	return storedParts{f.reported, f.metaReported, v}, err == nil
}

// reportedOf reads an optional `"reported":{…}` at the start of b: the
// object (nil when absent) and what follows it.
func reportedOf(b []byte) (obj, rest []byte, ok bool) {
	rest, found := bytes.CutPrefix(b, []byte(`"reported":`))
	if !found {
		return nil, b, true
	}
	end, ok := skipValue(rest, 0)
	if !ok || rest[0] != '{' {
		return nil, nil, false
	}
	return rest[:end], rest[end:], true
}

// mergeLeaves appends object obj (nil: none) with each member named in
// keys (sorted) replaced or added, in key order, with the value val
// appends for it (given tree's), the others copied. ok is false when obj
// is not an object as storedForm writes one: compact, its members in key
// order, their names free of escapes.
func mergeLeaves(b, obj []byte, keys []string, tree map[string]any, val func([]byte, any) ([]byte, bool)) ([]byte, bool) {
	b = append(b, '{')
	n := 0 // members appended
	put := func(k string) bool {
		if n++; n > 1 {
			b = append(b, ',')
		}
		b = append(appendString(b, k), ':')
		var ok bool
		b, ok = val(b, tree[k])
		return ok
	}
	if obj != nil {
		var last []byte // the previous member's name
		for i := 1; ; {
			if i >= len(obj) {
				return b, false
			}
			if obj[i] == '}' {
				if i+1 != len(obj) {
					return b, false
				}
				break
			}
			if last != nil {
				if obj[i] != ',' {
					return b, false
				}
				i++
			}
			start := i
			if i >= len(obj) || obj[i] != '"' {
				return b, false
			}
			ne, ok := skipValue(obj, i)
			if !ok {
				return b, false
			}
			name := obj[i+1 : ne-1]
			if bytes.IndexByte(name, '\\') >= 0 || !utf8.Valid(name) || last != nil && bytes.Compare(last, name) >= 0 {
				return b, false
			}
			last = name
			if ne >= len(obj) || obj[ne] != ':' {
				return b, false
			}
			ve, ok := skipValue(obj, ne+1)
			if !ok {
				return b, false
			}
			i = ve
			for len(keys) > 0 && keys[0] < string(name) {
				if !put(keys[0]) {
					return b, false
				}
				keys = keys[1:]
			}
			if len(keys) > 0 && keys[0] == string(name) {
				if !put(keys[0]) {
					return b, false
				}
				keys = keys[1:]
				continue
			}
			if n++; n > 1 {
				b = append(b, ',')
			}
			b = append(b, obj[start:ve]...)
		}
	}
	for _, k := range keys {
		if !put(k) {
			return b, false
		}
	}
	return append(b, '}'), true
}

// skipValue returns the end of the JSON value starting at b[i]; ok is
// false when there is none there or it is not compact. It checks the
// value's shape (brackets, strings, literals, number characters), not
// every rule of JSON: its callers read forms this package wrote.
func skipValue(b []byte, i int) (end int, ok bool) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			for i++; ; {
				j := bytes.IndexByte(b[i:], '"')
				if j < 0 {
					return 0, false
				}
				i += j + 1
				escapes := 0 // the backslashes before the quote: escaped when odd
				for k := i - 2; b[k] == '\\'; k-- {
					escapes++
				}
				if escapes%2 == 0 {
					break
				}
			}
		case c == '{' || c == '[':
			depth++
			i++
		case c == '}' || c == ']':
			if depth == 0 {
				return 0, false
			}
			depth--
			i++
		case c == 't' && bytes.HasPrefix(b[i:], []byte("true")), c == 'n' && bytes.HasPrefix(b[i:], []byte("null")):
			i += 4
		case c == 'f' && bytes.HasPrefix(b[i:], []byte("false")):
			i += 5
		case c == '-' || c >= '0' && c <= '9':
			for i < len(b) && (b[i] == '-' || b[i] == '+' || b[i] == '.' || b[i] == 'e' || b[i] == 'E' || b[i] >= '0' && b[i] <= '9') {
				i++
			}
		case depth > 0 && (c == ',' || c == ':'):
			i++
		default:
			return 0, false
		}
		if depth == 0 {
			return i, true
		}
	}
	return 0, false
}
