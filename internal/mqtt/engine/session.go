package engine

import (
	"math"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// neverExpires is the session expiry interval of a session that outlives
// every disconnection (MQTT 5 3.1.2.11.2).
const neverExpires = math.MaxUint32

// delivery is one message on its way to one session, with the options of the
// subscription that matched.
type delivery struct {
	msg    *Message
	qos    byte
	retain bool
	subIDs []uint32
	// seq is the message's number in a stored session's queue (0: not
	// stored); msg.batch stores it, and its transitions wait for that.
	seq uint64
}

// outbound is a QoS 1 or 2 message written to the client and not yet fully
// acknowledged.
type outbound struct {
	id  uint16
	d   delivery
	rel bool // PUBREC received and PUBREL sent: awaiting PUBCOMP
	// unsent: kept from an earlier connection and not yet resent on this
	// one, whose Receive Maximum the resends filled.
	unsent bool
}

// session is the state of one client id (MQTT 5 4.1): its subscriptions, its
// queue of messages not yet written, its outbound in-flight window in send
// order, the QoS 2 packet ids it has received and not seen released, and,
// while online, its connection.
//
// Invariants, under mu: conn is nil or the one connection attached (conn.sess
// == s); queue[qhead:] are in delivery order and queueBytes is the sum of
// their sizes; every id in inflight is unique and nonzero; an ended session
// is out of Server.sessions and is never attached again.
type session struct {
	id string

	mu     sync.Mutex
	conn   *conn
	client *Client // the last connection's client
	expiry uint32  // seconds after disconnection; 0: ends with it
	nextID uint16
	unsent uint16 // in-flight entries marked unsent
	ended  bool
	// stored: with Options.Store, the session's record is in the store (see
	// writes). The small fields sit together: a session lives as long as
	// its client's connection and more, and padding would cost each one
	// a size class (288 B rather than 240 B).
	stored     bool
	subs       []subs.Subscription // a few per session: a slice costs less than a map
	queue      []delivery
	qhead      int
	queueBytes int
	inflight   []outbound
	inQoS2     map[uint16]struct{}
	expiryT    *time.Timer
	will       *pendingWill // a disconnected connection's will waiting for its delay
	willT      *time.Timer
	// timerGen changes whenever the timers are stopped: a timer's function
	// that fires anyway (it was already waiting for mu) sees another
	// generation and does nothing.
	timerGen uint64

	// With Options.Store: while stored (the session's record is in the
	// store), its QoS 1 and 2 deliveries are written; writes counts its
	// copies in batches not yet written (Add under mu, while stored).
	writes         sync.WaitGroup
	created        time.Time
	disconnectedAt time.Time
}

// pendingWill is a will and the client whose rights it is published under.
type pendingWill struct {
	will   *packet.Will
	client *Client
}

func newSession(id string) *session {
	return &session{id: id}
}

// queued is the number of messages waiting to be written. Requires mu.
func (s *session) queued() int { return len(s.queue) - s.qhead }

// stopTimersLocked stops the expiry and will timers. Requires mu.
func (s *session) stopTimersLocked() {
	s.timerGen++
	if s.expiryT != nil {
		s.expiryT.Stop()
		s.expiryT = nil
	}
	if s.willT != nil {
		s.willT.Stop()
		s.willT = nil
	}
}

// enqueueLocked adds d to the queue, making room by evicting queued QoS 0
// messages, oldest first; when none is left to evict, d itself is dropped.
// It returns the drops to report once mu is released. Requires mu.
func (s *session) enqueueLocked(d delivery, o *Options, drops []DropReason) []DropReason {
	if s.conn == nil && d.qos == 0 && !o.QueueQoS0Offline {
		return append(drops, DropOfflineQoS0)
	}
	size := d.msg.size()
	for s.queued() >= o.QueueMessages || (s.queued() > 0 && s.queueBytes+size > o.QueueBytes) {
		if !s.evictQoS0Locked() {
			return append(drops, DropQueueFull)
		}
		drops = append(drops, DropQueueFullQoS0)
	}
	if s.qhead > 0 && len(s.queue) == cap(s.queue) {
		n := copy(s.queue, s.queue[s.qhead:])
		clear(s.queue[n:])
		s.queue, s.qhead = s.queue[:n], 0
	}
	s.queue = append(s.queue, d)
	s.queueBytes += size
	return drops
}

// evictQoS0Locked removes the oldest queued QoS 0 message. Requires mu.
func (s *session) evictQoS0Locked() bool {
	for i := s.qhead; i < len(s.queue); i++ {
		if s.queue[i].qos == 0 {
			s.queueBytes -= s.queue[i].msg.size()
			copy(s.queue[i:], s.queue[i+1:])
			s.queue[len(s.queue)-1] = delivery{}
			s.queue = s.queue[:len(s.queue)-1]
			return true
		}
	}
	return false
}

// dropRefusedLocked removes the queued and in-flight deliveries (but those
// awaiting PUBCOMP) on the refused topics, and appends a drop for each.
// Requires mu.
func (s *session) dropRefusedLocked(srv *Server, refused map[string]bool, drops []DropReason) []DropReason {
	q := s.queue[:s.qhead]
	for _, d := range s.queue[s.qhead:] {
		if refused[d.msg.Topic] {
			s.queueBytes -= d.msg.size()
			s.doneLocked(srv, &d)
			drops = append(drops, DropNotAuthorized)
			continue
		}
		q = append(q, d)
	}
	clear(s.queue[len(q):])
	s.queue = q
	if s.qhead == len(s.queue) {
		s.queue, s.qhead = nil, 0
	}
	for i := 0; i < len(s.inflight); {
		if o := &s.inflight[i]; !o.rel && refused[o.d.msg.Topic] {
			s.doneLocked(srv, &o.d)
			s.ackLocked(i)
			drops = append(drops, DropNotAuthorized)
			continue
		}
		i++
	}
	return drops
}

// popLocked removes the queue's head. Requires mu and a non-empty queue.
func (s *session) popLocked() {
	s.queueBytes -= s.queue[s.qhead].msg.size()
	s.queue[s.qhead] = delivery{}
	s.qhead++
	if s.qhead == len(s.queue) {
		s.queue, s.qhead = nil, 0 // an idle session holds no queue
	}
}

// full says whether the queue is at its message bound. Requires mu.
func (s *session) full(o *Options) bool { return s.queued() >= o.QueueMessages }

// freeIDLocked returns an outbound packet id not in flight. Requires mu and
// fewer than 65,535 messages in flight.
func (s *session) freeIDLocked() uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if s.inflightIndex(s.nextID) < 0 {
			return s.nextID
		}
	}
}

