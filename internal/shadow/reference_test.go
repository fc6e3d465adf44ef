package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// The request and stored-document parsing as it was before the one-pass
// decoder (json.Valid, json.Unmarshal into json.RawMessage maps, then a
// json.Decoder with UseNumber per section): the reference the
// differential fuzz tests hold the decoder to. Everything after the
// parsing is shared with the package.

// refDecodeTree decodes one JSON value keeping numbers exactly as written.
func refDecodeTree(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func refIsNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// refParseAWS is the parsing half of the old applyAWS: the refusal (code,
// message, token) or the token and the sections.
func refParseAWS(doc Document, req []byte) (u awsUpdate, token string, code int, msg string) {
	if !utf8.Valid(req) {
		return u, "", 415, MsgNotUTF8
	}
	var top map[string]json.RawMessage
	if !json.Valid(req) || json.Unmarshal(req, &top) != nil || top == nil {
		return u, "", 400, MsgInvalidJSON
	}
	token, ok := refClientToken(top)
	if !ok {
		return u, "", 400, MsgInvalidToken
	}
	want, hasVersion, ok := refRequestVersion(top)
	if !ok {
		return u, token, 400, MsgInvalidVersion
	}
	rawState, hasState := top["state"]
	if !hasState {
		return u, token, 400, MsgMissingState
	}
	u, msg = refParseAWSState(rawState)
	if msg != "" {
		return u, token, 400, msg
	}
	if hasVersion && want != doc.Version {
		return u, token, 409, MsgVersionConflict
	}
	return u, token, 0, ""
}

// refApplyAWS is the old applyAWS: refParseAWS, then the package's own
// merge and payloads.
func refApplyAWS(doc Document, req []byte, now time.Time, lim Limits, documents bool) (UpdateAWS, error) {
	ts := now.Unix()
	u, token, code, msg := refParseAWS(doc, req)
	if code != 0 {
		return UpdateAWS{}, &ErrorAWS{Code: code, Message: msg, Timestamp: ts, ClientToken: token}
	}
	return finishAWS(doc, u, token, ts, lim, documents, false)
}

func refParseAWSState(raw json.RawMessage) (awsUpdate, string) {
	var u awsUpdate
	if refIsNull(raw) {
		return u, ""
	}
	var st map[string]json.RawMessage
	if json.Unmarshal(raw, &st) != nil {
		return u, MsgStateNotObject
	}
	for k := range st {
		if k != "desired" && k != "reported" {
			return u, MsgInvalidNode
		}
	}
	var msg string
	if u.desired, msg = refParseAWSSection(st, "desired", MsgDesiredNotObject); msg != "" {
		return u, msg
	}
	u.reported, msg = refParseAWSSection(st, "reported", MsgReportedNotObject)
	return u, msg
}

func refParseAWSSection(st map[string]json.RawMessage, name, notObject string) (section, string) {
	raw, ok := st[name]
	if !ok {
		return section{}, ""
	}
	if refIsNull(raw) {
		return section{present: true}, ""
	}
	v, err := refDecodeTree(raw)
	m, isObj := v.(map[string]any)
	if err != nil || !isObj {
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

func refClientToken(top map[string]json.RawMessage) (string, bool) {
	raw, has := top["clientToken"]
	if !has {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || len(s) > MaxClientToken {
		return "", false
	}
	return s, true
}

func refRequestVersion(top map[string]json.RawMessage) (v int64, has, ok bool) {
	raw, has := top["version"]
	if !has || refIsNull(raw) {
		return 0, false, true
	}
	tree, err := refDecodeTree(raw)
	n, isNum := tree.(json.Number)
	if err != nil || !isNum {
		return 0, false, false
	}
	v, err = n.Int64()
	if err != nil || v < 0 {
		return 0, false, false
	}
	return v, true, true
}

// refApplyAlibaba is the old ApplyAlibaba: the old parsing, then the
// package's own.
func refApplyAlibaba(doc Document, req []byte, now time.Time, lim Limits) (AlibabaResult, error) {
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
	var top map[string]json.RawMessage
	if !utf8.Valid(req) || !json.Valid(req) || json.Unmarshal(req, &top) != nil || top == nil {
		return fail(AliBadJSON, "")
	}
	rawMethod, ok := top["method"]
	if !ok {
		return fail(AliNoMethod, "")
	}
	if json.Unmarshal(rawMethod, &res.Method) != nil {
		return fail(AliBadMethod, "")
	}
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
	version, ok := refAliVersion(top)
	if !ok {
		return fail(AliVersionNotNum, "")
	}
	var st map[string]json.RawMessage
	if raw, has := top["state"]; !has || json.Unmarshal(raw, &st) != nil || st == nil {
		return fail(AliNoState, "")
	}
	desired, code, msg := refAliSection(st, "desired")
	if code != 0 {
		return fail(code, msg)
	}
	reported, code, msg := refAliSection(st, "reported")
	if code != 0 {
		return fail(code, msg)
	}
	return applyAlibaba(doc, res, fail, version, desired, reported, ts, lim)
}

func refAliVersion(top map[string]json.RawMessage) (int64, bool) {
	raw, has := top["version"]
	if !has || refIsNull(raw) {
		return 0, true
	}
	tree, err := refDecodeTree(raw)
	n, isNum := tree.(json.Number)
	if err != nil || !isNum {
		return 0, false
	}
	v, err := n.Int64()
	if err != nil || v < 0 || v > MaxVersion {
		return 0, false
	}
	return v, true
}

func refAliSection(st map[string]json.RawMessage, name string) (section, int, string) {
	raw, ok := st[name]
	if !ok {
		return section{}, 0, ""
	}
	v, err := refDecodeTree(raw)
	if err == nil && (v == nil || v == "null") {
		return section{present: true}, 0, ""
	}
	m, isObj := v.(map[string]any)
	switch {
	case err != nil || !isObj:
		return section{}, AliBadJSON, aliMsgBadSection
	case nullInArray(m, false):
		return section{}, AliBadJSON, aliMsgNullInArray
	case depth(m) > MaxDepth:
		return section{}, AliBadJSON, aliMsgTooDeep
	}
	return section{present: true, tree: m}, 0, ""
}

// refParse is the old Parse.
func refParse(b []byte) (Document, error) {
	v, err := refDecodeTree(b)
	if err != nil {
		return Document{}, fmt.Errorf("%w: %w", ErrStored, err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return Document{}, fmt.Errorf("%w: not an object", ErrStored)
	}
	return parseStored(top)
}
