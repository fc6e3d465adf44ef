package shadow

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
)

// A state tree is what encoding/json decodes with UseNumber: map[string]any
// for objects, []any for arrays, json.Number, string, bool and nil. Maps
// marshal with sorted keys, so every payload built from trees is
// deterministic. Metadata trees have the shape of the state they describe,
// each leaf being a Stamp ({"timestamp":T} on the wire); which nodes are
// leaves is always read from the state tree, never guessed from the
// metadata (a state key may be called "timestamp").

// MaxDepth is the deepest a desired or reported section may nest: the
// section object is level 1, so {"a":{"b":{"c":{"d":{"e":{"f":1}}}}}} is 6.
const MaxDepth = 6

// marshal encodes without HTML escaping (a device's "<" stays one byte, so
// sizes are what the device sent) and without the encoder's newline.
func marshal(v any) []byte {
	e := encoders.Get().(*encoder)
	defer e.put()
	var ok bool
	if e.scratch, ok = appendJSON(e.scratch[:0], v); ok {
		return bytes.Clone(e.scratch)
	}
	if err := e.enc.Encode(v); err != nil {
		// Only decoded trees and our own structs are marshalled: an error
		// here is a bug, not an input problem.
		panic("shadow: marshal: " + err.Error())
	}
	return bytes.Clone(bytes.TrimSuffix(e.buf.Bytes(), []byte("\n")))
}

// marshalledLen measures v as marshal encodes it, without keeping the bytes.
func marshalledLen(v any) int {
	e := encoders.Get().(*encoder)
	defer e.put()
	var ok bool
	if e.scratch, ok = appendJSON(e.scratch[:0], v); ok {
		return len(e.scratch)
	}
	if err := e.enc.Encode(v); err != nil {
		panic("shadow: marshal: " + err.Error())
	}
	return e.buf.Len() - 1 // the encoder's newline
}

// encoder is marshal's reusable buffer and encoder: building both anew
// for each of an update's several payloads was a noticeable part of its
// cost.
type encoder struct {
	scratch []byte // appendJSON's
	buf     bytes.Buffer
	enc     *json.Encoder
}

// maxPooledBuffer keeps one huge payload's buffer from staying pooled.
const maxPooledBuffer = 64 << 10

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

func (e *encoder) put() {
	if e.buf.Cap() > maxPooledBuffer || cap(e.scratch) > maxPooledBuffer {
		return
	}
	e.buf.Reset()
	encoders.Put(e)
}

// depth counts nested containers: a scalar is 0, {"a":1} is 1.
func depth(v any) int {
	d := 0
	switch t := v.(type) {
	case map[string]any:
		for _, c := range t {
			d = max(d, depth(c))
		}
	case []any:
		for _, c := range t {
			d = max(d, depth(c))
		}
	default:
		return 0
	}
	return d + 1
}

// nullInArray reports whether any array anywhere under v holds a null,
// directly or inside a nested value: arrays are stored whole, and a null
// there could never mean "delete".
func nullInArray(v any, inArray bool) bool {
	switch t := v.(type) {
	case nil:
		return inArray
	case map[string]any:
		for _, c := range t {
			if nullInArray(c, inArray) {
				return true
			}
		}
	case []any:
		for _, c := range t {
			if nullInArray(c, true) {
				return true
			}
		}
	}
	return false
}

// clone deep-copies a tree; leaves are immutable values.
func clone(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return cloneMap(t)
	case []any:
		c := make([]any, len(t))
		for i, e := range t {
			c[i] = clone(e)
		}
		return c
	default:
		return v
	}
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = clone(v)
	}
	return c
}

// Stamp is a metadata leaf: {"timestamp":At}, with "reason" beside it when
// Reason is set (presence writes why a session ended on
// reported.connected). Every leaf of a Document's metadata is a Stamp, a
// value shared freely: as a map of one key each leaf cost a few hundred
// bytes, made, copied and parsed again by every update.
type Stamp struct {
	At     int64  // epoch seconds
	Reason string // empty: none
}

// MarshalJSON is the leaf's wire form.
func (s Stamp) MarshalJSON() ([]byte, error) { return appendStamp(nil, s), nil }

// stamp is one metadata leaf.
func stamp(ts int64) any { return Stamp{At: ts} }

// leafStamp is the Stamp of a metadata leaf as stored: a Stamp, or the
// object {"timestamp":T[,"reason":R]} (T 0 when absent or not an integer;
// a reason that is not a non-empty string dropped).
func leafStamp(v any) Stamp {
	switch t := v.(type) {
	case Stamp:
		return t
	case map[string]any:
		var st Stamp
		switch n := t["timestamp"].(type) {
		case json.Number:
			st.At, _ = n.Int64()
		case int64:
			st.At = n
		}
		st.Reason, _ = t["reason"].(string)
		return st
	}
	return Stamp{}
}

// metaFor mirrors a request tree: every leaf (arrays and nulls included)
// becomes {"timestamp":ts}. It is the metadata of update/accepted.
func metaFor(v any, ts int64) any {
	m, ok := v.(map[string]any)
	if !ok {
		return stamp(ts)
	}
	out := make(map[string]any, len(m))
	for k, c := range m {
		out[k] = metaFor(c, ts)
	}
	return out
}

