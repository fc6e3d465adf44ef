package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/persist/memory"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// TestMQTTAgainstMemory runs the same random operations (refused ones
// included: copies for clients without a session, sequence numbers already
// stored) on the SQLite adapter and on the in-memory one, and checks they
// answer alike and hold the same sessions and retained messages
// throughout.
func TestMQTTAgainstMemory(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, want := persist.Store(s.MQTT()), persist.Store(memory.New())
	r := rand.New(rand.NewPCG(13, 4))
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	clients := []string{"a", "b", "c", "d", "e"}
	client := func() string { return clients[r.IntN(len(clients))] }
	topic := func() string { return fmt.Sprintf("t/%d", r.IntN(4)) }
	at := func() time.Time {
		if r.IntN(3) == 0 {
			return time.Time{}
		}
		return t0.Add(time.Duration(r.IntN(100)) * time.Second)
	}
	same := func(i int, op string, e1, e2 error) {
		t.Helper()
		kind := func(err error) string {
			for _, k := range []error{persist.ErrNoSession, persist.ErrDuplicate, persist.ErrInvalid} {
				if errors.Is(err, k) {
					return k.Error()
				}
			}
			if err != nil {
				return "other: " + err.Error()
			}
			return "ok"
		}
		if kind(e1) != kind(e2) {
			t.Fatalf("op %d %s: sqlite %v, memory %v", i, op, e1, e2)
		}
	}
	writes := map[bool]int{} // succeeded or not
	for i := range 1500 {
		var op string
		switch n := r.IntN(21); {
		case n < 2 || n == 20:
			op = "PutSession"
			rec := persist.Session{ClientID: client(), Version: byte(4 + r.IntN(2)), ExpiryInterval: uint32(r.IntN(120)), Created: t0, DisconnectedAt: at()}
			if r.IntN(2) == 0 {
				rec.Will = []byte("w")
			}
			same(i, op, got.PutSession(ctx, rec), want.PutSession(ctx, rec))
		case n < 3:
			op = "DeleteSession"
			c := client()
			same(i, op, got.DeleteSession(ctx, c), want.DeleteSession(ctx, c))
		case n < 5:
			op = "Subscribe"
			c := client()
			subs := []persist.Subscription{{Filter: topic(), QoS: byte(r.IntN(3)), SubscriptionID: uint32(r.IntN(3)), NoLocal: r.IntN(2) == 0}}
			same(i, op, got.Subscribe(ctx, c, subs), want.Subscribe(ctx, c, subs))
		case n < 6:
			op = "Unsubscribe"
			c, f := client(), []string{topic()}
			same(i, op, got.Unsubscribe(ctx, c, f), want.Unsubscribe(ctx, c, f))
		case n < 16:
			op = "Write"
			var b persist.Batch
			k := r.IntN(4)
			if r.IntN(10) == 0 { // past one INSERT statement's rows
				k = 30 + r.IntN(40)
			}
			for range k {
				b.Enqueue = append(b.Enqueue, persist.Message{ClientID: client(), Seq: uint64(r.IntN(1000)), Expiry: at(), Publish: []byte{0x32, byte(i)}})
			}
			for range r.IntN(4) {
				b.Transitions = append(b.Transitions, persist.Transition{ClientID: client(), Seq: uint64(r.IntN(1000)), State: persist.State(r.IntN(4)), PacketID: uint16(r.IntN(5))})
			}
			for range r.IntN(2) {
				b.AddInbound = append(b.AddInbound, persist.Inbound{ClientID: client(), PacketID: uint16(1 + r.IntN(4))})
			}
			for range r.IntN(2) {
				b.RemoveInbound = append(b.RemoveInbound, persist.Inbound{ClientID: client(), PacketID: uint16(1 + r.IntN(4))})
			}
			if r.IntN(4) == 0 {
				b.SetRetained = []persist.Retained{{Topic: topic(), Publish: []byte{0x31, byte(i)}, Stored: t0, Expiry: at()}}
			}
			if r.IntN(6) == 0 {
				b.ClearRetained = []string{topic()}
			}
			// A batch may break several rules: which one is named is the
			// adapter's choice, that it is refused is not.
			e1, e2 := got.Write(ctx, b), want.Write(ctx, b)
			if (e1 == nil) != (e2 == nil) {
				t.Fatalf("op %d Write: sqlite %v, memory %v", i, e1, e2)
			}
			writes[e1 == nil]++
		case n < 17:
			op = "ExpireSessions"
			now := t0.Add(time.Duration(r.IntN(100)) * time.Second)
			g, e1 := got.ExpireSessions(ctx, now)
			w, e2 := want.ExpireSessions(ctx, now)
			same(i, op, e1, e2)
			if len(g) != len(w) {
				t.Fatalf("op %d ExpireSessions: sqlite %d, memory %d", i, len(g), len(w))
			}
		case n < 18:
			op = "ExpireRetained"
			now := t0.Add(time.Duration(r.IntN(100)) * time.Second)
			g, e1 := got.ExpireRetained(ctx, now)
			w, e2 := want.ExpireRetained(ctx, now)
			same(i, op, e1, e2)
			if g != w {
				t.Fatalf("op %d ExpireRetained: sqlite %d, memory %d", i, g, w)
			}
		default:
			op = "SetRetained"
			rt := persist.Retained{Topic: topic(), Publish: []byte{0x31, byte(i)}, Stored: t0, Expiry: at()}
			same(i, op, got.SetRetained(ctx, rt), want.SetRetained(ctx, rt))
		}
		if i%25 == 0 || i == 1499 {
			if g, w := dump(t, got), dump(t, want); g != w {
				t.Fatalf("after op %d (%s):\nsqlite %s\nmemory %s", i, op, g, w)
			}
		}
	}
	t.Logf("writes: %d stored, %d refused", writes[true], writes[false])
	if writes[true] < 100 || writes[false] < 100 {
		t.Errorf("the mix tests too little of one side: %v", writes)
	}
}

// dump is everything a store holds, as text (times in UTC milliseconds,
// empty slices as nil).
func dump(t *testing.T, s persist.Store) string {
	t.Helper()
	ms := func(v time.Time) string {
		if v.IsZero() {
			return "-"
		}
		return fmt.Sprint(v.UnixMilli())
	}
	var out []string
	if err := s.Load(context.Background(), func(l persist.Loaded) error {
		ss := l.Session
		out = append(out, fmt.Sprintf("session %s v%d exp %d will %q created %s disc %s", ss.ClientID, ss.Version, ss.ExpiryInterval, ss.Will, ms(ss.Created), ms(ss.DisconnectedAt)))
		for _, sub := range l.Subscriptions {
			out = append(out, fmt.Sprintf("  sub %+v", sub))
		}
		for _, m := range l.Messages {
			out = append(out, fmt.Sprintf("  msg %d %s %d %s %x", m.Seq, m.State, m.PacketID, ms(m.Expiry), m.Publish))
		}
		out = append(out, fmt.Sprintf("  inbound %v", l.Inbound))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.LoadRetained(context.Background(), func(r persist.Retained) error {
		out = append(out, fmt.Sprintf("retained %s %x %s %s", r.Topic, r.Publish, ms(r.Stored), ms(r.Expiry)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(out)
}
