package engine

import (
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Message is a published application message as the engine routes it. It is
// never changed once routed: sessions share it.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Properties are the MQTT 5 properties forwarded to subscribers
	// unchanged (payload format, content type, response topic, correlation
	// data, user properties). MessageExpiry is the interval as published;
	// the engine forwards what remains of it.
	Properties packet.Properties
	// Publisher is the publishing client's id; empty for the server.
	Publisher string

	expires time.Time // zero: never
}

// newMessage makes the routed message of a PUBLISH received now: the topic
// alias and subscription identifiers are the sender's and stay behind.
func newMessage(p *packet.Publish, topic, publisher string, now time.Time) *Message {
	m := &Message{Topic: topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain,
		Properties: p.Properties, Publisher: publisher}
	m.Properties.TopicAlias = 0
	m.Properties.SubscriptionIDs = nil
	m.setExpiry(now)
	return m
}

func (m *Message) setExpiry(now time.Time) {
	if e := m.Properties.MessageExpiry; e != nil {
		m.expires = now.Add(time.Duration(*e) * time.Second)
	}
}

// remaining is the expiry interval left at now, in whole seconds rounded up;
// ok is false when the message has expired. has is false when it never
// expires.
func (m *Message) remaining(now time.Time) (secs uint32, has, ok bool) {
	if m.expires.IsZero() {
		return 0, false, true
	}
	d := m.expires.Sub(now)
	if d <= 0 {
		return 0, true, false
	}
	return uint32((d + time.Second - 1) / time.Second), true, true
}

func (m *Message) size() int { return len(m.Topic) + len(m.Payload) }
