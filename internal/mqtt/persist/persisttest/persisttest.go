// Package persisttest is the conformance suite every adapter of the MQTT
// engine's store port (internal/mqtt/persist) passes: order kept per
// client, atomic batches, idempotent acks, state transitions, deletes that
// take everything of a client, retained messages set / cleared / expired,
// a reload after reopening that returns exactly what was written, and
// concurrent writers.
package persisttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
)

// Open returns a fresh, empty store and a reopen function that closes it
// and opens the same data again, as a restart does, returning the new
// store. An adapter whose data lives in the value (memory) returns the
// same store from reopen.
type Open func(t *testing.T) (s persist.Store, reopen func() persist.Store)

// Run runs the suite; open is called once per test.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s persist.Store, reopen func() persist.Store)
	}{
		{"sessions", testSessions},
		{"subscriptions", testSubscriptions},
		{"order kept per client", testOrder},
		{"batch all or nothing", testBatchAtomic},
		{"bad records refused, nothing changed", testInvalid},
		{"state transitions", testTransitions},
		{"acks are idempotent", testIdempotent},
		{"inbound QoS 2 ids", testInbound},
		{"delete takes everything of a client", testDeleteCascades},
		{"session expiry", testExpireSessions},
		{"retained set, replace, clear, expire", testRetained},
		{"a retained PUBLISH in one batch", testRetainedInBatch},
		{"caller buffers are copied", testCopies},
		{"reload after reopen", testReload},
		{"concurrent writers", testConcurrent},
		{"cancelled context", testCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reopen := open(t)
			tt.fn(t, s, reopen)
		})
	}
}

var (
	ctx = context.Background()
	// t0 is at millisecond precision, as adapters may keep times.
	t0 = time.Date(2026, 12, 6, 12, 0, 0, 123_000_000, time.UTC)
)

func session(id string) persist.Session {
	return persist.Session{ClientID: id, Version: 5, ExpiryInterval: 3600, Created: t0}
}

// publish is stand-in PUBLISH bytes naming client and seq; the store never
// looks inside.
func publish(client string, seq uint64) []byte {
	return fmt.Appendf(nil, "\x32publish %s %d", client, seq)
}

func msg(client string, seq uint64) persist.Message {
	return persist.Message{ClientID: client, Seq: seq, Publish: publish(client, seq)}
}

func put(t *testing.T, s persist.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.PutSession(ctx, session(id)); err != nil {
			t.Fatalf("PutSession(%s): %v", id, err)
		}
	}
}

