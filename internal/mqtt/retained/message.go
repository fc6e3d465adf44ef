package retained

import (
	"strings"
	"time"
	"unsafe"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Message is a retained message as the engine gives it to the store and
// gets it back.
type Message struct {
	Topic   string
	Payload []byte // empty in Set: delete the topic's retained message
	QoS     byte
	// Properties are the publisher's, as received: payload format, message
	// expiry (not counted down: see Remaining), content type, response
	// topic, correlation data, user properties in order. The store keeps
	// only these: a topic alias or subscription identifiers belong to one
	// hop, not to the message.
	Properties packet.Properties
	Stored     time.Time // arrival; Set takes the present time when zero
}

// Remaining is what is left of m's Message Expiry Interval at now, in whole
// seconds rounded up, to forward in its place (MQTT 5.0 3.3.2.3.3). ok is
// false when the publisher set no expiry (none is then added), expired true
// when the interval has run out: the message must not be delivered.
func (m *Message) Remaining(now time.Time) (secs uint32, ok bool, expired bool) {
	if m.Properties.MessageExpiry == nil {
		return 0, false, false
	}
	left := m.Stored.Add(time.Duration(*m.Properties.MessageExpiry) * time.Second).Sub(now)
	if left <= 0 {
		return 0, true, true
	}
	return uint32((left + time.Second - 1) / time.Second), true, false
}

// entry is a message as stored: 48 bytes, a size class.
//
// Invariant: buf is the topic (its first tlen bytes) then the payload, one
// allocation that nothing writes to; the expiry and payload format are here
// (one or both is all most retained messages have), props is nil when the
// publisher set none of the other kept properties; hidx is the entry's place
// in the expiry heap, -1 when it has no expiry.
type entry struct {
	buf       string
	props     *props
	stored    int64 // arrival, Unix nanoseconds
	hidx      int32
	expiry    uint32 // seconds, when hasExpiry
	tlen      uint16 // a topic name is at most 65,535 bytes
	qos       byte
	format    byte // payload format indicator
	hasExpiry bool
}

func (e *entry) topic() string { return e.buf[:e.tlen] }

// payload is e's payload, never empty; the bytes are the store's: read-only.
func (e *entry) payload() []byte {
	p := e.buf[e.tlen:]
	return unsafe.Slice(unsafe.StringData(p), len(p))
}

// props are the publisher's other properties the store keeps: 80 bytes
// where a packet.Properties is 312.
type props struct {
	contentType, responseTopic string
	correlation                []byte
	user                       []packet.UserProperty
}

// newEntry copies m into an entry: the caller may reuse its buffers.
func newEntry(m *Message) *entry {
	buf := make([]byte, len(m.Topic)+len(m.Payload))
	copy(buf, m.Topic)
	copy(buf[len(m.Topic):], m.Payload)
	e := &entry{
		buf:    unsafe.String(unsafe.SliceData(buf), len(buf)),
		stored: m.Stored.UnixNano(),
		hidx:   -1,
		tlen:   uint16(len(m.Topic)),
		qos:    m.QoS,
	}
	p := &m.Properties
	if p.MessageExpiry != nil {
		e.expiry, e.hasExpiry = *p.MessageExpiry, true
	}
	e.format = p.PayloadFormat
	if p.ContentType == "" && p.ResponseTopic == "" && p.CorrelationData == nil && len(p.User) == 0 {
		return e
	}
	kept := &props{
		contentType:   strings.Clone(p.ContentType),
		responseTopic: strings.Clone(p.ResponseTopic),
	}
	if p.CorrelationData != nil {
		kept.correlation = append(make([]byte, 0, len(p.CorrelationData)), p.CorrelationData...)
	}
	if len(p.User) != 0 {
		kept.user = make([]packet.UserProperty, len(p.User))
		for i, u := range p.User {
			kept.user[i] = packet.UserProperty{Key: strings.Clone(u.Key), Value: strings.Clone(u.Value)}
		}
	}
	e.props = kept
	return e
}

// message returns a new Message of e. Its payload and properties are e's,
// shared: read-only.
func (e *entry) message() *Message {
	m := &Message{Topic: e.topic(), Payload: e.payload(), QoS: e.qos, Stored: time.Unix(0, e.stored)}
	if p := e.props; p != nil {
		m.Properties = packet.Properties{
			ContentType:     p.contentType,
			ResponseTopic:   p.responseTopic,
			CorrelationData: p.correlation,
			User:            p.user,
		}
	}
	m.Properties.PayloadFormat = e.format
	if e.hasExpiry {
		exp := e.expiry
		m.Properties.MessageExpiry = &exp
	}
	return m
}

// deadline is when e expires, in Unix nanoseconds; ok is false when never.
func (e *entry) deadline() (at int64, ok bool) {
	if !e.hasExpiry {
		return 0, false
	}
	return e.stored + int64(e.expiry)*int64(time.Second), true
}

// expired reports whether e has expired at now (Unix nanoseconds).
func (e *entry) expired(now int64) bool {
	at, ok := e.deadline()
	return ok && now >= at
}

// size is what e counts against Limits.MaxBytes: its topic, payload and
// properties' bytes.
func (e *entry) size() int64 {
	n := len(e.buf)
	if p := e.props; p != nil {
		n += len(p.contentType) + len(p.responseTopic) + len(p.correlation)
		for _, u := range p.user {
			n += len(u.Key) + len(u.Value)
		}
	}
	return int64(n)
}
