package memory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/persist/memory"
)

// The engine's use of the port for one QoS 1 PUBLISH to an offline
// persistent subscriber: stored before the publisher's PUBACK, sent when
// the subscriber is back, deleted at its PUBACK; and what a restart finds
// in between.
func Example() {
	ctx := context.Background()
	var s persist.Store = memory.New()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

	// CONNECT with Clean Start 0 and a session expiry, SUBSCRIBE, then gone.
	sess := persist.Session{ClientID: "device-1", Version: 5, ExpiryInterval: 3600, Created: now}
	_ = s.PutSession(ctx, sess)
	_ = s.Subscribe(ctx, "device-1", []persist.Subscription{{Filter: "cmd/device-1", QoS: 1}})
	sess.DisconnectedAt = now.Add(time.Minute)
	_ = s.PutSession(ctx, sess)

	// A PUBLISH matches it: one Write for every persistent subscriber (and
	// the retained message, if any), then the publisher's PUBACK.
	publish := []byte{0x32} // the PUBLISH as packet.Publish.Append(nil, packet.V5) encodes it
	if err := s.Write(ctx, persist.Batch{Enqueue: []persist.Message{{ClientID: "device-1", Seq: 1, Publish: publish}}}); err != nil {
		fmt.Println("no PUBACK:", err)
		return
	}

	// The device is back: the message goes out with packet id 7.
	_ = s.Write(ctx, persist.Batch{Transitions: []persist.Transition{{ClientID: "device-1", Seq: 1, State: persist.Sent, PacketID: 7}}})

	// A restart here finds it in flight, to resend with DUP.
	_ = s.Load(ctx, func(l persist.Loaded) error {
		for _, m := range l.Messages {
			fmt.Printf("%s: seq %d %s, packet id %d\n", l.Session.ClientID, m.Seq, m.State, m.PacketID)
		}
		return nil
	})

	// Its PUBACK: done.
	_ = s.Write(ctx, persist.Batch{Transitions: []persist.Transition{{ClientID: "device-1", Seq: 1, State: persist.Done}}})
	_ = s.Load(ctx, func(l persist.Loaded) error {
		fmt.Printf("%s: %d queued, %d subscription\n", l.Session.ClientID, len(l.Messages), len(l.Subscriptions))
		return nil
	})
	// Output:
	// device-1: seq 1 sent, packet id 7
	// device-1: 0 queued, 1 subscription
}
