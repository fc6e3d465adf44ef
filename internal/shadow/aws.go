package shadow

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxClientToken is the longest clientToken AWS accepts, in bytes.
const MaxClientToken = 64

// The messages of AWS's /rejected payloads, word for word.
const (
	MsgInvalidJSON       = "Invalid JSON"
	MsgMissingState      = "Missing required node: state"
	MsgStateNotObject    = "State node must be an object"
	MsgDesiredNotObject  = "Desired node must be an object"
	MsgReportedNotObject = "Reported node must be an object"
	MsgInvalidVersion    = "Invalid version"
	MsgInvalidToken      = "Invalid clientToken"
	MsgTooDeep           = "JSON contains too many levels of nesting; maximum is 6"
	MsgInvalidNode       = "State contains an invalid node"
	MsgUnauthorized      = "Unauthorized"
	MsgForbidden         = "Forbidden"
	MsgThingNotFound     = "Thing not found"
	MsgVersionConflict   = "Version conflict"
	MsgTooLarge          = "The payload exceeds the maximum size allowed"
	MsgNotUTF8           = "Unsupported documented encoding; supported encoding is UTF-8"
	MsgInternal          = "Internal service failure"
)

// MsgNoShadow is the 404 message for a named shadow that does not exist.
func MsgNoShadow(name string) string { return "No shadow exists with name: " + name }

// ErrorAWS is a refusal on …/rejected: its code is the HTTP status the REST
// API answers with.
type ErrorAWS struct {
	Code        int
	Message     string
	Timestamp   int64  // epoch seconds
	ClientToken string // echoed when the request carried a valid one
}

// NewErrorAWS builds a refusal the service decides on itself (401, 403,
// 404, 429, 500).
func NewErrorAWS(code int, message, clientToken string, now time.Time) *ErrorAWS {
	return &ErrorAWS{Code: code, Message: message, Timestamp: now.Unix(), ClientToken: clientToken}
}

func (e *ErrorAWS) Error() string { return "shadow: " + e.Message }

// Payload is the …/rejected payload:
// {"code":N,"message":"…","timestamp":T,"clientToken":"…"}.
func (e *ErrorAWS) Payload() []byte {
	return marshal(struct {
		Code        int    `json:"code"`
		Message     string `json:"message"`
		Timestamp   int64  `json:"timestamp"`
		ClientToken string `json:"clientToken,omitempty"`
	}{e.Code, e.Message, e.Timestamp, e.ClientToken})
}

// UpdateAWS is everything an accepted AWS update gives the service: the
// document to store and the payloads to publish.
type UpdateAWS struct {
	Next      Document
	Accepted  []byte // update/accepted
	Delta     []byte // update/delta; nil when the delta is empty (publish nothing)
	Documents []byte // update/documents
	Stored    []byte // Next's stored form (Next.MarshalJSON), for the store
	// ClientToken is the request's clientToken, as the payloads echo it.
	ClientToken string
	// InPlace: Next was made by changing the document given
	// (ApplyAWSLeanInPlace), which is not the previous document any more.
	InPlace bool
}

// ApplyAWS applies an $aws/…/shadow/update request to doc (use New when no
// shadow is stored). A refusal is an *ErrorAWS; doc is never modified.
//
// Checks, in order: UTF-8 (415), JSON (400), clientToken, version syntax,
// state and its sections, nulls in arrays, depth (400), the version
// (409), then the size after merging (413).
func ApplyAWS(doc Document, req []byte, now time.Time, lim Limits) (UpdateAWS, error) {
	return applyAWS(doc, req, now, lim, true, false)
}

// ApplyAWSLean is ApplyAWS without the update/documents payload
// (Documents is nil): encoding the previous document again is most of
// that payload's cost, and a caller that keeps the stored forms builds it
// with DocumentsAWS only when someone will receive it.
func ApplyAWSLean(doc Document, req []byte, now time.Time, lim Limits) (UpdateAWS, error) {
	return applyAWS(doc, req, now, lim, false, false)
}

// ApplyAWSLeanInPlace is ApplyAWSLean for a document the caller owns and
// drops after it (one it just parsed): a request that does not touch
// desired (a device's report) is merged into doc's own trees, saving
// their copy (InPlace says so), even when it is then refused for its
// size. The payloads are the same.
func ApplyAWSLeanInPlace(doc Document, req []byte, now time.Time, lim Limits) (UpdateAWS, error) {
	return applyAWS(doc, req, now, lim, false, true)
}

