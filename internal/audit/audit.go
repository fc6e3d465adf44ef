// Package audit owns the audit trail: one entry for every security-relevant
// attempt (registrations, secret reads, key changes), with its outcome and
// reason, and never a secret.
package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one audited attempt.
type Entry struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	AccountID string    `json:"accountId,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	Action    string    `json:"action"`
	Target    string    `json:"target,omitempty"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
	Source    string    `json:"source,omitempty"`
	// Count is how many attempts the entry stands for: 1, or more for an
	// aggregated entry (the same source, action, outcome and reason within
	// a minute; its target is "*" when they named several).
	Count int `json:"count"`
}

// Filter selects entries, newest first.
type Filter struct {
	AccountID string
	Action    string
	Target    string
	Outcome   string
	Before    int64 // entry ID to continue before (cursor)
	Limit     int
}

// Store persists entries.
type Store interface {
	AppendAudit(ctx context.Context, e Entry) error
	ListAudit(ctx context.Context, f Filter) ([]Entry, error)
}

// Log records entries to a store; a store failure is logged, not returned,
// so auditing never turns a good answer into an error.
type Log struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
}

// NewLog returns a Log.
func NewLog(s Store, log *slog.Logger, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{store: s, log: log, now: now}
}

// Record appends an entry, stamping its time.
func (l *Log) Record(ctx context.Context, e Entry) {
	if e.At.IsZero() {
		e.At = l.now().UTC()
	}
	if err := l.store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		l.log.Error("writing audit entry", "action", e.Action, "target", e.Target, "err", err)
	}
}

// MaxPage is the largest page of entries. List takes up to MaxPage+1 so
// that a caller can ask one entry past its page to learn whether another
// page follows; more is cut to that.
const MaxPage = 1000

// List returns entries matching f.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, MaxPage+1)
	return l.store.ListAudit(ctx, f)
}

// AggregateStore persists aggregated entries.
type AggregateStore interface {
	// AddAudit adds e.Count attempts to the entry of key, creating it
	// from e if there is none; a target differing from the stored one
	// becomes "*".
	AddAudit(ctx context.Context, key string, e Entry) error
}

// Aggregator records attempts that come in floods (refused logins) as one
// entry per account, actor, action, outcome, reason and source a minute,
// with a count. The first attempt of a minute is written at once; the
// ones after it are added up and written every FlushEvery, so a flood
// costs a write a second rather than one an attempt.
type Aggregator struct {
	store AggregateStore
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	pend    map[string]*aggregate
	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool
	closed  sync.Once
}

type aggregate struct {
	e         Entry
	minute    int64
	unwritten int
}

// FlushEvery is how often an Aggregator writes the counts it holds.
const FlushEvery = time.Second

// maxAggregates bounds the entries held for a minute; past it, entries
// are written one by one.
const maxAggregates = 10000

// NewAggregator returns an Aggregator; Start runs its flushes.
func NewAggregator(s AggregateStore, log *slog.Logger, now func() time.Time) *Aggregator {
	if now == nil {
		now = time.Now
	}
	return &Aggregator{store: s, log: log, now: now, pend: map[string]*aggregate{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// Record counts an attempt.
func (a *Aggregator) Record(ctx context.Context, e Entry) {
	if e.At.IsZero() {
		e.At = a.now().UTC()
	}
	e.Count = 1
	minute := e.At.Unix() / 60
	key := fmt.Sprintf("%d|%q|%q|%q|%q|%q|%q", minute, e.AccountID, e.Actor, e.Action, e.Outcome, e.Reason, e.Source)
	a.mu.Lock()
	g := a.pend[key]
	switch {
	case g == nil && len(a.pend) >= maxAggregates:
		a.mu.Unlock()
		a.write(ctx, key, e)
		return
	case g == nil:
		a.pend[key] = &aggregate{e: e, minute: minute}
		a.mu.Unlock()
		a.write(ctx, key, e)
		return
	}
	if g.e.Target != e.Target {
		g.e.Target = "*"
	}
	g.unwritten++
	a.mu.Unlock()
}

func (a *Aggregator) write(ctx context.Context, key string, e Entry) {
	if err := a.store.AddAudit(context.WithoutCancel(ctx), key, e); err != nil {
		a.log.Error("writing audit entry", "action", e.Action, "err", err)
	}
}

// Flush writes the counts held, and forgets the minutes that are over.
func (a *Aggregator) Flush(ctx context.Context) {
	minute := a.now().Unix() / 60
	type item struct {
		key string
		e   Entry
	}
	var out []item
	a.mu.Lock()
	for k, g := range a.pend {
		if g.unwritten > 0 {
			e := g.e
			e.Count = g.unwritten
			out = append(out, item{k, e})
			g.unwritten = 0
		}
		if g.minute < minute {
			delete(a.pend, k)
		}
	}
	a.mu.Unlock()
	for _, it := range out {
		a.write(ctx, it.key, it.e)
	}
}

// Start flushes every FlushEvery until Close.
func (a *Aggregator) Start() {
	a.started.Store(true)
	go func() {
		defer close(a.done)
		t := time.NewTicker(FlushEvery)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
				a.Flush(context.Background())
			}
		}
	}()
}

// Close stops the flushes (if started) and writes what is held.
func (a *Aggregator) Close() {
	a.closed.Do(func() {
		close(a.stop)
		if a.started.Load() {
			<-a.done
		}
		a.Flush(context.Background())
	})
}
