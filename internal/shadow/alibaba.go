package shadow

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxReportedAttributes bounds the reported section of an Alibaba shadow:
// its top-level members after the request is merged (408 beyond).
const MaxReportedAttributes = 128

// The error codes of Alibaba's shadow replies, with corral's messages
// (Alibaba documents the codes; its messages are in Chinese).
const (
	AliBadJSON         = 400
	AliNoMethod        = 401
	AliNoState         = 402
	AliVersionNotNum   = 403
	AliNoReported      = 404
	AliReportedEmpty   = 405
	AliBadMethod       = 406
	AliShadowEmpty     = 407
	AliTooManyReported = 408
	AliVersionConflict = 409
	AliServerError     = 500
)

var aliMessages = map[int]string{
	AliBadJSON:         "invalid JSON",
	AliNoMethod:        "method is missing",
	AliNoState:         "state is missing or not an object",
	AliVersionNotNum:   "version is not a number",
	AliNoReported:      "reported is missing",
	AliReportedEmpty:   "reported is empty",
	AliBadMethod:       "method is not update, delete or get",
	AliShadowEmpty:     "the shadow is empty",
	AliTooManyReported: "reported has more than 128 attributes",
	AliVersionConflict: "version conflict",
	AliServerError:     "server error",
}

// Messages of 400s that are not malformed JSON.
const (
	aliMsgTooDeep     = "JSON contains too many levels of nesting; maximum is 6"
	aliMsgTooLarge    = "the shadow exceeds the maximum size allowed"
	aliMsgNullInArray = "arrays may not contain null"
	aliMsgBadSection  = "desired and reported must be objects or \"null\""
)

// AlibabaError is a refusal; its reply is in AlibabaResult.Reply.
type AlibabaError struct {
	Code    int
	Message string
}

func (e *AlibabaError) Error() string {
	return "shadow: alibaba " + strconv.Itoa(e.Code) + ": " + e.Message
}

// Reply is the refusal's reply on /shadow/get/{pk}/{dn}, for refusals the
// service decides on itself (a thing-model check, a server error), with
// the stored version.
func (e *AlibabaError) Reply(version int64, now time.Time) []byte {
	return aliErrorReply(e.Code, e.Message, version, now.Unix())
}

// AlibabaResult is what the service needs after a request on
// /shadow/update/{pk}/{dn}.
type AlibabaResult struct {
	Method         string   // "update", "delete" or "get"; empty when unreadable
	Next           Document // the document to store when Changed
	Changed        bool     // an accepted update or delete (get never changes it)
	DesiredChanged bool     // the request set or cleared desired: push Control to an online device when an application sent it
	Reply          []byte   // to publish on /shadow/get/{pk}/{dn}, refusals included
}

// ApplyAlibaba answers one Alibaba shadow request against doc (use New
// when none is stored). A refusal is an *AlibabaError, and Reply then
// carries it to the device with the stored version.
//
//   - {"method":"update","state":{"reported":{…},"desired":{…}},"version":N}
//     merges each section (a JSON null deletes a key, as in AWS; "null" as
//     a whole section clears it). An update must carry reported or desired
//     (404); reported {} is 405.
//   - {"method":"delete","state":{"reported":{"k":"null"}},"version":N}
//     deletes every key whose value is the string "null" (or null), nested
//     ones included; other values are left alone. "reported":"null" deletes
//     all reported. A delete on an empty shadow is 407.
//   - {"method":"get"} replies with state and metadata; on an empty shadow
//     it is 407.
//
// Version: absent or 0 means no check and the stored version goes to
// stored+1; N > 0 must be greater than stored (409) and becomes the
// stored version. See the package comment for how that meets AWS's rule.
func ApplyAlibaba(doc Document, req []byte, now time.Time, lim Limits) (AlibabaResult, error) {
	ts := now.Unix()
	res := AlibabaResult{Next: doc}
	fail := func(code int, msg string) (AlibabaResult, error) {
		if msg == "" {
			msg = aliMessages[code]
		}
		res.Next, res.Changed, res.DesiredChanged = doc, false, false
		res.Reply = aliErrorReply(code, msg, doc.Version, ts)
		return res, &AlibabaError{Code: code, Message: msg}
	}
	if !utf8.Valid(req) {
		return fail(AliBadJSON, "")
	}
	v, _ := decodeJSON(req)
	top, ok := v.(map[string]any)
	if !ok {
		return fail(AliBadJSON, "")
	}
	method, ok := top["method"]
	if !ok {
		return fail(AliNoMethod, "")
	}
	res.Method, _ = method.(string) // null or not a string: "", refused below
	switch res.Method {
	case "get":
		if len(doc.Desired) == 0 && len(doc.Reported) == 0 {
			return fail(AliShadowEmpty, "")
		}
		res.Reply = aliGetReply(doc, ts)
		return res, nil
	case "update", "delete":
	default:
		return fail(AliBadMethod, "")
	}

	// version: absent, null or 0 mean no check.
	version, _, ok := requestVersion(top["version"], MaxVersion)
	if !ok {
		return fail(AliVersionNotNum, "")
	}
	st, ok := top["state"].(map[string]any)
	if !ok {
		return fail(AliNoState, "")
	}
	desired, code, msg := aliSection(st, "desired")
	if code != 0 {
		return fail(code, msg)
	}
	reported, code, msg := aliSection(st, "reported")
	if code != 0 {
		return fail(code, msg)
	}
	return applyAlibaba(doc, res, fail, version, desired, reported, ts, lim)
}