func applyAWS(doc Document, req []byte, now time.Time, lim Limits, documents, inPlace bool) (UpdateAWS, error) {
	ts := now.Unix()
	u, token, code, msg := parseAWS(doc, req)
	if code != 0 {
		return UpdateAWS{}, &ErrorAWS{Code: code, Message: msg, Timestamp: ts, ClientToken: token}
	}
	return finishAWS(doc, u, token, ts, lim, documents, inPlace && !u.desired.present)
}

// parseAWS reads a request in one pass and makes the checks of ApplyAWS
// up to the version's: it returns the token and the sections, or the
// refusal's code and message (and the token, when valid).
func parseAWS(doc Document, req []byte) (u awsUpdate, token string, code int, msg string) {
	if !utf8.Valid(req) {
		return u, "", 415, MsgNotUTF8
	}
	r, ok := decodeAWSRequest(req)
	if !ok {
		return u, "", 400, MsgInvalidJSON
	}
	token, ok = clientToken(r.token)
	if !ok {
		return u, "", 400, MsgInvalidToken
	}
	want, hasVersion, ok := requestVersion(r.version, math.MaxInt64)
	if !ok {
		return u, token, 400, MsgInvalidVersion
	}
	if !r.hasState {
		return u, token, 400, MsgMissingState
	}
	if u, msg = r.update(); msg != "" {
		return u, token, 400, msg
	}
	if hasVersion && want != doc.Version {
		return u, token, 409, MsgVersionConflict
	}
	return u, token, 0, ""
}

// finishAWS applies a parsed request: the version at its end (409), the
// merge, its size (413) and the payloads.
func finishAWS(doc Document, u awsUpdate, token string, ts int64, lim Limits, documents, inPlace bool) (UpdateAWS, error) {
	fail := func(code int, msg string) (UpdateAWS, error) {
		return UpdateAWS{}, &ErrorAWS{Code: code, Message: msg, Timestamp: ts, ClientToken: token}
	}
	if doc.Version >= math.MaxInt64 {
		return fail(409, MsgVersionConflict)
	}

	next := doc
	if !inPlace {
		next = doc.clone()
	}
	next.Version++
	next.Desired, next.Metadata.Desired = applySection(next.Desired, next.Metadata.Desired, u.desired, ts)
	next.Reported, next.Metadata.Reported = applySection(next.Reported, next.Metadata.Reported, u.reported, ts)
	stored, size := storedForm(next)
	if size > lim.maxStateBytes() { // next.Size(), read off the stored form
		return fail(413, MsgTooLarge)
	}

	out := UpdateAWS{Next: next, Accepted: acceptedAWS(u, next.Version, ts, token), Delta: deltaAWS(next, ts, token), ClientToken: token,
		InPlace: inPlace}
	// previous and current are the documents' stored forms: current, once
	// encoded, is also what the store keeps.
	out.Stored = stored
	if documents {
		prev, _ := doc.MarshalJSON()
		out.Documents = DocumentsAWS(prev, out.Stored, ts, token)
	}
	return out, nil
}

// MessageAWS is the update/accepted and update/delta payload
// {"state":…,"metadata":…,"version":N,"timestamp":T,"clientToken":"…"},
// the token left out when empty.
func MessageAWS(state, md map[string]any, version, ts int64, token string) []byte {
	b, ok := appendJSON(append(make([]byte, 0, 256), `{"state":`...), state)
	if ok {
		b, ok = appendJSON(append(b, `,"metadata":`...), md)
	}
	if !ok { // not a tree's value: encoding/json's way
		return marshal(struct {
			State       map[string]any `json:"state"`
			Metadata    map[string]any `json:"metadata"`
			Version     int64          `json:"version"`
			Timestamp   int64          `json:"timestamp"`
			ClientToken string         `json:"clientToken,omitempty"`
		}{state, md, version, ts, token})
	}
	b = strconv.AppendInt(append(b, `,"version":`...), version, 10)
	b = strconv.AppendInt(append(b, `,"timestamp":`...), ts, 10)
	if token != "" {
		b = appendString(append(b, `,"clientToken":`...), token)
	}
	return append(b, '}')
}

