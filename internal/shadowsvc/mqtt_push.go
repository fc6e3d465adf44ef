package shadowsvc

import (
	"context"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/shadow"
)

// eventsShadow is where every accepted change is published to the
// account's applications: $corral/events/shadow/{pk}/{dn}[/{name}].
const eventsShadow = "$corral/events/shadow/"

// ShadowChanged implements Observer: whatever made the change (an AWS or
// Alibaba request, REST, presence), AWS subscribers get update/documents
// and, when the delta is not empty, update/delta; a device whose desired
// an application changed gets a control push on /shadow/get at once if it
// is online; the account's applications get the event. A deleted shadow
// gives the event only (delete/accepted is the requester's answer).
func (m *MQTT) ShadowChanged(ctx context.Context, c Change) {
	now := m.now()
	thing := c.Thing
	if thing == "" {
		t, err := m.thingOf(ctx, c.Key.ProductKey, c.Key.DeviceName)
		if err != nil {
			m.log.Warn("shadow change of an unknown device", "err", err)
			return
		}
		thing = t
	}
	// The event last: who sees it knows the rest was published.
	defer m.publishEvent(c)
	if c.Deleted {
		return
	}
	prefix := awsPrefix(thing, c.Key.Name)
	// Payloads no subscription would receive are not built.
	if topic := prefix + "/update/documents"; m.b.Subscribed(topic) {
		m.publish(topic, documents(c, now))
	}
	delta := c.Delta
	switch {
	case c.Source == sourcePresence:
		// Presence leaves desired alone: a pending delta goes to the
		// device as its session starts (deliverPending), not again here.
		delta = nil
	case delta == nil && c.Source != sourceAWS && m.b.Subscribed(prefix+"/update/delta"):
		delta = deltaPayload(c.Cur, now, c.ClientToken)
	}
	if delta != nil && m.b.Subscribed(prefix+"/update/delta") {
		m.publish(prefix+"/update/delta", delta)
	}
	if c.Key.Name == "" && !c.FromDevice && c.DesiredChanged && m.b.Online(c.Key.ProductKey, c.Key.DeviceName) {
		m.publish(alibabaGetTopic(c.Key.ProductKey, c.Key.DeviceName), shadow.Control(c.Cur, now))
	}
}

// documents is a change's update/documents payload: the one the change
// built, else an AWS update's or a presence's from the stored forms (the previous one
// encoded here when the service did not have it at hand), else
// documentsPayload's.
func documents(c Change, now time.Time) []byte {
	switch {
	case c.Documents != nil:
		return c.Documents
	case (c.Source == sourceAWS || c.Source == sourcePresence) && c.CurStored != nil:
		prev := c.PrevStored
		if prev == nil {
			prev, _ = c.Prev.MarshalJSON()
		}
		return shadow.DocumentsAWS(prev, c.CurStored, c.At.Unix(), c.ClientToken)
	}
	return documentsPayload(c.Prev, c.Cur, now, c.ClientToken)
}

// publishEvent publishes a change to the account's applications on
// $corral/events/shadow/{pk}/{dn}[/{name}], as the webhooks post it,
// when one of them (or an in-process subscriber) subscribed to it.
func (m *MQTT) publishEvent(c Change) {
	topic := eventsShadow + c.Key.ProductKey + "/" + c.Key.DeviceName
	if c.Key.Name != "" {
		topic += "/" + c.Key.Name
	}
	if m.b.Subscribed(topic) {
		m.b.PublishEvent(topic, marshal(NewEvent(c)))
	}
}

// DeviceSubscribed implements broker.SubscribeObserver: a device that
// subscribes a topic its shadows answer on gets what waits for it — the
// AWS delta of each of its shadows the filter covers, the Alibaba control
// push when it covers /shadow/get/{pk}/{dn} — so an application's command
// given while it was away is not lost.
func (m *MQTT) DeviceSubscribed(pk, dn, filter string) {
	ctx := context.Background()
	if packet.Match(filter, alibabaGetTopic(pk, dn)) {
		m.deliverPending(ctx, pk, dn, "", true, false)
	}
	if !strings.HasPrefix(filter, awsThings) {
		return
	}
	thing, err := m.thingOf(ctx, pk, dn)
	if err != nil {
		return
	}
	if packet.Match(filter, awsPrefix(thing, "")+"/update/delta") {
		m.deliverPending(ctx, pk, dn, "", false, true)
	}
	if !strings.Contains(filter, "/name/") && !strings.ContainsAny(filter, "+#") {
		return
	}
	names, err := m.svc.List(ctx, pk, dn, "", maxNamedDelivered)
	if err != nil {
		m.log.Warn("listing named shadows", "err", err)
		return
	}
	for _, n := range names {
		if packet.Match(filter, awsPrefix(thing, n)+"/update/delta") {
			m.deliverPending(ctx, pk, dn, n, false, true)
		}
	}
}

// maxNamedDelivered bounds the named shadows whose deltas one SUBSCRIBE
// brings (the rest are read with get).
const maxNamedDelivered = 100

// deliverPending publishes a shadow's delta, if it has one, as a
// control push on /shadow/get/{pk}/{dn} (classic shadow, control) and on
// …/update/delta (delta), both with the current version.
func (m *MQTT) deliverPending(ctx context.Context, pk, dn, name string, control, delta bool) {
	err := m.svc.WithDocument(ctx, shadow.Key{ProductKey: pk, DeviceName: dn, Name: name}, func(doc shadow.Document) {
		m.deliverDoc(ctx, pk, dn, name, doc, control, delta)
	})
	if err != nil && !notFound(err) {
		m.log.Warn("reading a shadow to deliver", "err", err)
	}
}

// deliverDoc is deliverPending of a live document already read.
func (m *MQTT) deliverDoc(ctx context.Context, pk, dn, name string, doc shadow.Document, control, delta bool) {
	if st, _ := doc.Delta(); st == nil {
		return
	}
	now := m.now()
	if control && name == "" {
		m.publish(alibabaGetTopic(pk, dn), shadow.Control(doc, now))
	}
	if delta {
		thing, err := m.thingOf(ctx, pk, dn)
		if err != nil {
			return
		}
		m.publish(awsPrefix(thing, name)+"/update/delta", deltaPayload(doc, now, ""))
	}
}