// merge applies upd to state in place, keeping meta (the metadata of
// state) in step: a null deletes the key, an object merges into an object
// (replacing a leaf only when something is left to put there), anything
// else (arrays included) replaces the value whole and is stamped ts. An
// object left with no members is removed, so a stored tree never holds an
// empty object and a leaf is always a real value.
func merge(state, meta, upd map[string]any, ts int64) {
	for k, v := range upd {
		switch u := v.(type) {
		case nil:
			delete(state, k)
			delete(meta, k)
		case map[string]any:
			sub, wasMap := state[k].(map[string]any)
			subMeta, _ := meta[k].(map[string]any)
			if !wasMap {
				sub = map[string]any{}
			}
			if !wasMap || subMeta == nil {
				subMeta = map[string]any{}
			}
			merge(sub, subMeta, u, ts)
			switch {
			case len(sub) > 0:
				state[k], meta[k] = sub, subMeta
			case wasMap:
				delete(state, k)
				delete(meta, k)
			}
		default:
			state[k] = clone(u)
			meta[k] = stamp(ts)
		}
	}
}

// normalize makes a tree loaded from storage hold to merge's invariants:
// empty objects pruned, nulls dropped, and meta rebuilt in the shape of
// state, each leaf a Stamp (its timestamp 0 when none was stored; a
// leaf's string "reason", which the service writes on reported.connected,
// kept). It works in place: both trees must be the caller's own (just
// decoded), and are what it returns.
func normalize(state, meta map[string]any) (map[string]any, map[string]any) {
	for k := range meta {
		if _, ok := state[k]; !ok {
			delete(meta, k)
		}
	}
	for k, v := range state {
		switch t := v.(type) {
		case nil:
			delete(state, k)
			delete(meta, k)
		case map[string]any:
			m, _ := meta[k].(map[string]any)
			if s, sm := normalize(t, m); s != nil {
				if meta == nil {
					meta = map[string]any{}
				}
				meta[k] = sm
			} else {
				delete(state, k)
				delete(meta, k)
			}
		default:
			if meta == nil {
				meta = map[string]any{}
			}
			if _, ok := meta[k].(Stamp); !ok {
				meta[k] = leafStamp(meta[k])
			}
		}
	}
	if len(state) == 0 {
		return nil, nil
	}
	return state, meta
}

// delta is every desired leaf that differs from reported (absent from it
// included), with desired's metadata for those leaves. Nested objects keep
// their path; arrays compare and copy whole. Both results are nil when
// desired ⊆ reported.
func delta(desired, dMeta, reported map[string]any) (map[string]any, map[string]any) {
	var out, outMeta map[string]any
	for k, d := range desired {
		r, inReported := reported[k]
		var v, vm any
		if dObj, ok := d.(map[string]any); ok {
			dm, _ := dMeta[k].(map[string]any)
			rObj, _ := r.(map[string]any) // a leaf in reported: the whole object differs
			s, sm := delta(dObj, dm, rObj)
			if s == nil {
				continue
			}
			v, vm = s, sm
		} else {
			if inReported && equal(d, r) {
				continue
			}
			v, vm = clone(d), dMeta[k] // a Stamp: shared
		}
		if out == nil {
			out, outMeta = map[string]any{}, map[string]any{}
		}
		out[k], outMeta[k] = v, vm
	}
	return out, outMeta
}

// equal compares two trees as JSON values: numbers by value (21 == 21.0 ==
// 2.1e1), so a device reporting a float for an integer desired value does
// not keep a delta open forever.
func equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numEqual(string(x), string(y))
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

// numEqual compares two JSON number literals by value without big-number
// arithmetic (a 12-byte "1e999999999" must not cost a gigabyte): each is
// reduced to sign, significant digits and decimal exponent.
func numEqual(a, b string) bool {
	if a == b {
		return true
	}
	sa, da, ea, okA := canonNum(a)
	sb, db, eb, okB := canonNum(b)
	if !okA || !okB {
		return false
	}
	return sa == sb && da == db && ea == eb
}

// canonNum returns (negative, digits, exponent) with value
// ±0.digits×10^exponent-ish uniqueness: digits has no leading or trailing
// zeros, zero is ("", 0) and never negative.
func canonNum(s string) (neg bool, digits string, exp int64, ok bool) {
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	mant, e := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		var err error
		if e, err = strconv.ParseInt(strings.TrimPrefix(s[i+1:], "+"), 10, 64); err != nil {
			return false, "", 0, false
		}
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits = intPart + frac
	if e < -(1<<62) || e > 1<<62 {
		return false, "", 0, false
	}
	exp = e - int64(len(frac))
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return false, "", 0, true
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	return neg, trimmed, exp, true
}

// size is the bytes desired and reported take as compact JSON: what the
// size limit measures (metadata is not counted; an absent section is 0).
func size(desired, reported map[string]any) int {
	n := 0
	if len(desired) > 0 {
		n += marshalledLen(desired)
	}
	if len(reported) > 0 {
		n += marshalledLen(reported)
	}
	return n
}
