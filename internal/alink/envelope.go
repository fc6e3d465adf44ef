// Package alink owns the Alibaba Link (Alink) wire format: the JSON
// request and reply envelopes devices and gateways exchange over MQTT, the
// /sys/… and /ext/session/… topics, and the platform's result codes.
package alink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxPayload bounds an Alink request.
const MaxPayload = 256 << 10

// Result codes in replies, as Alibaba IoT Platform documents them for
// devices (common codes) and gateways.
const (
	CodeSuccess         = 200
	CodeAuthFailed      = 401  // request auth error: a sub-device signature check failed
	CodeTooMany         = 429  // throttled
	CodeBadParams       = 460  // request parameter error: empty, malformed, or over a limit
	CodeInternal        = 500  // unknown error
	CodeDeviceNotFound  = 6100 // device not found
	CodeBadTopic        = 6203 // topic could not be parsed
	CodeDeviceDisabled  = 6204 // device is disabled
	CodeProductNotFound = 6250 // product not found
	CodeTopoNotExist    = 6401 // topological relation does not exist (login of a sub-device not in the topology)
	CodeTopoAddSelf     = 6402 // a device cannot be added to itself as a sub-device
	CodeNotGateway      = 6403 // corral: the device is not of a gateway product
	CodeSubNotLoggedIn  = 6404 // corral: the sub-device is not logged in through this gateway
	CodeNeedsTLS        = 6405 // corral: the answer carries a credential, sent only over a TLS session
	CodeTSLCheckFailed  = 6300 // the payload breaks the product's thing model
)

// Request is an Alink request. Id may arrive as a string or a number;
// Method may be absent (Link SDK v4 routes by topic).
type Request struct {
	ID      string          `json:"id"`
	Version string          `json:"version,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Method  string          `json:"method,omitempty"`
	Sys     *Sys            `json:"sys,omitempty"`
}

// Sys holds extended request options.
type Sys struct {
	Ack *int `json:"ack,omitempty"` // 0: the device wants no reply
}

// WantsReply reports whether the device asked for a reply (default yes).
func (r Request) WantsReply() bool { return r.Sys == nil || r.Sys.Ack == nil || *r.Sys.Ack != 0 }

// Reply is an Alink reply; every field is always present.
type Reply struct {
	ID      string `json:"id"`
	Code    int    `json:"code"`
	Data    any    `json:"data"`
	Message string `json:"message"`
	Method  string `json:"method,omitempty"`
	Version string `json:"version,omitempty"`
}

// ErrMalformed means a payload is not an Alink request.
var ErrMalformed = errors.New("malformed Alink request")

// MaxIDLen bounds a request id. The Node SDK sends ids such as
// "1|exp-topic|/sys/{pk}/{dn}/thing/event/property/post_reply" (75
// characters and more); 256 leaves room for long names.
const MaxIDLen = 256

// DecodeRequest parses an Alink request. The id is normalized to a string:
// a JSON string is taken as is, a JSON number (a non-negative integer) as
// the digits it is written with. params given as a JSON string holding an
// object (some SDKs send "{}") are unwrapped.
//
// On error, the returned Request still carries the id whenever one could
// be read from the payload, so that the error reply echoes it: an id over
// MaxIDLen characters is refused, and echoed whole (the payload is at most
// MaxPayload bytes) so that the sender can match the refusal.
func DecodeRequest(payload []byte) (Request, error) {
	if len(payload) > MaxPayload {
		return Request{}, fmt.Errorf("%w: over %d bytes", ErrMalformed, MaxPayload)
	}
	var raw struct {
		ID      json.RawMessage `json:"id"`
		Version json.RawMessage `json:"version"`
		Params  json.RawMessage `json:"params"`
		Method  json.RawMessage `json:"method"`
		Sys     *Sys            `json:"sys"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return Request{ID: IDOf(payload)}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	id, err := ParseID(raw.ID)
	if err != nil {
		return Request{ID: id}, err
	}
	r := Request{ID: id, Sys: raw.Sys, Params: raw.Params}
	if len(raw.Method) > 0 && string(raw.Method) != "null" {
		if err := json.Unmarshal(raw.Method, &r.Method); err != nil {
			return Request{ID: id}, fmt.Errorf("%w: method must be a string", ErrMalformed)
		}
	}
	if len(raw.Version) > 0 && string(raw.Version) != "null" {
		if err := json.Unmarshal(raw.Version, &r.Version); err != nil {
			return Request{ID: id}, fmt.Errorf("%w: version must be a string", ErrMalformed)
		}
	}
	if len(r.Params) > 0 && r.Params[0] == '"' {
		var inner string
		if err := json.Unmarshal(r.Params, &inner); err == nil {
			if t := strings.TrimSpace(inner); t == "" || t[0] == '{' || t[0] == '[' {
				if t == "" {
					t = "{}"
				}
				if !json.Valid([]byte(t)) {
					return Request{ID: id}, fmt.Errorf("%w: params string is not JSON", ErrMalformed)
				}
				r.Params = json.RawMessage(t)
			}
		}
	}
	return r, nil
}

// ParseID reads an id given as a JSON value: a string, or a non-negative
// integer (kept as written, however many digits). It refuses a missing or
// empty id and one over MaxIDLen characters; a refused id that was a
// string or a number is still returned, for the error reply to echo.
func ParseID(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("%w: id is missing", ErrMalformed)
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: id", ErrMalformed)
		}
	} else {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", fmt.Errorf("%w: id must be a string or a non-negative integer", ErrMalformed)
		}
		s = n.String()
		if !digits(s) {
			return s, fmt.Errorf("%w: id must be a string or a non-negative integer", ErrMalformed)
		}
	}
	if s == "" || len(s) > MaxIDLen {
		return s, fmt.Errorf("%w: id must be 1 to %d characters", ErrMalformed, MaxIDLen)
	}
	return s, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IDOf recovers the top-level id of a payload that is not a well-formed
// request (broken JSON after the id, a field of the wrong type), so the
// error reply can still be matched: the id as a string, the literal of a
// number, or "" when none can be read.
func IDOf(payload []byte) string {
	if len(payload) > MaxPayload {
		payload = payload[:MaxPayload]
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	depth := 1
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth != 1 {
				continue
			}
			if v != "id" {
				// Skip the value: a nested "id" key is not the request's.
				var skip json.RawMessage
				if dec.Decode(&skip) != nil {
					return ""
				}
				continue
			}
			val, err := dec.Token()
			if err != nil {
				return ""
			}
			switch x := val.(type) {
			case string:
				return x
			case json.Number:
				return x.String()
			}
			return ""
		}
	}
}

// EncodeReply encodes a reply with all four fields.
func EncodeReply(r Reply) []byte {
	if r.Data == nil {
		r.Data = struct{}{}
	}
	if r.Message == "" && r.Code == CodeSuccess {
		r.Message = "success"
	}
	b, err := Marshal(r)
	if err != nil {
		b, _ = Marshal(Reply{ID: r.ID, Code: CodeInternal, Data: struct{}{}, Message: "reply could not be encoded"})
	}
	return b
}

// Marshal encodes a payload for a device as JSON without HTML escaping:
// an id or URL holding '&', '<' or '>' goes out as sent (json.Marshal
// would write \u0026, which hand-written device parsers need not read).
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