func write(t *testing.T, s persist.Store, b persist.Batch) {
	t.Helper()
	if err := s.Write(ctx, b); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// load reads every session, by client id.
func load(t *testing.T, s persist.Store) map[string]persist.Loaded {
	t.Helper()
	out := map[string]persist.Loaded{}
	var last string
	err := s.Load(ctx, func(l persist.Loaded) error {
		if l.Session.ClientID <= last && len(out) > 0 {
			return fmt.Errorf("session %q after %q: not by client id", l.Session.ClientID, last)
		}
		last = l.Session.ClientID
		out[l.Session.ClientID] = normal(l)
		return nil
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return out
}

func loadRetained(t *testing.T, s persist.Store) []persist.Retained {
	t.Helper()
	var out []persist.Retained
	if err := s.LoadRetained(ctx, func(r persist.Retained) error {
		r.Stored, r.Expiry = ms(r.Stored), ms(r.Expiry)
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("LoadRetained: %v", err)
	}
	return out
}

// ms is t as an adapter keeping milliseconds returns it (zero stays zero).
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// normal puts a Loaded in the form the suite compares: times in UTC
// milliseconds, empty byte and record slices nil.
func normal(l persist.Loaded) persist.Loaded {
	l.Session.Created, l.Session.DisconnectedAt = ms(l.Session.Created), ms(l.Session.DisconnectedAt)
	if len(l.Session.Will) == 0 {
		l.Session.Will = nil
	}
	if len(l.Subscriptions) == 0 {
		l.Subscriptions = nil
	}
	if len(l.Messages) == 0 {
		l.Messages = nil
	}
	for i := range l.Messages {
		l.Messages[i].Expiry = ms(l.Messages[i].Expiry)
	}
	if len(l.Inbound) == 0 {
		l.Inbound = nil
	}
	return l
}

func seqs(ms []persist.Message) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func testSessions(t *testing.T, s persist.Store, _ func() persist.Store) {
	will := []byte("\x30will bytes")
	a := persist.Session{ClientID: "a", Version: 4, ExpiryInterval: persist.NeverExpires, Will: will, Created: t0}
	if err := s.PutSession(ctx, a); err != nil {
		t.Fatal(err)
	}
	put(t, s, "b")
	if err := s.Subscribe(ctx, "a", []persist.Subscription{{Filter: "x/#", QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	got := load(t, s)
	if len(got) != 2 || !reflect.DeepEqual(got["a"].Session, a) || !reflect.DeepEqual(got["b"].Session, session("b")) {
		t.Fatalf("loaded %+v", got)
	}
	// Replacing the record (a disconnect) keeps subscriptions.
	a.DisconnectedAt, a.Will, a.ExpiryInterval = t0.Add(time.Minute), nil, 60
	if err := s.PutSession(ctx, a); err != nil {
		t.Fatal(err)
	}
	got = load(t, s)
	if !reflect.DeepEqual(got["a"].Session, a) || len(got["a"].Subscriptions) != 1 {
		t.Fatalf("after replacing: %+v", got["a"])
	}
	if want := t0.Add(2 * time.Minute); !a.ExpiresAt().Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", a.ExpiresAt(), want)
	}
}

func testSubscriptions(t *testing.T, s persist.Store, _ func() persist.Store) {
	if err := s.Subscribe(ctx, "nobody", []persist.Subscription{{Filter: "a"}}); !errors.Is(err, persist.ErrNoSession) {
		t.Fatalf("subscribing without a session: %v, want ErrNoSession", err)
	}
	put(t, s, "c")
	subs := []persist.Subscription{
		{Filter: "$share/g/sensors/+/temp", QoS: 1, SubscriptionID: 7},
		{ClientID: "c", Filter: "a/b", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubscriptionID: 268435455},
		{Filter: "z/#"},
	}
	if err := s.Subscribe(ctx, "c", subs); err != nil {
		t.Fatal(err)
	}
	// Replacing a filter's options, adding one, removing two (one unknown).
	if err := s.Subscribe(ctx, "c", []persist.Subscription{{Filter: "a/b", QoS: 0, RetainHandling: 1}, {Filter: "m", QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsubscribe(ctx, "c", []string{"z/#", "never/subscribed"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsubscribe(ctx, "nobody", []string{"a"}); err != nil {
		t.Fatalf("unsubscribing without a session: %v", err)
	}
	want := []persist.Subscription{
		{ClientID: "c", Filter: "$share/g/sensors/+/temp", QoS: 1, SubscriptionID: 7},
		{ClientID: "c", Filter: "a/b", QoS: 0, RetainHandling: 1},
		{ClientID: "c", Filter: "m", QoS: 1},
	}
	if got := load(t, s)["c"].Subscriptions; !reflect.DeepEqual(got, want) {
		t.Fatalf("subscriptions\n got %+v\nwant %+v", got, want)
	}
}

func testOrder(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a", "b", "c")
	want := map[string][]persist.Message{}
	// Batches of 1..7 messages, clients interleaved within each.
	var seq uint64 = 1 << 40 // far from 0: adapters must not renumber
	for size := 1; size <= 7; size++ {
		var b persist.Batch
		for i := 0; i < size; i++ {
			seq++
			for _, c := range []string{"c", "a", "b"}[:1+i%3] {
				m := msg(c, seq)
				m.Expiry = t0.Add(time.Duration(seq%5) * time.Hour)
				if seq%5 == 0 {
					m.Expiry = time.Time{}
				}
				b.Enqueue = append(b.Enqueue, m)
				want[c] = append(want[c], m)
			}
		}
		write(t, s, b)
	}
	got := load(t, s)
	for _, c := range []string{"a", "b", "c"} {
		if !reflect.DeepEqual(got[c].Messages, want[c]) {
			t.Errorf("client %s: seqs %v, want %v", c, seqs(got[c].Messages), seqs(want[c]))
		}
	}
}

func testBatchAtomic(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a", "b")
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("a", 1)}, AddInbound: []persist.Inbound{{ClientID: "a", PacketID: 9}}})
	before := load(t, s)
	bad := []struct {
		name string
		b    persist.Batch
		want error
	}{
		{"a client without a session", persist.Batch{
			Enqueue:     []persist.Message{msg("a", 2), msg("b", 2), msg("gone", 2)},
			Transitions: []persist.Transition{{ClientID: "a", Seq: 1, State: persist.Done}},
		}, persist.ErrNoSession},
		{"a sequence number already stored", persist.Batch{
			Enqueue:       []persist.Message{msg("b", 5), msg("a", 1)},
			RemoveInbound: []persist.Inbound{{ClientID: "a", PacketID: 9}},
		}, persist.ErrDuplicate},
		{"a sequence number twice in the batch", persist.Batch{
			Enqueue: []persist.Message{msg("b", 6), msg("b", 6)},
		}, persist.ErrDuplicate},
		{"copies only, the last without a session", persist.Batch{
			Enqueue: []persist.Message{msg("a", 2), msg("b", 2), msg("gone", 2)},
		}, persist.ErrNoSession},
		{"copies only, the last already stored", persist.Batch{
			Enqueue: []persist.Message{msg("b", 2), msg("a", 1)},
		}, persist.ErrDuplicate},
		{"a large fan-out whose last copy has no session", persist.Batch{
			Enqueue: append(manyMsgs("b", 100, 99), msg("gone", 1)),
		}, persist.ErrNoSession},
		{"an inbound id of a client without a session", persist.Batch{
			Enqueue:    []persist.Message{msg("b", 7)},
			AddInbound: []persist.Inbound{{ClientID: "gone", PacketID: 1}},
		}, persist.ErrNoSession},
	}
	for _, tt := range bad {
		if err := s.Write(ctx, tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if got := load(t, s); !reflect.DeepEqual(got, before) {
			t.Fatalf("%s: the refused batch changed the store:\n got %+v\nwant %+v", tt.name, got, before)
		}
	}
	// The same messages in a good batch all land.
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("a", 2), msg("b", 2)}})
	got := load(t, s)
	if len(got["a"].Messages) != 2 || len(got["b"].Messages) != 1 {
		t.Fatalf("after a good batch: %+v", got)
	}
	// A large one too, in order.
	many := manyMsgs("b", 100, 99)
	write(t, s, persist.Batch{Enqueue: many})
	if got := load(t, s)["b"].Messages; !reflect.DeepEqual(got[1:], many) {
		t.Fatalf("large batch: seqs %v", seqs(got))
	}
}

// manyMsgs is n messages for client from seq first on.
func manyMsgs(client string, first uint64, n int) []persist.Message {
	out := make([]persist.Message, n)
	for i := range out {
		out[i] = msg(client, first+uint64(i))
	}
	return out
}

func testInvalid(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a")
	before := load(t, s)
	noBytes := msg("a", 3)
	noBytes.Publish = nil
	done := msg("a", 4)
	done.State = persist.Done
	huge := msg("a", 1<<63)
	for i, b := range []persist.Batch{
		{Enqueue: []persist.Message{msg("a", 1), msg("", 2)}},
		{Enqueue: []persist.Message{msg("a", 1), noBytes}},
		{Enqueue: []persist.Message{done}},
		{Enqueue: []persist.Message{huge}},
		{Enqueue: []persist.Message{msg("a", 1)}, Transitions: []persist.Transition{{ClientID: "a", Seq: 1, State: 9}}},
		{Enqueue: []persist.Message{msg("a", 1)}, AddInbound: []persist.Inbound{{ClientID: "a", PacketID: 0}}},
	} {
		if err := s.Write(ctx, b); !errors.Is(err, persist.ErrInvalid) {
			t.Errorf("batch %d: %v, want ErrInvalid", i, err)
		}
	}
	for i, rec := range []persist.Session{{Version: 5}, {ClientID: "x", Version: 3}} {
		if err := s.PutSession(ctx, rec); !errors.Is(err, persist.ErrInvalid) {
			t.Errorf("session %d: %v, want ErrInvalid", i, err)
		}
	}
	for i, subs := range [][]persist.Subscription{
		{{Filter: "ok"}, {Filter: ""}},
		{{Filter: "ok"}, {Filter: "q", QoS: 3}},
		{{Filter: "ok"}, {Filter: "r", RetainHandling: 3}},
		{{Filter: "ok"}, {ClientID: "other", Filter: "o"}},
	} {
		if err := s.Subscribe(ctx, "a", subs); !errors.Is(err, persist.ErrInvalid) {
			t.Errorf("subscriptions %d: %v, want ErrInvalid", i, err)
		}
	}
	for i, r := range []persist.Retained{{Publish: []byte("p")}, {Topic: "t"}} {
		if err := s.SetRetained(ctx, r); !errors.Is(err, persist.ErrInvalid) {
			t.Errorf("retained %d: %v, want ErrInvalid", i, err)
		}
	}
	if got := load(t, s); !reflect.DeepEqual(got, before) {
		t.Fatalf("refused records changed the store:\n got %+v\nwant %+v", got, before)
	}
	if got := loadRetained(t, s); len(got) != 0 {
		t.Fatalf("refused retained messages stored: %+v", got)
	}
}

func testTransitions(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a")
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("a", 1), msg("a", 2), msg("a", 3)}})
	steps := []struct {
		tr   []persist.Transition
		want map[uint64][2]int // seq -> state, packet id
	}{
		{[]persist.Transition{{ClientID: "a", Seq: 1, State: persist.Sent, PacketID: 11}, {ClientID: "a", Seq: 2, State: persist.Sent, PacketID: 12}},
			map[uint64][2]int{1: {int(persist.Sent), 11}, 2: {int(persist.Sent), 12}, 3: {int(persist.Queued), 0}}},
		{[]persist.Transition{{ClientID: "a", Seq: 1, State: persist.Received, PacketID: 11}, {ClientID: "a", Seq: 2, State: persist.Done}},
			map[uint64][2]int{1: {int(persist.Received), 11}, 3: {int(persist.Queued), 0}}},
		// A session taken over by a client with a smaller Receive Maximum
		// may put a sent message back in the queue.
		{[]persist.Transition{{ClientID: "a", Seq: 3, State: persist.Sent, PacketID: 13}, {ClientID: "a", Seq: 3, State: persist.Queued}},
			map[uint64][2]int{1: {int(persist.Received), 11}, 3: {int(persist.Queued), 0}}},
		{[]persist.Transition{{ClientID: "a", Seq: 1, State: persist.Done}, {ClientID: "a", Seq: 3, State: persist.Sent, PacketID: 65535}},
			map[uint64][2]int{3: {int(persist.Sent), 65535}}},
	}
	for i, st := range steps {
		write(t, s, persist.Batch{Transitions: st.tr})
		got := map[uint64][2]int{}
		for _, m := range load(t, s)["a"].Messages {
			got[m.Seq] = [2]int{int(m.State), int(m.PacketID)}
			if !bytes.Equal(m.Publish, publish("a", m.Seq)) {
				t.Errorf("step %d: message %d's bytes changed", i, m.Seq)
			}
		}
		if !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d: %v, want %v", i, got, st.want)
		}
	}
}

func testIdempotent(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a")
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("a", 1), msg("a", 2)}})
	ack := persist.Batch{Transitions: []persist.Transition{{ClientID: "a", Seq: 1, State: persist.Done}}}
	write(t, s, ack)
	write(t, s, ack) // a resent PUBACK
	// Acks of messages, and clients, never stored: nothing happens, and a
	// state change does not create a message.
	write(t, s, persist.Batch{Transitions: []persist.Transition{
		{ClientID: "a", Seq: 1, State: persist.Sent, PacketID: 3},
		{ClientID: "a", Seq: 99, State: persist.Done},
		{ClientID: "gone", Seq: 1, State: persist.Done},
	}})
	got := load(t, s)["a"].Messages
	if len(got) != 1 || got[0].Seq != 2 || got[0].State != persist.Queued {
		t.Fatalf("messages %+v, want only seq 2 queued", got)
	}
	if err := s.DeleteSession(ctx, "never"); err != nil {
		t.Fatalf("deleting a session never stored: %v", err)
	}
	if err := s.ClearRetained(ctx, "never"); err != nil {
		t.Fatalf("clearing a topic never retained: %v", err)
	}
}

