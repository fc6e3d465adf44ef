package shadowsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corral-iot/corral/internal/shadow"
)

// The AWS request topics: $aws/things/{thing}/shadow/{get|update|delete}
// and $aws/things/{thing}/shadow/name/{name}/{get|update|delete}. Their
// answers are one level deeper, so these filters never see them.
const (
	awsThings          = "$aws/things/"
	awsClassicRequests = awsThings + "+/shadow/+"
	awsNamedRequests   = awsThings + "+/shadow/name/+/+"
)

// awsTopic is a request topic read: the thing, the shadow's name ("" for
// the classic one) and the operation.
type awsTopic struct {
	thing, name, op string
}

// parseAWSTopic reads a request topic; ok is false for anything else
// (an answer topic, an unknown operation, an empty thing or name).
func parseAWSTopic(topic string) (t awsTopic, ok bool) {
	rest, found := strings.CutPrefix(topic, awsThings)
	if !found {
		return t, false
	}
	t.thing, rest, _ = strings.Cut(rest, "/")
	rest, found = strings.CutPrefix(rest, "shadow/")
	if t.thing == "" || !found {
		return t, false
	}
	if named, ok := strings.CutPrefix(rest, "name/"); ok {
		t.name, rest, found = strings.Cut(named, "/")
		if t.name == "" || !found {
			return t, false
		}
	}
	switch rest {
	case "get", "update", "delete":
		t.op = rest
		return t, true
	}
	return t, false
}

// awsPrefix is a shadow's topic prefix.
func awsPrefix(thing, name string) string {
	if name == "" {
		return awsThings + thing + "/shadow"
	}
	return awsThings + thing + "/shadow/name/" + name
}

// onAWS answers one AWS request on {request topic}/accepted or
// /rejected, as AWS does: every subscriber of the answer topic gets it.
// update/delta and update/documents are published by ShadowChanged, for
// every change whatever its source.
func (m *MQTT) onAWS(topic string, payload []byte, fromDevice bool) {
	t, ok := parseAWSTopic(topic)
	if !ok {
		return
	}
	ctx := context.Background()
	now := m.now()
	reject := func(err error, token string) {
		var ae *shadow.ErrorAWS
		if !errors.As(err, &ae) {
			m.log.Error("shadow request failed", "op", t.op, "err", err)
			ae = shadow.NewErrorAWS(500, shadow.MsgInternal, token, now)
		}
		m.publish(topic+"/rejected", ae.Payload())
	}
	dev, err := m.deviceOfThing(ctx, t.thing)
	if err != nil {
		req, _, _ := parseAWSRead(payload, now)
		if notFound(err) {
			err = shadow.NewErrorAWS(404, shadow.MsgThingNotFound, req.token, now)
		}
		reject(err, req.token)
		return
	}
	k := shadow.Key{ProductKey: dev.pk, DeviceName: dev.dn, Name: t.name}
	switch t.op {
	case "update":
		u, err := m.svc.UpdateAWS(ctx, k, payload, Origin{Source: sourceAWS, FromDevice: fromDevice})
		if err != nil {
			reject(err, "")
			return
		}
		m.publish(topic+"/accepted", u.Accepted)
	case "get":
		req, rej, ok := parseAWSRead(payload, now)
		if !ok {
			m.publish(topic+"/rejected", rej.Payload())
			return
		}
		if req.since != nil {
			if b, ok := m.awsSince(ctx, k, *req.since, req.token, now); ok {
				m.publish(topic+"/accepted", b)
				return
			}
		}
		b, err := m.svc.GetAWS(ctx, k, req.token)
		if err != nil {
			reject(err, req.token)
			return
		}
		m.publish(topic+"/accepted", b)
	case "delete":
		req, rej, ok := parseAWSRead(payload, now)
		if !ok {
			m.publish(topic+"/rejected", rej.Payload())
			return
		}
		b, err := m.svc.DeleteAWS(ctx, k, req.token, Origin{Source: sourceAWS, FromDevice: fromDevice})
		if err != nil {
			reject(err, req.token)
			return
		}
		m.publish(topic+"/accepted", b)
	}
}

