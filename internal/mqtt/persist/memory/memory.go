// Package memory is the in-memory adapter of the MQTT engine's store port
// (internal/mqtt/persist): sessions and retained messages live as long as
// the process. It is the engine's default when no durable store is
// configured and the reference the conformance suite is written against.
package memory

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
)

// Store implements persist.Store in memory. Every method holds mu for its
// whole run, so a Write is atomic to every other call; records are copied
// in and out, so callers may reuse their buffers.
type Store struct {
	mu       sync.Mutex
	sessions map[string]*session
	retained map[string]persist.Retained
}

// session is a stored session with what it holds.
type session struct {
	rec     persist.Session
	subs    map[string]persist.Subscription
	msgs    map[uint64]persist.Message
	inbound map[uint16]struct{}
}

var _ persist.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{sessions: map[string]*session{}, retained: map[string]persist.Retained{}}
}

func clone(b []byte) []byte { return bytes.Clone(b) }

// PutSession implements persist.Sessions.
func (s *Store) PutSession(ctx context.Context, rec persist.Session) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rec.Will = clone(rec.Will)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.sessions[rec.ClientID]; ok {
		ss.rec = rec
		return nil
	}
	s.sessions[rec.ClientID] = &session{rec: rec, subs: map[string]persist.Subscription{},
		msgs: map[uint64]persist.Message{}, inbound: map[uint16]struct{}{}}
	return nil
}

// DeleteSession implements persist.Sessions.
func (s *Store) DeleteSession(ctx context.Context, clientID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, clientID)
	return nil
}

// Subscribe implements persist.Sessions.
func (s *Store) Subscribe(ctx context.Context, clientID string, subs []persist.Subscription) error {
	if err := persist.ValidateSubscriptions(clientID, subs); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[clientID]
	if !ok {
		return fmt.Errorf("subscribing %d filters: %w", len(subs), persist.ErrNoSession)
	}
	for _, sub := range subs {
		sub.ClientID = clientID
		ss.subs[sub.Filter] = sub
	}
	return nil
}

// Unsubscribe implements persist.Sessions.
func (s *Store) Unsubscribe(ctx context.Context, clientID string, filters []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.sessions[clientID]; ok {
		for _, f := range filters {
			delete(ss.subs, f)
		}
	}
	return nil
}

// ExpireSessions implements persist.Sessions.
func (s *Store) ExpireSessions(ctx context.Context, now time.Time) ([]persist.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []persist.Session
	for id, ss := range s.sessions {
		if at := ss.rec.ExpiresAt(); !at.IsZero() && !at.After(now) {
			gone = append(gone, ss.rec) // the store's Will is not shared: it goes with the session
			delete(s.sessions, id)
		}
	}
	slices.SortFunc(gone, func(a, b persist.Session) int { return cmp.Compare(a.ClientID, b.ClientID) })
	return gone, nil
}

// Load implements persist.Sessions. It copies every session under the lock,
// then calls fn without it.
func (s *Store) Load(ctx context.Context, fn func(persist.Loaded) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	all := make([]persist.Loaded, 0, len(s.sessions))
	for _, ss := range s.sessions {
		l := persist.Loaded{Session: ss.rec}
		l.Session.Will = clone(ss.rec.Will)
		for _, f := range slices.Sorted(maps.Keys(ss.subs)) {
			l.Subscriptions = append(l.Subscriptions, ss.subs[f])
		}
		for _, seq := range slices.Sorted(maps.Keys(ss.msgs)) {
			m := ss.msgs[seq]
			m.Publish = clone(m.Publish)
			l.Messages = append(l.Messages, m)
		}
		l.Inbound = slices.Sorted(maps.Keys(ss.inbound))
		all = append(all, l)
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b persist.Loaded) int { return cmp.Compare(a.Session.ClientID, b.Session.ClientID) })
	for _, l := range all {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

// Write implements persist.Queues: every check runs before the first
// change, so a refused batch changes nothing.
func (s *Store) Write(ctx context.Context, b persist.Batch) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range b.Enqueue {
		ss, ok := s.sessions[m.ClientID]
		if !ok {
			return fmt.Errorf("enqueueing message %d: %w", m.Seq, persist.ErrNoSession)
		}
		if _, dup := ss.msgs[m.Seq]; dup {
			return fmt.Errorf("enqueueing message %d: %w", m.Seq, persist.ErrDuplicate)
		}
	}
	for _, in := range b.AddInbound {
		if _, ok := s.sessions[in.ClientID]; !ok {
			return fmt.Errorf("recording inbound packet id %d: %w", in.PacketID, persist.ErrNoSession)
		}
	}
	for _, m := range b.Enqueue {
		m.Publish = clone(m.Publish)
		s.sessions[m.ClientID].msgs[m.Seq] = m
	}
	for _, t := range b.Transitions {
		ss, ok := s.sessions[t.ClientID]
		if !ok {
			continue
		}
		m, ok := ss.msgs[t.Seq]
		if !ok {
			continue
		}
		if t.State == persist.Done {
			delete(ss.msgs, t.Seq)
			continue
		}
		m.State, m.PacketID = t.State, t.PacketID
		ss.msgs[t.Seq] = m
	}
	for _, in := range b.AddInbound {
		s.sessions[in.ClientID].inbound[in.PacketID] = struct{}{}
	}
	for _, in := range b.RemoveInbound {
		if ss, ok := s.sessions[in.ClientID]; ok {
			delete(ss.inbound, in.PacketID)
		}
	}
	for _, r := range b.SetRetained {
		r.Publish = clone(r.Publish)
		s.retained[r.Topic] = r
	}
	for _, topic := range b.ClearRetained {
		delete(s.retained, topic)
	}
	return nil
}

// SetRetained implements persist.RetainedStore.
func (s *Store) SetRetained(ctx context.Context, r persist.Retained) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.Publish = clone(r.Publish)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retained[r.Topic] = r
	return nil
}

// ClearRetained implements persist.RetainedStore.
func (s *Store) ClearRetained(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.retained, topic)
	return nil
}

// ExpireRetained implements persist.RetainedStore.
func (s *Store) ExpireRetained(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for t, r := range s.retained {
		if !r.Expiry.IsZero() && !r.Expiry.After(now) {
			delete(s.retained, t)
			n++
		}
	}
	return n, nil
}

// LoadRetained implements persist.RetainedStore.
func (s *Store) LoadRetained(ctx context.Context, fn func(persist.Retained) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	all := make([]persist.Retained, 0, len(s.retained))
	for _, t := range slices.Sorted(maps.Keys(s.retained)) {
		r := s.retained[t]
		r.Publish = clone(r.Publish)
		all = append(all, r)
	}
	s.mu.Unlock()
	for _, r := range all {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}