func testInbound(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "pub", "sub")
	// A QoS 2 PUBLISH: the copy for the subscriber and the publisher's
	// packet id in one batch.
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("sub", 1)}, AddInbound: []persist.Inbound{{ClientID: "pub", PacketID: 300}}})
	write(t, s, persist.Batch{AddInbound: []persist.Inbound{{ClientID: "pub", PacketID: 300}, {ClientID: "pub", PacketID: 2}, {ClientID: "sub", PacketID: 2}}})
	got := load(t, s)
	if !reflect.DeepEqual(got["pub"].Inbound, []uint16{2, 300}) || !reflect.DeepEqual(got["sub"].Inbound, []uint16{2}) {
		t.Fatalf("inbound pub %v sub %v", got["pub"].Inbound, got["sub"].Inbound)
	}
	write(t, s, persist.Batch{RemoveInbound: []persist.Inbound{{ClientID: "pub", PacketID: 300}, {ClientID: "pub", PacketID: 300}, {ClientID: "pub", PacketID: 4}, {ClientID: "gone", PacketID: 1}}})
	got = load(t, s)
	if !reflect.DeepEqual(got["pub"].Inbound, []uint16{2}) || !reflect.DeepEqual(got["sub"].Inbound, []uint16{2}) {
		t.Fatalf("after PUBREL: inbound pub %v sub %v", got["pub"].Inbound, got["sub"].Inbound)
	}
}

