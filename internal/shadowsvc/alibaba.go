package shadowsvc

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

// The Alibaba topics: a device's requests on /shadow/update/{pk}/{dn};
// replies and control pushes on /shadow/get/{pk}/{dn}. Only the device
// itself (or its gateway) publishes on the first (broker rights; an
// application's HTTP publish to it is refused too).
const (
	alibabaUpdate   = "/shadow/update/"
	alibabaGet      = "/shadow/get/"
	alibabaRequests = alibabaUpdate + "+/+"
)

// parseAlibabaTopic reads /shadow/update/{pk}/{dn}.
func parseAlibabaTopic(topic string) (pk, dn string, ok bool) {
	rest, found := strings.CutPrefix(topic, alibabaUpdate)
	if !found {
		return "", "", false
	}
	pk, dn, found = strings.Cut(rest, "/")
	if !found || pk == "" || dn == "" || strings.Contains(dn, "/") {
		return "", "", false
	}
	return pk, dn, true
}

// alibabaGetTopic is where a device's replies and control pushes go.
func alibabaGetTopic(pk, dn string) string { return alibabaGet + pk + "/" + dn }

// onAlibaba answers one request of a device on its classic shadow; a
// get carrying "sinceVersion":N is answered with what changed since.
func (m *MQTT) onAlibaba(topic string, payload []byte, fromDevice bool) {
	pk, dn, ok := parseAlibabaTopic(topic)
	if !ok {
		return
	}
	ctx := context.Background()
	now := m.now()
	k := shadow.Key{ProductKey: pk, DeviceName: dn}
	reply := alibabaGetTopic(pk, dn)
	if since, ok := alibabaSince(payload); ok {
		if b, ok := m.alibabaChanges(ctx, k, since, now); ok {
			m.publish(reply, b)
			return
		}
	}
	res, err := m.svc.Alibaba(ctx, k, payload, fromDevice)
	var ae *shadow.AlibabaError
	switch {
	case err == nil, errors.As(err, &ae) && len(res.Reply) > 0:
		m.publish(reply, res.Reply)
	default:
		m.log.Error("shadow request failed", "dialect", "alibaba", "err", err)
		m.publish(reply, alibabaFailure(shadow.AliServerError, "server error", now))
	}
}

// alibabaSince reads corral's extension {"method":"get","sinceVersion":N};
// ok is false for any other request (which the service answers).
func alibabaSince(payload []byte) (int64, bool) {
	var req struct {
		Method string          `json:"method"`
		Since  json.RawMessage `json:"sinceVersion"`
	}
	if json.Unmarshal(payload, &req) != nil || req.Method != "get" || req.Since == nil {
		return 0, false
	}
	return parseVersion(req.Since)
}

// alibabaChanges is the get reply with what changed since a version:
// {"method":"reply","payload":{"status":"success","state":{…},
// "fromVersion":N},"timestamp":T,"version":V}. ok is false when the
// version is not kept (or there is no shadow): the service answers the
// get as usual.
func (m *MQTT) alibabaChanges(ctx context.Context, k shadow.Key, since int64, now time.Time) ([]byte, bool) {
	ch, err := m.svc.Since(ctx, k, since)
	if err != nil {
		return nil, false
	}
	type body struct {
		Status      string       `json:"status"`
		State       changedState `json:"state"`
		FromVersion int64        `json:"fromVersion"`
	}
	return marshal(struct {
		Method    string `json:"method"`
		Payload   body   `json:"payload"`
		Timestamp int64  `json:"timestamp"`
		Version   int64  `json:"version"`
	}{"reply", body{"success", changedState{ch.Desired, ch.Reported}, ch.From}, now.Unix(), ch.To}), true
}

// alibabaFailure is an error reply the service could not build itself
// (the store failed).
func alibabaFailure(code int, msg string, now time.Time) []byte {
	type content struct {
		Code    string `json:"errorcode"`
		Message string `json:"errormessage"`
	}
	type body struct {
		Status  string  `json:"status"`
		Content content `json:"content"`
	}
	return marshal(struct {
		Method    string `json:"method"`
		Payload   body   `json:"payload"`
		Timestamp int64  `json:"timestamp"`
	}{"reply", body{"error", content{strconv.Itoa(code), msg}}, now.Unix()})
}