// applyAlibaba applies an update or delete whose request has been read:
// the checks after the sections', the change and the reply.
func applyAlibaba(doc Document, res AlibabaResult, fail func(int, string) (AlibabaResult, error), version int64, desired, reported section, ts int64, lim Limits) (AlibabaResult, error) {
	if !desired.present && !reported.present {
		return fail(AliNoReported, "")
	}
	if reported.present && reported.tree != nil && len(reported.tree) == 0 {
		return fail(AliReportedEmpty, "")
	}
	if res.Method == "delete" && len(doc.Desired) == 0 && len(doc.Reported) == 0 {
		return fail(AliShadowEmpty, "")
	}
	if (version != 0 && version <= doc.Version) || (version == 0 && doc.Version >= math.MaxInt64) {
		return fail(AliVersionConflict, "")
	}

	next := doc.clone()
	if version != 0 {
		next.Version = version
	} else {
		next.Version++
	}
	if res.Method == "update" {
		next.Desired, next.Metadata.Desired = applySection(next.Desired, next.Metadata.Desired, desired, ts)
		next.Reported, next.Metadata.Reported = applySection(next.Reported, next.Metadata.Reported, reported, ts)
	} else {
		next.Desired, next.Metadata.Desired = deleteSection(next.Desired, next.Metadata.Desired, desired)
		next.Reported, next.Metadata.Reported = deleteSection(next.Reported, next.Metadata.Reported, reported)
	}
	if len(next.Reported) > MaxReportedAttributes {
		return fail(AliTooManyReported, "")
	}
	if next.Size() > lim.maxStateBytes() {
		return fail(AliBadJSON, aliMsgTooLarge)
	}
	res.Next, res.Changed, res.DesiredChanged = next, true, desired.present
	res.Reply = aliReply(aliPayload{Status: "success"}, next.Version, ts)
	return res, nil
}

// aliSection reads desired or reported: absent, "null" (or null: clear
// it) or an object, checked as AWS checks its sections.
func aliSection(st map[string]any, name string) (section, int, string) {
	v, ok := st[name]
	if !ok {
		return section{}, 0, ""
	}
	if v == nil || v == "null" {
		return section{present: true}, 0, ""
	}
	m, isObj := v.(map[string]any)
	switch {
	case !isObj:
		return section{}, AliBadJSON, aliMsgBadSection
	case nullInArray(m, false):
		return section{}, AliBadJSON, aliMsgNullInArray
	case depth(m) > MaxDepth:
		return section{}, AliBadJSON, aliMsgTooDeep
	}
	return section{present: true, tree: m}, 0, ""
}

// deleteSection applies an Alibaba delete to a section the caller owns.
func deleteSection(state, meta map[string]any, s section) (map[string]any, map[string]any) {
	switch {
	case !s.present:
		return state, meta
	case s.tree == nil:
		return nil, nil
	}
	deleteMarked(state, meta, s.tree)
	if len(state) == 0 {
		return nil, nil
	}
	return state, meta
}

// deleteMarked removes every key marked "null" (or null) in marks,
// recursing where both are objects and pruning objects left empty.
func deleteMarked(state, meta, marks map[string]any) {
	for k, v := range marks {
		switch m := v.(type) {
		case nil:
			delete(state, k)
			delete(meta, k)
		case string:
			if m == "null" {
				delete(state, k)
				delete(meta, k)
			}
		case map[string]any:
			sub, ok := state[k].(map[string]any)
			if !ok {
				continue
			}
			subMeta, _ := meta[k].(map[string]any)
			deleteMarked(sub, subMeta, m)
			if len(sub) == 0 {
				delete(state, k)
				delete(meta, k)
			}
		}
	}
}

// aliPayload is the payload of a reply or a control push.
type aliPayload struct {
	Status   string      `json:"status,omitempty"`
	Content  *aliContent `json:"content,omitempty"`
	State    *wireState  `json:"state,omitempty"`
	Metadata *Metadata   `json:"metadata,omitempty"`
}

// aliContent's errorcode is a string, as Alibaba's replies write it.
type aliContent struct {
	ErrorCode    string `json:"errorcode"`
	ErrorMessage string `json:"errormessage"`
}

func aliReply(p aliPayload, version, ts int64) []byte {
	return marshal(struct {
		Method    string     `json:"method"`
		Payload   aliPayload `json:"payload"`
		Timestamp int64      `json:"timestamp"`
		Version   int64      `json:"version"`
	}{"reply", p, ts, version})
}

func aliErrorReply(code int, msg string, version, ts int64) []byte {
	return aliReply(aliPayload{Status: "error", Content: &aliContent{strconv.Itoa(code), msg}}, version, ts)
}

func aliGetReply(doc Document, ts int64) []byte {
	st, md := doc.state(), doc.metadata()
	return aliReply(aliPayload{Status: "success", State: &st, Metadata: &md}, doc.Version, ts)
}

// Control is the push to /shadow/get/{pk}/{dn} when an application changes
// desired while the device is online: the whole document.
func Control(doc Document, now time.Time) []byte {
	st, md := doc.state(), doc.metadata()
	return marshal(struct {
		Method    string     `json:"method"`
		Payload   aliPayload `json:"payload"`
		Version   int64      `json:"version"`
		Timestamp int64      `json:"timestamp"`
	}{"control", aliPayload{State: &st, Metadata: &md}, doc.Version, now.Unix()})
}