// fill gives client id a subscription, two messages and an inbound id.
func fill(t *testing.T, s persist.Store, id string, seq uint64) {
	t.Helper()
	if err := s.Subscribe(ctx, id, []persist.Subscription{{Filter: "t/" + id, QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg(id, seq), msg(id, seq+1)}, AddInbound: []persist.Inbound{{ClientID: id, PacketID: 5}}})
}

func testDeleteCascades(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a", "b")
	fill(t, s, "a", 1)
	fill(t, s, "b", 1)
	if err := s.DeleteSession(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	got := load(t, s)
	if _, ok := got["a"]; ok || len(got["b"].Messages) != 2 || len(got["b"].Subscriptions) != 1 || len(got["b"].Inbound) != 1 {
		t.Fatalf("after deleting a: %+v", got)
	}
	// A new session under the same client id starts empty: nothing of
	// the old one comes back.
	put(t, s, "a")
	if got := load(t, s)["a"]; !reflect.DeepEqual(got, persist.Loaded{Session: session("a")}) {
		t.Fatalf("new session a holds %+v", got)
	}
	// And its queue may reuse sequence numbers.
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("a", 1)}})
}

func testExpireSessions(t *testing.T, s persist.Store, _ func() persist.Store) {
	minute := persist.Session{ClientID: "minute", Version: 5, ExpiryInterval: 60, Will: []byte("\x30last words"), Created: t0, DisconnectedAt: t0}
	hour := persist.Session{ClientID: "hour", Version: 4, ExpiryInterval: 3600, Created: t0, DisconnectedAt: t0}
	for _, rec := range []persist.Session{
		{ClientID: "connected", Version: 5, ExpiryInterval: 1, Created: t0},
		{ClientID: "never", Version: 5, ExpiryInterval: persist.NeverExpires, Created: t0, DisconnectedAt: t0},
		minute, hour,
	} {
		if err := s.PutSession(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, s, "minute", 1)
	steps := []struct {
		now  time.Time
		want []persist.Session
	}{
		{t0.Add(59 * time.Second), nil},
		{t0.Add(60 * time.Second), []persist.Session{minute}},
		{t0.Add(60 * time.Second), nil},
		{t0.Add(100 * 365 * 24 * time.Hour), []persist.Session{hour}},
	}
	for i, st := range steps {
		got, err := s.ExpireSessions(ctx, st.now)
		if err != nil {
			t.Fatal(err)
		}
		for j := range got {
			got[j] = normal(persist.Loaded{Session: got[j]}).Session
		}
		if len(got) != 0 || len(st.want) != 0 {
			if !reflect.DeepEqual(got, st.want) {
				t.Fatalf("step %d: expired %+v, want %+v", i, got, st.want)
			}
		}
	}
	got := load(t, s)
	if len(got) != 2 || got["connected"].Session.ClientID == "" || got["never"].Session.ClientID == "" {
		t.Fatalf("left %v, want connected and never", got)
	}
	// The expired session's messages went with it.
	put(t, s, "minute")
	if m := load(t, s)["minute"].Messages; len(m) != 0 {
		t.Fatalf("expired session's messages came back: %+v", m)
	}
}

func testRetained(t *testing.T, s persist.Store, _ func() persist.Store) {
	rs := []persist.Retained{
		{Topic: "a/b", Publish: []byte("\x31one"), Stored: t0},
		{Topic: "a/c", Publish: []byte("\x31two"), Stored: t0, Expiry: t0.Add(time.Minute)},
		{Topic: "$SYS/x", Publish: []byte("\x31three"), Stored: t0, Expiry: t0.Add(time.Hour)},
	}
	for _, r := range rs {
		if err := s.SetRetained(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// Replace one.
	rs[0] = persist.Retained{Topic: "a/b", Publish: []byte("\x31one again"), Stored: t0.Add(time.Second)}
	if err := s.SetRetained(ctx, rs[0]); err != nil {
		t.Fatal(err)
	}
	if got, want := loadRetained(t, s), []persist.Retained{rs[2], rs[0], rs[1]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("retained\n got %+v\nwant %+v", got, want)
	}
	n, err := s.ExpireRetained(ctx, t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("ExpireRetained = %d, %v; want 1", n, err)
	}
	if err := s.ClearRetained(ctx, "$SYS/x"); err != nil {
		t.Fatal(err)
	}
	if got, want := loadRetained(t, s), []persist.Retained{rs[0]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after expiry and clear\n got %+v\nwant %+v", got, want)
	}
	if n, err := s.ExpireRetained(ctx, t0.Add(1000*time.Hour)); err != nil || n != 0 {
		t.Fatalf("ExpireRetained of messages without expiry = %d, %v", n, err)
	}
}

func testRetainedInBatch(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "sub")
	old := persist.Retained{Topic: "old", Publish: []byte("\x31old"), Stored: t0}
	if err := s.SetRetained(ctx, old); err != nil {
		t.Fatal(err)
	}
	r := persist.Retained{Topic: "t", Publish: []byte("\x31retained"), Stored: t0, Expiry: t0.Add(time.Hour)}
	// Refused with its copy to a client without a session: neither lands.
	err := s.Write(ctx, persist.Batch{Enqueue: []persist.Message{msg("gone", 1)}, SetRetained: []persist.Retained{r}, ClearRetained: []string{"old"}})
	if !errors.Is(err, persist.ErrNoSession) {
		t.Fatalf("Write: %v, want ErrNoSession", err)
	}
	if got := loadRetained(t, s); !reflect.DeepEqual(got, []persist.Retained{old}) {
		t.Fatalf("a refused batch changed retained messages: %+v", got)
	}
	if err := s.Write(ctx, persist.Batch{SetRetained: []persist.Retained{{Topic: ""}}}); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("retained without topic in a batch: %v, want ErrInvalid", err)
	}
	if err := s.Write(ctx, persist.Batch{ClearRetained: []string{""}}); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("clearing an empty topic in a batch: %v, want ErrInvalid", err)
	}
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("sub", 1)}, SetRetained: []persist.Retained{r}, ClearRetained: []string{"old", "never"}})
	if got := loadRetained(t, s); !reflect.DeepEqual(got, []persist.Retained{r}) {
		t.Fatalf("retained after the batch: %+v", got)
	}
	if m := load(t, s)["sub"].Messages; len(m) != 1 {
		t.Fatalf("the batch's copy: %+v", m)
	}
	// Set then cleared in one batch: cleared.
	write(t, s, persist.Batch{SetRetained: []persist.Retained{{Topic: "x", Publish: []byte("\x31x"), Stored: t0}}, ClearRetained: []string{"x"}})
	if got := loadRetained(t, s); len(got) != 1 {
		t.Fatalf("set and cleared in one batch: %+v", got)
	}
}