// acceptedAWS is the update/accepted payload of request u: MessageAWS of
// the sections it holds ("desired": null echoed as null) and their
// metadata (each leaf stamped ts, a null section's whole), encoded
// straight from u's trees.
func acceptedAWS(u awsUpdate, version, ts int64, token string) []byte {
	secs := [...]struct {
		name string
		s    section
	}{{"desired", u.desired}, {"reported", u.reported}} // sorted, as MessageAWS's maps encode
	b := append(make([]byte, 0, 256), `{"state":{`...)
	for _, pass := range [...]string{"", `},"metadata":{`} {
		b = append(b, pass...)
		first := true
		for _, sec := range secs {
			if !sec.s.present {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(appendString(b, sec.name), ':')
			var ok bool
			switch {
			case pass == "":
				b, ok = appendJSON(b, sec.s.tree) // a nil map: null
			case sec.s.tree == nil:
				b, ok = appendStamp(b, Stamp{At: ts}), true
			default:
				b, ok = appendMeta(b, sec.s.tree, ts), true
			}
			if !ok {
				return acceptedAWSSlow(u, version, ts, token)
			}
		}
	}
	b = strconv.AppendInt(append(b, `},"version":`...), version, 10)
	b = strconv.AppendInt(append(b, `,"timestamp":`...), ts, 10)
	if token != "" {
		b = appendString(append(b, `,"clientToken":`...), token)
	}
	return append(b, '}')
}

// acceptedAWSSlow is acceptedAWS through maps and MessageAWS, for a tree
// appendJSON does not encode.
func acceptedAWSSlow(u awsUpdate, version, ts int64, token string) []byte {
	state, md := map[string]any{}, map[string]any{}
	for name, s := range map[string]section{"desired": u.desired, "reported": u.reported} {
		switch {
		case !s.present:
		case s.tree == nil: // "desired": null, echoed as null
			state[name], md[name] = nil, stamp(ts)
		default:
			state[name], md[name] = s.tree, metaFor(s.tree, ts)
		}
	}
	return MessageAWS(state, md, version, ts, token)
}

// DocumentsAWS is the update/documents payload
// {"previous":…,"current":…,"timestamp":T,"clientToken":"…"} from the
// stored forms (Document.MarshalJSON) of the document an update started
// from (for a new shadow, the empty one with its version) and of the one
// it made; the token is left out when empty.
func DocumentsAWS(prev, cur []byte, ts int64, token string) []byte {
	b := make([]byte, 0, len(prev)+len(cur)+len(token)+64)
	b = append(b, `{"previous":`...)
	b = append(b, prev...)
	b = append(b, `,"current":`...)
	b = append(b, cur...)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	if token != "" {
		b = append(b, `,"clientToken":`...)
		b = append(b, marshal(token)...)
	}
	return append(b, '}')
}

// section is one of desired/reported in a request: absent, null (remove
// the section) or an object (merge it).
type section struct {
	present bool
	tree    map[string]any // nil with present: null
}

type awsUpdate struct{ desired, reported section }

// awsRequest is the top level of an update request as a map of it would
// hold it (the last of duplicate members winning), read without that map
// nor one of its state (decodeAWSRequest): the members parseAWS reads.
type awsRequest struct {
	token, version any // nil: absent or null
	hasState       bool
	stateObject    bool // the state is an object; else its value is state
	state          any
	// The state object's members: desired and reported, and whether it
	// has any other.
	desired, reported       any
	hasDesired, hasReported bool
	other                   bool
}

// update returns the sections of the request's state or the 400 message
// refusing it. state: null and {} change nothing.
func (r *awsRequest) update() (awsUpdate, string) {
	var u awsUpdate
	if !r.stateObject {
		if r.state == nil {
			return u, ""
		}
		return u, MsgStateNotObject
	}
	if r.other {
		return u, MsgInvalidNode
	}
	var msg string
	if r.hasDesired {
		if u.desired, msg = parseAWSSection(r.desired, MsgDesiredNotObject); msg != "" {
			return u, msg
		}
	}
	if r.hasReported {
		u.reported, msg = parseAWSSection(r.reported, MsgReportedNotObject)
	}
	return u, msg
}

// parseAWSSection reads a section present in a request's state.
func parseAWSSection(v any, notObject string) (section, string) {
	if v == nil {
		return section{present: true}, ""
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		return section{}, notObject
	}
	if nullInArray(m, false) {
		return section{}, MsgInvalidNode
	}
	if depth(m) > MaxDepth {
		return section{}, MsgTooDeep
	}
	return section{present: true, tree: m}, ""
}

// applySection merges s into a section (already a copy the caller owns).
func applySection(state, meta map[string]any, s section, ts int64) (map[string]any, map[string]any) {
	switch {
	case !s.present:
		return state, meta
	case s.tree == nil:
		return nil, nil
	}
	if state == nil {
		state = map[string]any{}
	}
	if meta == nil {
		meta = map[string]any{}
	}
	merge(state, meta, s.tree, ts)
	if len(state) == 0 {
		return nil, nil
	}
	return state, meta
}

// clientToken returns the request's token (null is none); ok is false
// when it is not a string of at most MaxClientToken bytes.
func clientToken(v any) (string, bool) {
	if v == nil {
		return "", true
	}
	s, ok := v.(string)
	if !ok || len(s) > MaxClientToken {
		return "", false
	}
	return s, true
}

// requestVersion reads the optional version: an integer from 0 to limit.
// A null version is taken as absent (serializers write null for unset
// optional fields); a string, even "1", is not a version.
func requestVersion(raw any, limit int64) (v int64, has, ok bool) {
	if raw == nil {
		return 0, false, true
	}
	n, isNum := raw.(json.Number)
	if !isNum {
		return 0, false, false
	}
	v, err := n.Int64()
	if err != nil || v < 0 || v > limit {
		return 0, false, false
	}
	return v, true, true
}

// deltaAWS is the update/delta payload, nil when the delta is empty.
func deltaAWS(d Document, ts int64, token string) []byte {
	st, md := d.Delta()
	if st == nil {
		return nil
	}
	return MessageAWS(st, md, d.Version, ts, token)
}

// GetAWS is the get/accepted payload: the whole document, with state.delta
// when it is not empty. clientToken is echoed when not empty.
func GetAWS(doc Document, now time.Time, clientToken string) []byte {
	st := doc.state()
	st.Delta, _ = doc.Delta()
	return marshal(struct {
		State       wireState `json:"state"`
		Metadata    Metadata  `json:"metadata"`
		Version     int64     `json:"version"`
		Timestamp   int64     `json:"timestamp"`
		ClientToken string    `json:"clientToken,omitempty"`
	}{st, doc.metadata(), doc.Version, now.Unix(), clientToken})
}

// DeleteAWS deletes doc: the service drops it, keeps the tombstone (for
// New) and publishes the delete/accepted payload {"version":N,"timestamp":T}.
func DeleteAWS(doc Document, now time.Time) (Tombstone, []byte) {
	return Tombstone{Version: doc.Version, DeletedAt: now},
		marshal(struct {
			Version   int64 `json:"version"`
			Timestamp int64 `json:"timestamp"`
		}{doc.Version, now.Unix()})
}

// SetReportedLeaf is the update {"state":{"reported":{key:value}}} that
// corral makes itself (a device's presence), without parsing a request:
// value is a leaf (bool, string or json.Number), stamped now with reason
// beside the time when not empty. The
// result has Next, Delta and Stored but no update/accepted or
// update/documents payload, which no client asked for. Refusals are those
// of ApplyAWS that such an update can meet: the version at its end (409)
// and the size after the merge (413).
func SetReportedLeaf(doc Document, key string, value any, reason string, now time.Time, lim Limits) (UpdateAWS, error) {
	ts := now.Unix()
	if doc.Version >= math.MaxInt64 {
		return UpdateAWS{}, &ErrorAWS{Code: 409, Message: MsgVersionConflict, Timestamp: ts}
	}
	next := doc.clone()
	next.Version++
	if next.Reported == nil {
		next.Reported = map[string]any{}
	}
	if next.Metadata.Reported == nil {
		next.Metadata.Reported = map[string]any{}
	}
	next.Reported[key], next.Metadata.Reported[key] = value, Stamp{At: ts, Reason: reason}
	stored, size := storedForm(next)
	if size > lim.maxStateBytes() {
		return UpdateAWS{}, &ErrorAWS{Code: 413, Message: MsgTooLarge, Timestamp: ts}
	}
	return UpdateAWS{Next: next, Delta: deltaAWS(next, ts, ""), Stored: stored}, nil
}
