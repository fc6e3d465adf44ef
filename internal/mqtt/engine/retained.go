package engine

import (
	"time"

	"github.com/corral-iot/corral/internal/mqtt/retained"
)

// RetainedStore keeps the last retained message of each topic;
// *retained.Store is one (and the default). Safe for concurrent use.
type RetainedStore interface {
	// Retain stores m as its topic's retained message, or deletes the
	// topic's one when m's payload is empty; err is a refusal (a limit).
	Retain(m retained.Message) (deleted bool, err error)
	// Match calls fn with every unexpired retained message whose topic
	// matches the (unshared, valid) filter, until fn returns false; fn
	// must only collect.
	Match(filter string, now time.Time, fn func(m *retained.Message) bool)
	// Expire drops the messages expired at now.
	Expire(now time.Time) int
}

// retain stores m as retained (an empty payload clears the topic's one).
func (s *Server) retain(m *Message, now time.Time) {
	s.retained.Expire(now)
	_, err := s.retained.Retain(retained.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS,
		Properties: m.Props.properties(), Stored: now})
	if err != nil {
		s.log.Warn("mqtt engine: retained message refused", "err", err)
	}
}

// matchRetained returns the retained messages matching filter at now, as
// messages with RETAIN set and their expiry counting from their arrival.
func (s *Server) matchRetained(filter string, now time.Time) []*Message {
	var out []*Message
	s.retained.Match(filter, now, func(r *retained.Message) bool {
		m := &Message{Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retain: true, Props: propsOf(&r.Properties)}
		m.setExpiry(r.Stored)
		out = append(out, m)
		return true
	})
	return out
}