func testCopies(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a")
	buf := publish("a", 1)
	write(t, s, persist.Batch{Enqueue: []persist.Message{{ClientID: "a", Seq: 1, Publish: buf}}})
	rbuf := []byte("\x31retained")
	if err := s.SetRetained(ctx, persist.Retained{Topic: "t", Publish: rbuf, Stored: t0}); err != nil {
		t.Fatal(err)
	}
	will := []byte("will")
	if err := s.PutSession(ctx, persist.Session{ClientID: "w", Version: 5, Will: will, Created: t0}); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{buf, rbuf, will} {
		for i := range b {
			b[i] = 'X'
		}
	}
	got := load(t, s)
	if !bytes.Equal(got["a"].Messages[0].Publish, publish("a", 1)) || !bytes.Equal(got["w"].Session.Will, []byte("will")) {
		t.Fatalf("the store kept the caller's buffer: %q, %q", got["a"].Messages[0].Publish, got["w"].Session.Will)
	}
	if r := loadRetained(t, s); !bytes.Equal(r[0].Publish, []byte("\x31retained")) {
		t.Fatalf("the store kept the caller's retained buffer: %q", r[0].Publish)
	}
	// And what Load hands out is the caller's to change.
	got["a"].Messages[0].Publish[0] = 'Y'
	if again := load(t, s); !bytes.Equal(again["a"].Messages[0].Publish, publish("a", 1)) {
		t.Fatalf("Load handed out the store's own buffer")
	}
}

