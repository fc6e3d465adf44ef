package retained

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Store holds the retained messages. It is safe for concurrent use: Match
// and Get take a read lock, the other methods the write lock.
//
// Invariants (under mu): count and bytes are the number and Limits size of
// the entries in the tree; heap holds exactly the entries with an expiry,
// each at its hidx.
type Store struct {
	mu      sync.RWMutex
	root    node
	lim     Limits
	count   int
	bytes   int64
	nodes   int // below the root, for tests and memory figures
	heap    expiryHeap
	refused atomic.Uint64 // messages Set did not store; no lock
}

// Limits bound a Store; zero means no bound.
type Limits struct {
	MaxMessages int   // retained messages
	MaxBytes    int64 // their topics, payloads and properties, as Bytes counts
}

// ErrLimit is what a LimitError is (errors.Is).
var ErrLimit = errors.New("retained message store full")

// LimitError refuses a message that would take the store past a limit.
type LimitError struct {
	Limit string // "max messages" or "max bytes"
	Max   int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: %s %d reached", ErrLimit, e.Limit, e.Max)
}

// Is makes errors.Is(err, ErrLimit) hold.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// New returns an empty store without limits.
func New() *Store { return NewLimited(Limits{}) }

// NewLimited returns an empty store bounded by l.
func NewLimited(l Limits) *Store { return &Store{lim: l} }

// Set is Retain without its error, for a store whose refusals the caller
// only counts: a message Retain refuses is not stored and counted in
// Refused.
func (s *Store) Set(m Message) (deleted bool) {
	deleted, err := s.Retain(m)
	if err != nil {
		s.refused.Add(1)
	}
	return deleted
}

// Retain makes m its topic's retained message, replacing the one before, or
// deletes the topic's retained message when m's payload is empty; deleted
// says whether there was one to delete. m is copied: the caller may reuse its
// buffers. A message with an invalid topic name or QoS, or one that would
// take the store past its limits (expired messages are dropped first to make
// room), is refused with an error and nothing changes; a refusal past a
// limit is a *LimitError.
func (s *Store) Retain(m Message) (deleted bool, err error) {
	if err := packet.ValidTopicName(m.Topic); err != nil {
		return false, fmt.Errorf("retained message: %w", err)
	}
	if m.QoS > 2 {
		return false, fmt.Errorf("retained message: QoS %d", m.QoS)
	}
	if len(m.Payload) == 0 {
		return s.Delete(m.Topic), nil
	}
	if m.Stored.IsZero() {
		m.Stored = time.Now()
	}
	e := newEntry(&m) // outside the lock: it copies the payload

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.room(e); err != nil {
		return false, err
	}
	n := s.insert(e.topic())
	if n.e != nil {
		s.forget(n.e)
	}
	setEntry(n, e)
	s.count++
	s.bytes += e.size()
	if _, ok := e.deadline(); ok {
		s.heap.push(e)
	}
	return false, nil
}

// room checks that e can replace its topic's message, if any, within the
// limits, dropping the messages expired at e's arrival first when it cannot.
func (s *Store) room(e *entry) error {
	if s.lim.MaxMessages <= 0 && s.lim.MaxBytes <= 0 {
		return nil
	}
	over := func() error {
		count, bytes := s.count+1, s.bytes+e.size()
		if n := s.find(e.topic()); n != nil && n.e != nil {
			count, bytes = count-1, bytes-n.e.size()
		}
		if s.lim.MaxMessages > 0 && count > s.lim.MaxMessages {
			return &LimitError{Limit: "max messages", Max: int64(s.lim.MaxMessages)}
		}
		if s.lim.MaxBytes > 0 && bytes > s.lim.MaxBytes {
			return &LimitError{Limit: "max bytes", Max: s.lim.MaxBytes}
		}
		return nil
	}
	err := over()
	if err != nil && s.expire(e.stored) > 0 {
		err = over()
	}
	return err
}

// forget takes e out of the counts and the heap; its node is the caller's.
func (s *Store) forget(e *entry) {
	s.count--
	s.bytes -= e.size()
	if e.hidx >= 0 {
		s.heap.remove(e)
	}
}

// Delete deletes topic's retained message; false when it had none.
func (s *Store) Delete(topic string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delete(topic)
}

func (s *Store) delete(topic string) bool {
	n := s.find(topic)
	if n == nil || n.e == nil {
		return false
	}
	s.forget(n.e)
	s.clear(n)
	return true
}

// Get returns topic's retained message, expired or not (Remaining tells).
// The Message is the caller's; its payload and properties are shared with
// the store and must not be modified.
func (s *Store) Get(topic string) (*Message, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.find(topic)
	if n == nil || n.e == nil {
		return nil, false
	}
	return n.e.message(), true
}

// Len is the number of retained messages, expired ones not yet dropped by
// Expire included.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.count
}

// Bytes is the size of the retained messages' topics, payloads and
// properties: what Limits.MaxBytes bounds, not the store's own overhead
// (bench/RESULTS.md measures that).
func (s *Store) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}

// Refused is the number of messages Set did not store.
func (s *Store) Refused() uint64 { return s.refused.Load() }

// Expire deletes the messages expired at now and returns how many. It costs
// the number deleted (times a heap operation), not a walk of the store.
func (s *Store) Expire(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expire(now.UnixNano())
}

func (s *Store) expire(now int64) int {
	k := 0
	for len(s.heap) > 0 {
		e := s.heap[0]
		if !e.expired(now) {
			break
		}
		s.delete(e.topic()) // takes it off the heap
		k++
	}
	return k
}