// awsRead is a get or delete request: an empty payload, or
// {"clientToken":"…"} with, on a get, corral's "sinceVersion":N.
type awsRead struct {
	token string
	since *int64
}

// parseAWSRead reads a get or delete payload. A refusal carries the
// message AWS sends for the same fault in an update.
func parseAWSRead(payload []byte, now time.Time) (awsRead, *shadow.ErrorAWS, bool) {
	var r awsRead
	if len(bytes.TrimSpace(payload)) == 0 {
		return r, nil, true
	}
	if !utf8.Valid(payload) {
		return r, shadow.NewErrorAWS(415, shadow.MsgNotUTF8, "", now), false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil || top == nil {
		return r, shadow.NewErrorAWS(400, shadow.MsgInvalidJSON, "", now), false
	}
	if raw, ok := top["clientToken"]; ok {
		if json.Unmarshal(raw, &r.token) != nil || r.token == "" || len(r.token) > shadow.MaxClientToken {
			return awsRead{}, shadow.NewErrorAWS(400, shadow.MsgInvalidToken, "", now), false
		}
	}
	if raw, ok := top[sinceField]; ok {
		v, ok := parseVersion(raw)
		if !ok {
			return awsRead{}, shadow.NewErrorAWS(400, shadow.MsgInvalidVersion, r.token, now), false
		}
		r.since = &v
	}
	return r, nil, true
}

// sinceField is corral's extension of get requests in both dialects:
// "what changed since version N".
const sinceField = "sinceVersion"

// parseVersion reads a version number: an integer in 0..shadow.MaxVersion.
func parseVersion(raw json.RawMessage) (int64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false // a string holding a number is not a number
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var n json.Number
	if dec.Decode(&n) != nil {
		return 0, false
	}
	v, err := n.Int64()
	if err != nil || v < 0 || v > shadow.MaxVersion {
		return 0, false
	}
	return v, true
}

// awsSince answers a get with sinceVersion from the versions kept:
// {"state":{"desired":{…},"reported":{…}},"fromVersion":N,"version":V,
// "timestamp":T,"clientToken":"…"}, the changes written as an update
// (removed keys null). ok is false when the version is no longer kept or
// the shadow does not exist: the caller answers with the whole document
// (or its refusal), as a plain get.
func (m *MQTT) awsSince(ctx context.Context, k shadow.Key, since int64, token string, now time.Time) ([]byte, bool) {
	ch, err := m.svc.Since(ctx, k, since)
	if err != nil {
		if !errors.Is(err, shadow.ErrVersionNotKept) && !notFound(err) {
			var ae *shadow.ErrorAWS
			if !errors.As(err, &ae) {
				m.log.Warn("reading shadow history", "err", err)
			}
		}
		return nil, false
	}
	return marshal(struct {
		State       changedState `json:"state"`
		FromVersion int64        `json:"fromVersion"`
		Version     int64        `json:"version"`
		Timestamp   int64        `json:"timestamp"`
		ClientToken string       `json:"clientToken,omitempty"`
	}{changedState{ch.Desired, ch.Reported}, ch.From, ch.To, now.Unix(), token}), true
}

// changedState is the sections of shadow.Changes; an absent one did not
// change.
type changedState struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// deltaPayload is the update/delta payload of a document (the shape
// internal/shadow gives an AWS update's delta), nil when the delta is
// empty: for changes that did not come through an AWS update, and for
// delivering a pending delta.
func deltaPayload(d shadow.Document, now time.Time, token string) []byte {
	st, md := d.Delta()
	if st == nil {
		return nil
	}
	return shadow.MessageAWS(st, md, d.Version, now.Unix(), token)
}

// documentsPayload is update/documents: the previous and the current
// document ({state, metadata, version} each, as stored), the time and
// the clientToken.
func documentsPayload(prev, cur shadow.Document, now time.Time, token string) []byte {
	return marshal(struct {
		Previous    shadow.Document `json:"previous"`
		Current     shadow.Document `json:"current"`
		Timestamp   int64           `json:"timestamp"`
		ClientToken string          `json:"clientToken,omitempty"`
	}{prev, cur, now.Unix(), token})
}

// marshal encodes what this package builds, which always encodes.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("shadowsvc: encoding a payload: " + err.Error())
	}
	return b
}