func testReload(t *testing.T, s persist.Store, reopen func() persist.Store) {
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 64<<10) // 256 KiB, zeros included
	want := map[string]persist.Loaded{}
	for i, id := range []string{"dev-1", "dev-2", "ünïcode/客户", "last"} {
		rec := persist.Session{ClientID: id, Version: byte(4 + i%2), ExpiryInterval: uint32(60 * i), Created: t0.Add(time.Duration(i) * time.Millisecond)}
		if i%2 == 1 {
			rec.Will = []byte("\x30will of " + id)
			rec.DisconnectedAt = t0.Add(time.Hour)
		}
		if i == 3 {
			rec.ExpiryInterval = persist.NeverExpires
		}
		if err := s.PutSession(ctx, rec); err != nil {
			t.Fatal(err)
		}
		l := persist.Loaded{Session: rec}
		subs := []persist.Subscription{
			{ClientID: id, Filter: "$share/grp/" + id + "/+", QoS: 2, SubscriptionID: uint32(i + 1)},
			{ClientID: id, Filter: id + "/#", QoS: byte(i % 3), NoLocal: i%2 == 0, RetainAsPublished: true, RetainHandling: byte(i % 3)},
		}
		if err := s.Subscribe(ctx, id, subs); err != nil {
			t.Fatal(err)
		}
		l.Subscriptions = subs
		var b persist.Batch
		for seq := uint64(1); seq <= uint64(3+i); seq++ {
			m := msg(id, seq)
			if seq == 2 {
				m.Publish = big
				m.Expiry = t0.Add(time.Hour)
			}
			b.Enqueue = append(b.Enqueue, m)
		}
		b.AddInbound = []persist.Inbound{{ClientID: id, PacketID: 65535}, {ClientID: id, PacketID: 1}}
		write(t, s, b)
		// The first is in flight, the second awaits PUBCOMP.
		write(t, s, persist.Batch{Transitions: []persist.Transition{
			{ClientID: id, Seq: 1, State: persist.Sent, PacketID: 1},
			{ClientID: id, Seq: 2, State: persist.Received, PacketID: 2},
		}})
		b.Enqueue[0].State, b.Enqueue[0].PacketID = persist.Sent, 1
		b.Enqueue[1].State, b.Enqueue[1].PacketID = persist.Received, 2
		l.Messages = b.Enqueue
		l.Inbound = []uint16{1, 65535}
		want[id] = normal(l)
	}
	retained := []persist.Retained{
		{Topic: "a", Publish: big, Stored: t0, Expiry: t0.Add(24 * time.Hour)},
		{Topic: "b/c", Publish: []byte("\x31x"), Stored: t0},
	}
	for _, r := range retained {
		if err := s.SetRetained(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	s = reopen()
	got := load(t, s)
	if len(got) != len(want) {
		t.Fatalf("reloaded %d sessions, want %d", len(got), len(want))
	}
	for id, w := range want {
		if !reflect.DeepEqual(got[id], w) {
			t.Errorf("session %q reloaded\n got %+v\nwant %+v", id, got[id].Session, w.Session)
		}
	}
	if got := loadRetained(t, s); !reflect.DeepEqual(got, retained) {
		t.Errorf("retained reloaded differ (%d, want %d)", len(got), len(retained))
	}
	// The reopened store goes on from where it was.
	write(t, s, persist.Batch{Enqueue: []persist.Message{msg("last", 100)}, Transitions: []persist.Transition{{ClientID: "last", Seq: 1, State: persist.Done}}})
	if m := load(t, s)["last"].Messages; len(m) != 6 || m[0].Seq != 2 || m[5].Seq != 100 {
		t.Fatalf("after reopening and writing: seqs %v", seqs(m))
	}
}

func testConcurrent(t *testing.T, s persist.Store, _ func() persist.Store) {
	const writers, each = 16, 40
	put(t, s, "shared")
	for g := range writers {
		put(t, s, fmt.Sprintf("own-%02d", g))
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Go(func() {
			own := fmt.Sprintf("own-%02d", g)
			for i := range uint64(each) {
				// One message to two subscribers, and the ack of the
				// previous one's copy to the writer's own client.
				b := persist.Batch{Enqueue: []persist.Message{msg(own, i), msg("shared", uint64(g)<<32|i)}}
				if i > 0 && i%2 == 0 {
					b.Transitions = []persist.Transition{{ClientID: own, Seq: i - 1, State: persist.Done}}
				}
				if err := s.Write(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := load(t, s)
	if n := len(got["shared"].Messages); n != writers*each {
		t.Fatalf("shared queue holds %d, want %d", n, writers*each)
	}
	for i, m := range got["shared"].Messages {
		if i > 0 && m.Seq <= got["shared"].Messages[i-1].Seq {
			t.Fatalf("shared queue out of order at %d", i)
		}
	}
	for g := range writers {
		own := got[fmt.Sprintf("own-%02d", g)].Messages
		var want []uint64
		for i := uint64(0); i < each; i++ {
			if i%2 == 0 || i == each-1 {
				want = append(want, i)
			}
		}
		if !reflect.DeepEqual(seqs(own), want) {
			t.Fatalf("own-%02d: seqs %v, want %v", g, seqs(own), want)
		}
	}
}

func testCancelled(t *testing.T, s persist.Store, _ func() persist.Store) {
	put(t, s, "a")
	c, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Write(c, persist.Batch{Enqueue: []persist.Message{msg("a", 1)}}); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	if err := s.PutSession(c, session("b")); err == nil {
		t.Fatal("PutSession with a cancelled context succeeded")
	}
	got := load(t, s)
	if len(got) != 1 || len(got["a"].Messages) != 0 {
		t.Fatalf("cancelled writes changed the store: %+v", got)
	}
}
