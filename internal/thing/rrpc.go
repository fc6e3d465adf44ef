package thing

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// v4 RRPC (Link SDK C v4, clientId flag ext=3): a synchronous call goes
// on /ext/rrpc/{rrpcId}/{topic} and the device answers on the same topic.
// Both forms are served: thing services (/ext/rrpc/{id}/sys/{pk}/{dn}/
// thing/service/{serviceId}, an Alink reply carrying code) and custom
// topics (/ext/rrpc/{id}/{pk}/{dn}/user/…, raw payloads both ways). The
// answers are read from clients' publishes only, so corral's request on
// the shared topic is never taken for its answer.

// ExtRRPCTopic is the v4 RRPC topic of a request on topic (which starts
// with "/").
func ExtRRPCTopic(rrpcID, topic string) string { return "/ext/rrpc/" + rrpcID + topic }

// extRRPC is a v4 RRPC topic taken apart.
type extRRPC struct {
	id, pk, dn string
	rest       string // after {pk}/{dn}/: thing/service/{id} or user/…
}

// parseExtRRPC reads /ext/rrpc/{id}/sys/{pk}/{dn}/{rest} (sys) or
// /ext/rrpc/{id}/{pk}/{dn}/{rest}.
func parseExtRRPC(topic string, sys bool) (extRRPC, bool) {
	s, ok := strings.CutPrefix(topic, "/ext/rrpc/")
	if !ok {
		return extRRPC{}, false
	}
	n := 4
	if sys {
		n = 5
	}
	parts := strings.SplitN(s, "/", n)
	if len(parts) != n || (sys && parts[1] != "sys") {
		return extRRPC{}, false
	}
	if sys {
		parts = append(parts[:1], parts[2:]...)
	}
	t := extRRPC{id: parts[0], pk: parts[1], dn: parts[2], rest: parts[3]}
	if t.id == "" || t.pk == "" || t.dn == "" || t.rest == "" {
		return extRRPC{}, false
	}
	return t, true
}

// onExtReply takes a device's answer to a v4 RRPC service call, matched
// by the rrpcId of its topic.
func (s *Service) onExtReply(topic string, payload []byte) {
	t, ok := parseExtRRPC(topic, true)
	if !ok {
		return
	}
	r, ok := decodeReply(payload, true)
	if !ok {
		return // not an answer
	}
	s.deliver(t.pk+"/"+t.dn+"/"+t.id, r)
}

// onCustomReply takes a device's answer to a custom-topic RRPC.
func (s *Service) onCustomReply(topic string, payload []byte) {
	t, ok := parseExtRRPC(topic, false)
	if !ok || !strings.HasPrefix(t.rest, "user/") {
		return
	}
	s.mu.Lock()
	ch := s.raw[t.pk+"/"+t.dn+"/"+t.id]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- append([]byte(nil), payload...):
		default:
		}
	}
}

// CustomCall is an operator's synchronous call on a custom topic.
type CustomCall struct {
	ProductKey string
	DeviceName string
	// Topic is the custom topic after {pk}/{dn}/: "user/…".
	Topic   string
	Payload []byte
	Timeout time.Duration // 5 s when 0
}

// CustomResult is a device's answer to a CustomCall.
type CustomResult struct {
	RRPCID  string `json:"rrpcId"`
	Topic   string `json:"topic"`
	Payload []byte `json:"payload" doc:"the device's answer as it sent it (base64)"`
}

// CustomRRPC sends c.Payload on /ext/rrpc/{rrpcId}/{pk}/{dn}/{topic} and
// waits for the device's answer on the same topic.
func (s *Service) CustomRRPC(ctx context.Context, c CustomCall) (CustomResult, error) {
	if !strings.HasPrefix(c.Topic, "user/") || len(c.Topic) == len("user/") || strings.ContainsAny(c.Topic, "+#") {
		return CustomResult{}, fmt.Errorf("topic %q: %w", c.Topic, ErrBadTopic)
	}
	if !s.o.Broker.Online(c.ProductKey, c.DeviceName) {
		return CustomResult{}, fmt.Errorf("%s/%s: %w", c.ProductKey, c.DeviceName, ErrOffline)
	}
	id := strconv.FormatInt(s.ids.Add(1), 10)
	topic := ExtRRPCTopic(id, "/"+c.ProductKey+"/"+c.DeviceName+"/"+c.Topic)
	res := CustomResult{RRPCID: id, Topic: topic}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	key := c.ProductKey + "/" + c.DeviceName + "/" + id
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.raw[key] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.raw, key)
		s.mu.Unlock()
	}()
	if err := s.o.Broker.Publish(topic, c.Payload, false, 1); err != nil {
		return res, err
	}
	tm := time.NewTimer(c.Timeout)
	defer tm.Stop()
	select {
	case p := <-ch:
		res.Payload = p
		return res, nil
	case <-tm.C:
		return res, fmt.Errorf("%s after %v: %w", c.Topic, c.Timeout, ErrTimeout)
	case <-ctx.Done():
		return res, ctx.Err()
	}
}
