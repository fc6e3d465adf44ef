package persist_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
)

func TestExpiresAt(t *testing.T) {
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		s    persist.Session
		want time.Time
	}{
		{"connected", persist.Session{ExpiryInterval: 60}, time.Time{}},
		{"never", persist.Session{ExpiryInterval: persist.NeverExpires, DisconnectedAt: at}, time.Time{}},
		{"a minute", persist.Session{ExpiryInterval: 60, DisconnectedAt: at}, at.Add(time.Minute)},
		{"largest finite", persist.Session{ExpiryInterval: persist.NeverExpires - 1, DisconnectedAt: at}, at.Add(time.Duration(persist.NeverExpires-1) * time.Second)},
		{"zero interval", persist.Session{DisconnectedAt: at}, at},
	} {
		if got := tt.s.ExpiresAt(); !got.Equal(tt.want) {
			t.Errorf("%s: ExpiresAt = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	pub := []byte{0x30}
	ok := persist.Message{ClientID: "a", Seq: 1, Publish: pub}
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"empty batch", persist.Batch{}.Validate(), nil},
		{"good batch", persist.Batch{Enqueue: []persist.Message{ok, {ClientID: "b", Seq: 1, Publish: pub, State: persist.Received, PacketID: 4}},
			Transitions: []persist.Transition{{ClientID: "a", Seq: 9, State: persist.Done}}, AddInbound: []persist.Inbound{{ClientID: "a", PacketID: 1}},
			RemoveInbound: []persist.Inbound{{ClientID: "a"}}}.Validate(), nil},
		{"largest seq", persist.Batch{Enqueue: []persist.Message{{ClientID: "a", Seq: math.MaxInt64, Publish: pub}}}.Validate(), nil},
		{"seq past int64", persist.Batch{Enqueue: []persist.Message{{ClientID: "a", Seq: math.MaxInt64 + 1, Publish: pub}}}.Validate(), persist.ErrInvalid},
		{"no client", persist.Batch{Enqueue: []persist.Message{{Seq: 1, Publish: pub}}}.Validate(), persist.ErrInvalid},
		{"no bytes", persist.Batch{Enqueue: []persist.Message{{ClientID: "a", Seq: 1}}}.Validate(), persist.ErrInvalid},
		{"enqueued done", persist.Batch{Enqueue: []persist.Message{{ClientID: "a", Publish: pub, State: persist.Done}}}.Validate(), persist.ErrInvalid},
		{"same seq twice", persist.Batch{Enqueue: []persist.Message{ok, ok}}.Validate(), persist.ErrDuplicate},
		{"transition without client", persist.Batch{Transitions: []persist.Transition{{Seq: 1}}}.Validate(), persist.ErrInvalid},
		{"transition to unknown state", persist.Batch{Transitions: []persist.Transition{{ClientID: "a", State: persist.Done + 1}}}.Validate(), persist.ErrInvalid},
		{"inbound packet id 0", persist.Batch{AddInbound: []persist.Inbound{{ClientID: "a"}}}.Validate(), persist.ErrInvalid},
		{"released inbound without client", persist.Batch{RemoveInbound: []persist.Inbound{{PacketID: 1}}}.Validate(), persist.ErrInvalid},
		{"retained in a batch", persist.Batch{SetRetained: []persist.Retained{{Topic: "t", Publish: pub}}, ClearRetained: []string{"u"}}.Validate(), nil},
		{"retained without bytes in a batch", persist.Batch{SetRetained: []persist.Retained{{Topic: "t"}}}.Validate(), persist.ErrInvalid},
		{"clearing no topic in a batch", persist.Batch{ClearRetained: []string{""}}.Validate(), persist.ErrInvalid},
		{"session", persist.Session{ClientID: "a", Version: 4}.Validate(), nil},
		{"session without client", persist.Session{Version: 5}.Validate(), persist.ErrInvalid},
		{"session of MQTT 3.1", persist.Session{ClientID: "a", Version: 3}.Validate(), persist.ErrInvalid},
		{"subscriptions", persist.ValidateSubscriptions("a", []persist.Subscription{{Filter: "$share/g/#", QoS: 2, RetainHandling: 2}, {ClientID: "a", Filter: "x"}}), nil},
		{"subscriptions without client", persist.ValidateSubscriptions("", []persist.Subscription{{Filter: "x"}}), persist.ErrInvalid},
		{"subscription of another client", persist.ValidateSubscriptions("a", []persist.Subscription{{ClientID: "b", Filter: "x"}}), persist.ErrInvalid},
		{"empty filter", persist.ValidateSubscriptions("a", []persist.Subscription{{}}), persist.ErrInvalid},
		{"QoS 3", persist.ValidateSubscriptions("a", []persist.Subscription{{Filter: "x", QoS: 3}}), persist.ErrInvalid},
		{"retain handling 3", persist.ValidateSubscriptions("a", []persist.Subscription{{Filter: "x", RetainHandling: 3}}), persist.ErrInvalid},
		{"retained", persist.Retained{Topic: "t", Publish: pub}.Validate(), nil},
		{"retained without topic", persist.Retained{Publish: pub}.Validate(), persist.ErrInvalid},
		{"retained without bytes", persist.Retained{Topic: "t"}.Validate(), persist.ErrInvalid},
	} {
		if tt.want == nil && tt.err != nil || tt.want != nil && !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}
}

func TestStateNames(t *testing.T) {
	for s, want := range map[persist.State]string{persist.Queued: "queued", persist.Sent: "sent", persist.Received: "received", persist.Done: "done", 9: "unknown"} {
		if s.String() != want {
			t.Errorf("State(%d) = %q, want %q", s, s.String(), want)
		}
	}
}
