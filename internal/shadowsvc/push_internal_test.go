package shadowsvc

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

// pushBroker records what is published and says subscribed for the
// topics in subscribed.
type pushBroker struct {
	Broker     // unused methods
	subscribed map[string]bool
	published  map[string][]byte
}

func (b *pushBroker) Subscribed(topic string) bool { return b.subscribed[topic] }
func (b *pushBroker) Publish(topic string, payload []byte, _ bool, _ byte) error {
	b.published[topic] = payload
	return nil
}
func (b *pushBroker) PublishEvent(topic string, payload []byte) { b.published[topic] = payload }
func (b *pushBroker) Online(string, string) bool                { return false }

// TestPushOnlyWhatIsSubscribed: an AWS update's documents, delta and event
// are published exactly when someone subscribed to their topic, and the
// documents built from the stored forms are the core's, whether or not
// the previous stored form was at hand.
func TestPushOnlyWhatIsSubscribed(t *testing.T) {
	now := time.Unix(1700000000, 0)
	prev, err := shadow.ApplyAWS(shadow.New(nil, now), []byte(`{"state":{"reported":{"t":1}}}`), now, shadow.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	req := []byte(`{"state":{"desired":{"t":2}},"clientToken":"tok"}`)
	full, err := shadow.ApplyAWS(prev.Next, req, now, shadow.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		docs  = "$aws/things/pk.dn/shadow/update/documents"
		delta = "$aws/things/pk.dn/shadow/update/delta"
		event = "$corral/events/shadow/pk/dn"
	)
	k := shadow.Key{ProductKey: "pk", DeviceName: "dn"}
	for _, tc := range []struct {
		name       string
		subscribed []string
		prevStored []byte
	}{
		{name: "nobody"},
		{name: "documents only", subscribed: []string{docs}, prevStored: prev.Stored},
		{name: "documents, previous not kept", subscribed: []string{docs}},
		{name: "all", subscribed: []string{docs, delta, event}, prevStored: prev.Stored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &pushBroker{subscribed: map[string]bool{}, published: map[string][]byte{}}
			for _, s := range tc.subscribed {
				b.subscribed[s] = true
			}
			m := NewMQTT(MQTTOptions{Broker: b, Now: func() time.Time { return now }})
			m.ShadowChanged(context.Background(), Change{Key: k, Thing: "pk.dn", Prev: prev.Next, Cur: full.Next,
				Source: sourceAWS, FromDevice: true, ClientToken: "tok", Delta: full.Delta,
				PrevStored: tc.prevStored, CurStored: full.Stored, At: now})
			if len(b.published) != len(tc.subscribed) {
				t.Fatalf("published %d topics, want %d (%v)", len(b.published), len(tc.subscribed), tc.subscribed)
			}
			for _, s := range tc.subscribed {
				if b.published[s] == nil {
					t.Fatalf("nothing on %s", s)
				}
			}
			if got := b.published[docs]; got != nil && !bytes.Equal(got, full.Documents) {
				t.Fatalf("documents:\n got %s\nwant %s", got, full.Documents)
			}
			if got := b.published[delta]; got != nil && !bytes.Equal(got, full.Delta) {
				t.Fatalf("delta:\n got %s\nwant %s", got, full.Delta)
			}
		})
	}
}
