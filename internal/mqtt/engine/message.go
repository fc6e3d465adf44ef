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
	// Props are the MQTT 5 properties forwarded to subscribers unchanged;
	// nil when the publisher set none (most messages: 8 bytes, not a
	// 320-byte packet.Properties, per queued message).
	Props *Props
	// Publisher is the publishing client's id; empty for the server.
	Publisher string

	expires time.Time // zero: never
	// batch, with a store, gathers the copies of the message that stored
	// sessions queue while it is routed (see Server.route).
	batch *batch
}

// Props are the properties a PUBLISH carries from its publisher to its
// subscribers (MQTT 5 3.3.2.3). MessageExpiry is the interval as published:
// the engine forwards what remains of it.
type Props struct {
	PayloadFormat   byte
	MessageExpiry   *uint32
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	User            []packet.UserProperty
}

// propsOf keeps the forwarded properties of p; nil when there are none.
func propsOf(p *packet.Properties) *Props {
	if p.PayloadFormat == 0 && p.MessageExpiry == nil && p.ContentType == "" && p.ResponseTopic == "" &&
		p.CorrelationData == nil && len(p.User) == 0 {
		return nil
	}
	return &Props{PayloadFormat: p.PayloadFormat, MessageExpiry: p.MessageExpiry, ContentType: p.ContentType,
		ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData, User: p.User}
}

// properties are pr as packet properties; the zero value for nil.
func (pr *Props) properties() packet.Properties {
	if pr == nil {
		return packet.Properties{}
	}
	return packet.Properties{PayloadFormat: pr.PayloadFormat, MessageExpiry: pr.MessageExpiry,
		ContentType: pr.ContentType, ResponseTopic: pr.ResponseTopic, CorrelationData: pr.CorrelationData, User: pr.User}
}

// newMessage makes the routed message of a PUBLISH received now: the topic
// alias and subscription identifiers are the sender's and stay behind.
func newMessage(p *packet.Publish, topic, publisher string, now time.Time) *Message {
	m := &Message{Topic: topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain,
		Props: propsOf(&p.Properties), Publisher: publisher}
	m.setExpiry(now)
	return m
}

// setExpiry starts the message's expiry interval at t.
func (m *Message) setExpiry(t time.Time) {
	if m.Props != nil && m.Props.MessageExpiry != nil {
		m.expires = t.Add(time.Duration(*m.Props.MessageExpiry) * time.Second)
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
