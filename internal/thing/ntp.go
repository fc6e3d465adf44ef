package thing

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/corral-iot/corral/internal/alink"
)

// maxNTPRequest bounds an NTP request: {"deviceSendTime":"<ms>"} and a
// little room.
const maxNTPRequest = 1024

// ntpResponse is the answer on /ext/ntp/{pk}/{dn}/response: every time a
// string of UTC milliseconds, as the Link SDKs parse it. The device sets
// its clock to (serverRecvTime + serverSendTime + now - deviceSendTime) / 2.
type ntpResponse struct {
	DeviceSendTime string `json:"deviceSendTime"`
	ServerRecvTime string `json:"serverRecvTime"`
	ServerSendTime string `json:"serverSendTime"`
}

// onNTP answers /ext/ntp/{pk}/{dn}/request. deviceSendTime may be a JSON
// string or number of milliseconds; it is echoed as a string. A request
// without a readable deviceSendTime gets no answer: the protocol has no
// error reply, and a made-up time would set the device's clock wrong.
func (s *Service) onNTP(topic string, payload []byte) {
	recv := s.o.Now()
	t, err := alink.ParseTopic(topic)
	if err != nil || t.Kind != "ntp" || t.Rest != "request" {
		return
	}
	sent, ok := parseNTPRequest(payload)
	if !ok {
		s.log.Debug("ignoring an NTP request without deviceSendTime", "topic", topic)
		return
	}
	rep := ntpResponse{DeviceSendTime: sent, ServerRecvTime: ms(recv.UnixMilli())}
	rep.ServerSendTime = ms(s.o.Now().UnixMilli())
	b, _ := json.Marshal(rep)
	if err := s.o.Broker.Publish(alink.NTPTopic(t.ProductKey, t.DeviceName, "response"), b, false, 0); err != nil {
		s.log.Warn("answering NTP", "topic", topic, "err", err)
	}
}

func ms(n int64) string { return strconv.FormatInt(n, 10) }

// parseNTPRequest reads deviceSendTime: a non-negative integer of at most
// 20 digits, as a JSON string or number.
func parseNTPRequest(payload []byte) (string, bool) {
	if len(payload) > maxNTPRequest {
		return "", false
	}
	var req struct {
		DeviceSendTime json.RawMessage `json:"deviceSendTime"`
	}
	if json.Unmarshal(payload, &req) != nil {
		return "", false
	}
	raw := bytes.TrimSpace(req.DeviceSendTime)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		raw = []byte(s)
	}
	if len(raw) == 0 || len(raw) > 20 {
		return "", false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return string(raw), true
}
