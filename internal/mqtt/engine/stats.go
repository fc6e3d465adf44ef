package engine

import "sync/atomic"

// DropReason says why a message was not delivered to a session.
type DropReason int

// The reasons a message is dropped.
const (
	DropQueueFullQoS0 DropReason = iota // a queued QoS 0 message evicted to make room
	DropQueueFull                       // the new message: the queue held no QoS 0 to evict
	DropOfflineQoS0                     // QoS 0 for an offline session (Options.QueueQoS0Offline off)
	DropExpired                         // its Message Expiry Interval passed while queued
	DropTooLarge                        // larger than the client's Maximum Packet Size
	DropNotAuthorized                   // queued or in flight when the session was resumed by a client that may not receive it
	numDropReasons
)

var dropNames = [...]string{"queue_full_qos0", "queue_full", "offline_qos0", "expired", "too_large", "not_authorized"}

func (r DropReason) String() string {
	if r >= 0 && int(r) < len(dropNames) {
		return dropNames[r]
	}
	return "unknown"
}

// Stats are the engine's counters, for /metrics.
type Stats struct {
	Connections int64 // connected clients now
	Sessions    int64 // sessions now, offline persistent ones included
	Parked      int64 // connections parked now (Options.ParkIdle): no goroutine
	// ReadBuffers is the connections holding a read buffer now: those in
	// the middle of reading what came (an idle connection holds none).
	ReadBuffers int64
	Received    uint64
	Sent        uint64
	Drops       map[DropReason]uint64
	// Ends counts the connections of sessions ended so far (those
	// SessionEnded reports), by reason.
	Ends map[EndReason]uint64
}

type counters struct {
	connections atomic.Int64
	sessions    atomic.Int64
	readBufs    atomic.Int64
	received    atomic.Uint64
	sent        atomic.Uint64
	writers     atomic.Uint64 // writer goroutines started (tests)
	drops       [numDropReasons]atomic.Uint64
	ends        [numEndReasons]atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Connections: s.count.connections.Load(),
		Sessions:    s.count.sessions.Load(),
		Parked:      s.poll.parkedCount(),
		ReadBuffers: s.count.readBufs.Load(),
		Received:    s.count.received.Load(),
		Sent:        s.count.sent.Load(),
		Drops:       make(map[DropReason]uint64, numDropReasons),
		Ends:        make(map[EndReason]uint64, numEndReasons),
	}
	for r := range numDropReasons {
		st.Drops[r] = s.count.drops[r].Load()
	}
	for r := range numEndReasons {
		st.Ends[r] = s.count.ends[r].Load()
	}
	return st
}

// ended reports the end of c's connection to its session, once: counted
// in Stats.Ends and told to SessionEnded. Never called with a lock held.
func (s *Server) ended(c *conn, r EndReason) {
	if c.endReported.Swap(true) {
		return
	}
	if r >= 0 && r < numEndReasons {
		s.count.ends[r].Add(1)
	}
	s.hooks.SessionEnded(c.client, r)
}

// dropped counts a drop, logs it sampled (the 1st, then every 1,000th of a
// reason) and tells OnDrop. Never called with a lock held.
func (s *Server) dropped(clientID string, r DropReason) {
	s.tellDrop(clientID, r, s.count.drops[r].Add(1))
}

// tellDrop logs the nth drop of its reason sampled and tells OnDrop: the
// part of dropped that is never done with a lock held.
func (s *Server) tellDrop(clientID string, r DropReason, n uint64) {
	if n == 1 || n%1000 == 0 {
		s.log.Warn("mqtt engine: message dropped", "client", clientID, "reason", r.String(), "total", n)
	}
	if s.opts.OnDrop != nil {
		s.opts.OnDrop(clientID, r)
	}
}
