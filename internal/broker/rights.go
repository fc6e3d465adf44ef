package broker

import (
	"context"
	"hash/maphash"
	"sync/atomic"
	"time"
)

// The rights cache. Every PUBLISH is judged by MayPublish and each of its
// deliveries by MayReceive; a session's decisions repeat (a device
// publishes on the same few topics, a subscriber is delivered the same
// topics), so each live session keeps its latest ones: the last topic it
// published on, and a small table of the topics it was delivered, each
// with its decision.
//
// A decision is kept with the rights generation (hook.gen) read before it
// was made, and used only while the generation is unchanged. Everything
// that can change a decision bumps the generation once the change is in
// place (rightsChanged): device, product (topic classes), thing name and
// API key events, after the caches they drop; sub-device logins and
// logouts, after the topology maps changed; kicks (distribution). A
// decision made from the state before a change was read under the older
// generation, so it is never used after the change: a revoked right is
// refused from the first message judged after the event returns (the
// registry tells its observers before it answers the request). The
// broker also bumps the generation every rightsTTL, so a decision lives
// no longer than that beyond the registry caches it was read from (whose
// TTLs bound a change made on another node).
//
// Restored sessions whose client has not come back (no session) are not
// cached: they are judged rarely, by the identity their name says.

// rightsTTL is how often the generation moves with no change seen.
const rightsTTL = time.Second

// decision is one cached rights decision: ok for topic under generation gen.
type decision struct {
	gen   uint64
	topic string
	ok    bool
}

// rightsCache is a session's cached decisions. The publish decision is
// set by the session's own reader (and its will), the delivery ones by
// every publisher routing to it, concurrently: each slot is an atomic
// pointer to an immutable decision.
type rightsCache struct {
	pub  atomic.Pointer[decision]
	recv atomic.Pointer[recvTable]
	// first is the table recv starts with, and firstSlots its slots, in
	// the cache's own allocation: most sessions never need a larger one,
	// and each object a live session keeps is work for every collection.
	first      recvTable
	firstSlots [recvSlotsMin]atomic.Pointer[decision]
}

// A recvTable holds delivery decisions by a hash of the topic, one a slot.
// It starts with recvSlotsMin slots (a device is delivered a few topics)
// and doubles, up to recvSlotsMax, once more decisions of the current
// generation were pushed out by other topics than it has slots (a
// wildcard subscriber is delivered many).
type recvTable struct {
	slots   []atomic.Pointer[decision]
	evicted atomic.Uint32
}

const (
	recvSlotsMin = 4
	recvSlotsMax = 256
)

// rightsChanged invalidates every cached decision. Call it after the
// change is in place: after the maps are written and the caches dropped.
func (h *hook) rightsChanged() { h.gen.Add(1) }

// cacheOf is s's rights cache, made on first use.
func (s *session) cacheOf() *rightsCache {
	if rc := s.rights.Load(); rc != nil {
		return rc
	}
	rc := &rightsCache{}
	rc.first.slots = rc.firstSlots[:]
	rc.recv.Store(&rc.first)
	s.rights.CompareAndSwap(nil, rc)
	return s.rights.Load()
}

// mayPublishCached is mayPublish for a live session, through its cache.
func (h *hook) mayPublishCached(ctx context.Context, s *session, topic string) bool {
	gen := h.gen.Load() // before the decision is made: see the comment above
	rc := s.cacheOf()
	if d := rc.pub.Load(); d != nil && d.gen == gen && d.topic == topic {
		return d.ok
	}
	ok := h.mayPublish(ctx, s.id, topic)
	rc.pub.Store(&decision{gen: gen, topic: topic, ok: ok})
	return ok
}

// mayReceiveCached is mayReceive for a live session, through its cache.
func (h *hook) mayReceiveCached(ctx context.Context, s *session, topic string) bool {
	gen := h.gen.Load()
	rc := s.cacheOf()
	t := rc.recv.Load()
	slot := &t.slots[maphash.String(h.seed, topic)&uint64(len(t.slots)-1)]
	d := slot.Load()
	if d != nil && d.gen == gen && d.topic == topic {
		return d.ok
	}
	ok := h.mayReceive(ctx, s.id, topic)
	if d != nil && d.gen == gen && len(t.slots) < recvSlotsMax && t.evicted.Add(1) > uint32(len(t.slots)) {
		// Too small for what the session is delivered: a larger, empty
		// table (the decisions come back as messages do).
		rc.recv.CompareAndSwap(t, &recvTable{slots: make([]atomic.Pointer[decision], 2*len(t.slots))})
		return ok
	}
	slot.Store(&decision{gen: gen, topic: topic, ok: ok})
	return ok
}
