package audit

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// memAggregates is an AggregateStore in memory.
type memAggregates struct {
	mu   sync.Mutex
	rows map[string]*Entry
	keys []string
}

func (m *memAggregates) AddAudit(_ context.Context, key string, e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.rows[key]; ok {
		r.Count += e.Count
		if r.Target != e.Target {
			r.Target = "*"
		}
		return nil
	}
	m.rows[key] = &e
	m.keys = append(m.keys, key)
	return nil
}

func TestAggregator(t *testing.T) {
	now := time.Unix(6000, 0)
	st := &memAggregates{rows: map[string]*Entry{}}
	a := NewAggregator(st, slog.New(slog.DiscardHandler), func() time.Time { return now })
	refused := func(src, reason, target string) Entry {
		return Entry{AccountID: "acc", Actor: "mqtt", Action: "mqtt.connect", Outcome: "refused", Reason: reason, Source: src, Target: target}
	}
	ctx := context.Background()
	a.Record(ctx, refused("10.0.0.1", "bad signature", "pk/d1"))
	if len(st.rows) != 1 {
		t.Fatalf("the first attempt is not written at once: %d rows", len(st.rows))
	}
	for i := 0; i < 99; i++ {
		a.Record(ctx, refused("10.0.0.1", "bad signature", "pk/d1"))
	}
	a.Record(ctx, refused("10.0.0.1", "bad signature", "pk/d2"))
	a.Record(ctx, refused("10.0.0.1", "throttled", "pk/d1"))
	a.Record(ctx, refused("10.0.0.2", "bad signature", "pk/d1"))
	a.Record(ctx, Entry{AccountID: "other", Actor: "mqtt", Action: "mqtt.connect", Outcome: "refused", Reason: "bad signature", Source: "10.0.0.1"})
	a.Flush(ctx)
	if len(st.rows) != 4 {
		t.Fatalf("%d rows, want one per account, source and reason (4)", len(st.rows))
	}
	first := st.rows[st.keys[0]]
	if first.Count != 101 || first.Target != "*" {
		t.Fatalf("aggregate = %+v, want count 101 and target *", first)
	}
	// The next minute starts new rows; Close writes what is held.
	now = now.Add(time.Minute)
	a.Record(ctx, refused("10.0.0.1", "bad signature", "pk/d1"))
	a.Record(ctx, refused("10.0.0.1", "bad signature", "pk/d1"))
	a.Close()
	if len(st.rows) != 5 || st.rows[st.keys[4]].Count != 2 {
		t.Fatalf("next minute: %d rows, last %+v; want 5 rows, the last counting 2", len(st.rows), st.rows[st.keys[len(st.keys)-1]])
	}
	if first.Count != 101 {
		t.Fatalf("the previous minute's row changed: %+v", first)
	}
}
