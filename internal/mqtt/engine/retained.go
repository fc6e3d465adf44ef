package engine

import (
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// RetainedStore keeps the last retained message of each topic. Safe for
// concurrent use.
type RetainedStore interface {
	// Set stores m as its topic's retained message, or deletes the topic's
	// one when m's payload is empty.
	Set(m *Message, now time.Time)
	// Match calls fn with every unexpired retained message whose topic
	// matches the (unshared, valid) filter, until fn returns false.
	Match(filter string, now time.Time, fn func(*Message) bool)
}

// memRetained is the in-memory RetainedStore used until
// internal/mqtt/retained lands: a map scanned on every Match.
type memRetained struct {
	mu sync.RWMutex
	m  map[string]*Message // by topic
}

func newMemRetained() *memRetained { return &memRetained{m: map[string]*Message{}} }

func (r *memRetained) Set(m *Message, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m.Payload) == 0 {
		delete(r.m, m.Topic)
		return
	}
	r.m[m.Topic] = m
}

func (r *memRetained) Match(filter string, now time.Time, fn func(*Message) bool) {
	r.mu.RLock()
	var found []*Message
	for t, m := range r.m {
		if packet.Match(filter, t) {
			found = append(found, m)
		}
	}
	r.mu.RUnlock()
	for _, m := range found {
		if _, _, ok := m.remaining(now); !ok {
			continue
		}
		if !fn(m) {
			return
		}
	}
}