// inflightIndex is the position of id in the in-flight window, or -1.
// Requires mu.
func (s *session) inflightIndex(id uint16) int {
	for i := range s.inflight {
		if s.inflight[i].id == id {
			return i
		}
	}
	return -1
}

// ackLocked removes id from the in-flight window, keeping the order of the
// rest. Requires mu.
func (s *session) ackLocked(i int) {
	if s.inflight[i].unsent {
		s.unsent--
	}
	s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
	s.inflight[:len(s.inflight)+1][len(s.inflight)] = outbound{} // the message is not kept alive
	if len(s.inflight) == 0 {
		s.inflight = nil // an idle session holds no window
	}
}

// setSubLocked records a subscription, replacing the filter's previous one.
// Requires mu.
func (s *session) setSubLocked(filter string, o subs.Options) {
	for i := range s.subs {
		if s.subs[i].Filter == filter {
			s.subs[i].Options = o
			return
		}
	}
	s.subs = append(s.subs, subs.Subscription{Filter: filter, Options: o})
}

// removeSubLocked forgets a subscription. Requires mu.
func (s *session) removeSubLocked(filter string) {
	for i := range s.subs {
		if s.subs[i].Filter == filter {
			s.subs = append(s.subs[:i], s.subs[i+1:]...)
			s.subs[:len(s.subs)+1][len(s.subs)] = subs.Subscription{}
			return
		}
	}
}
