// Package audit owns the audit trail: one entry for every security-relevant
// attempt (registrations, secret reads, key changes), with its outcome and
// reason, and never a secret.
package audit

import (
	"context"
	"log/slog"
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
