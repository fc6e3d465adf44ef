package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/retained"
	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// durable is the engine's side of Options.Store: which sessions are stored,
// and the acknowledgements (transitions) waiting to be written by its
// flusher goroutine, off every client's path.
type durable struct {
	st   persist.Store
	seed maphash.Seed
	seq  atomic.Uint64 // the last Seq given (enqueueStoredLocked)
	// stripes serialise the record writes of one client id (PutSession,
	// DeleteSession) across session objects: the last write made says the
	// latest state.
	stripes [64]stripe

	mu      sync.Mutex
	pending []pendingOp
	kick    chan struct{} // one slot: the flusher has work
	stop    chan struct{}
	done    chan struct{}
}

// stripe holds the stored session of the client ids that hash to it.
type stripe struct {
	mu     sync.Mutex
	stored map[string]*session
}

// pendingOp is one transition or released inbound id for the flusher,
// written only once the batch that enqueued its message (after) is.
type pendingOp struct {
	t         persist.Transition
	rmInbound bool
	after     *batch
}

// batch gathers what one routed message writes: its copies to stored
// sessions, the publisher's QoS 2 id and the retained change. Route fills
// it through Deliver; commit writes it before the publisher is answered.
type batch struct {
	mu      sync.Mutex
	sealed  bool // committed: later deliveries are memory only
	entries []batchEntry
	// done is closed once the Write returned. Made with the first entry
	// (under mu): only a stored copy's transitions wait for it, and most
	// messages have none (a channel a QoS 1 publish saved).
	done chan struct{}
}

// written waits until b's Write returned, if anything of it was to be
// written.
func (b *batch) written() {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done != nil {
		<-done
	}
}

type batchEntry struct {
	ss *session
	d  delivery
}

func newDurable(st persist.Store) *durable {
	d := &durable{st: st, seed: maphash.MakeSeed(), kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range d.stripes {
		d.stripes[i].stored = map[string]*session{}
	}
	return d
}

func (d *durable) stripe(id string) *stripe {
	return &d.stripes[maphash.String(d.seed, id)%uint64(len(d.stripes))]
}

// transition queues a state change of a stored message for the flusher.
// Called under the session's lock: it only appends.
func (d *durable) transition(id string, dl *delivery, st persist.State, pid uint16) {
	d.push(pendingOp{t: persist.Transition{ClientID: id, Seq: dl.seq, State: st, PacketID: pid}, after: dl.msg.batch})
}

func (d *durable) push(op pendingOp) {
	d.mu.Lock()
	d.pending = append(d.pending, op)
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// run is the flusher: every wake-up writes all pending operations as one
// batch, until stop, when it writes what is left and returns.
func (d *durable) run(s *Server) {
	defer close(d.done)
	for {
		select {
		case <-d.kick:
			d.flush(s)
		case <-d.stop:
			d.flush(s)
			return
		}
	}
}

func (d *durable) flush(s *Server) {
	d.mu.Lock()
	ops := d.pending
	d.pending = nil
	d.mu.Unlock()
	if len(ops) == 0 {
		return
	}
	var b persist.Batch
	for _, op := range ops {
		if op.after != nil {
			op.after.written() // the message's enqueue is written (or failed)
		}
		if op.rmInbound {
			b.RemoveInbound = append(b.RemoveInbound, persist.Inbound{ClientID: op.t.ClientID, PacketID: op.t.PacketID})
		} else {
			b.Transitions = append(b.Transitions, op.t)
		}
	}
	if err := d.st.Write(context.Background(), b); err != nil {
		s.log.Error("mqtt engine: storing acknowledgements", "count", len(ops), "err", err)
	}
}

// close stops the flusher once every connection has ended.
func (d *durable) close() {
	close(d.stop)
	<-d.done
}

// route routes m; with a store, the copies it queued for stored sessions,
// the publisher's QoS 2 id (in, when not nil) and the retained change are
// written in one batch before route returns, so that the caller answers the
// publisher only once they are durable.
func (s *Server) route(m *Message, now time.Time, in *persist.Inbound) (int, error) {
	if s.dur == nil || (m.QoS == 0 && !m.Retain && in == nil) {
		if m.Retain {
			s.retain(m, now)
		}
		return s.router.Route(m), nil
	}
	b := &batch{}
	m.batch = b
	if m.Retain {
		s.retain(m, now)
	}
	n := s.router.Route(m)
	var ret *Message
	if m.Retain {
		ret = m
	}
	return n, s.commit(b, ret, now, in)
}

// commit seals b and writes it with the retained change of ret (nil: none)
// stored at now and the inbound id in, retrying without the copies of
// sessions deleted meanwhile (their Write fails with ErrNoSession).
func (s *Server) commit(b *batch, ret *Message, now time.Time, in *persist.Inbound) error {
	b.mu.Lock()
	b.sealed = true
	entries, done := b.entries, b.done
	b.entries = nil
	b.mu.Unlock()
	if done != nil {
		defer close(done)
	}
	defer func() {
		for _, e := range entries {
			e.ss.writes.Done()
		}
	}()
	var pb persist.Batch
	if in != nil {
		pb.AddInbound = []persist.Inbound{*in}
	}
	if m := ret; m != nil {
		if len(m.Payload) == 0 {
			pb.ClearRetained = []string{m.Topic}
		} else {
			p := &packet.Publish{QoS: m.QoS, Retain: true, Topic: m.Topic, Properties: m.Props.properties(),
				Payload: m.Payload}
			if p.QoS > 0 {
				p.PacketID = 1
			}
			raw, err := p.Append(nil, packet.V5)
			if err != nil {
				return fmt.Errorf("mqtt engine: encoding a retained message: %w", err)
			}
			pb.SetRetained = []persist.Retained{{Topic: m.Topic, Publish: raw, Stored: now, Expiry: m.expires}}
		}
	}
	owners := make([]*session, 0, len(entries))
	for _, e := range entries {
		raw, err := encodeDelivery(&e.d)
		if err != nil {
			continue // too large to encode: it is dropped at delivery too
		}
		pb.Enqueue = append(pb.Enqueue, persist.Message{ClientID: e.ss.id, Seq: e.d.seq, State: persist.Queued,
			Expiry: e.d.msg.expires, Publish: raw})
		owners = append(owners, e.ss)
	}
	if pb.Empty() {
		return nil
	}
	for try := 0; ; try++ {
		err := s.dur.st.Write(context.Background(), pb) // Close waits for it: the publisher is answered
		if err == nil || !errors.Is(err, persist.ErrNoSession) || try == 2 {
			if err != nil {
				return fmt.Errorf("mqtt engine: storing a message: %w", err)
			}
			return nil
		}
		// A session ended while the message was routed: write the rest.
		var kept []persist.Message
		var keptOwners []*session
		for i, ss := range owners {
			if s.isStored(ss) {
				kept, keptOwners = append(kept, pb.Enqueue[i]), append(keptOwners, ss)
			}
		}
		pb.Enqueue, owners = kept, keptOwners
		if in != nil {
			if ss := s.sessionOf(in.ClientID); ss == nil || !s.isStored(ss) {
				pb.AddInbound = nil
			}
		}
		if pb.Empty() {
			return nil
		}
	}
}

func (s *Server) sessionOf(id string) *session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[id]
}

func (s *Server) isStored(ss *session) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.stored && !ss.ended
}

// encodeDelivery is d's PUBLISH as the store keeps it: MQTT 5 bytes, with
// its QoS, RETAIN and subscription ids (the expiry is kept beside it).
func encodeDelivery(d *delivery) ([]byte, error) {
	p := publishOf(d, 0, false)
	if p.QoS > 0 {
		p.PacketID = 1 // not kept: the Message's PacketID is the one sent
	}
	return p.Append(nil, packet.V5)
}

// encodeWill is a will as a session record keeps it: its delay interval
// (4 bytes, big-endian), then the will as an MQTT 5 PUBLISH. Nil for none
// (or one that cannot be encoded: it is then not kept across a restart).
func encodeWill(w *packet.Will) []byte {
	if w == nil {
		return nil
	}
	pr := w.Properties
	pr.WillDelay = 0
	p := &packet.Publish{QoS: w.QoS, Retain: w.Retain, Topic: w.Topic, Properties: pr, Payload: w.Payload}
	if p.QoS > 0 {
		p.PacketID = 1
	}
	raw, err := p.Append(binary.BigEndian.AppendUint32(nil, w.Properties.WillDelay), packet.V5)
	if err != nil {
		return nil
	}
	return raw
}

// decodeWill is the will of a session record; nil for none.
func decodeWill(raw []byte) (*packet.Will, error) {
	if raw == nil {
		return nil, nil
	}
	if len(raw) < 4 {
		return nil, fmt.Errorf("mqtt engine: a stored will of %d bytes", len(raw))
	}
	p, err := decodePublish(raw[4:])
	if err != nil {
		return nil, err
	}
	w := &packet.Will{QoS: p.QoS, Retain: p.Retain, Topic: p.Topic, Payload: p.Payload, Properties: p.Properties}
	w.Properties.WillDelay = binary.BigEndian.Uint32(raw)
	return w, nil
}

// decodeDelivery is the delivery of a stored PUBLISH.
func decodeDelivery(raw []byte, expiry time.Time, seq uint64) (delivery, error) {
	p, err := decodePublish(raw)
	if err != nil {
		return delivery{}, err
	}
	m := &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Props: propsOf(&p.Properties),
		expires: expiry}
	return delivery{msg: m, qos: p.QoS, retain: p.Retain, subIDs: p.Properties.SubscriptionIDs, seq: seq}, nil
}

func decodePublish(raw []byte) (*packet.Publish, error) {
	pk, _, err := packet.Decode(raw, packet.V5, 0)
	if err != nil {
		return nil, fmt.Errorf("mqtt engine: decoding a stored message: %w", err)
	}
	p, ok := pk.(*packet.Publish)
	if !ok {
		return nil, fmt.Errorf("mqtt engine: a stored message is a %s, not a PUBLISH", pk.Type())
	}
	return p, nil
}

// enqueueStoredLocked queues d to s as enqueueLocked does; when d's
// message is being stored (its batch is open) and s is stored, it numbers d
// and adds it to the batch. Requires s.mu.
//
// Seq comes from one counter for the whole server (continuing from the
// highest loaded), so it increases within each session and is never reused
// by a later session of the same client id: an acknowledgement of the
// earlier one still waiting in the flusher cannot touch the later one's
// messages.
func (srv *Server) enqueueStoredLocked(s *session, d delivery, drops []DropReason) []DropReason {
	o := &srv.opts
	b := d.msg.batch
	if b == nil || d.qos == 0 || !s.stored {
		return s.enqueueLocked(d, o, drops)
	}
	d.seq = srv.dur.seq.Add(1)
	n := len(drops)
	drops = s.enqueueLocked(d, o, drops)
	if len(drops) > n && drops[len(drops)-1] == DropQueueFull {
		return drops // d itself was dropped
	}
	b.mu.Lock()
	if b.sealed {
		// Delivered after its batch was written (a router that delivers
		// late): kept in memory only.
		s.queue[len(s.queue)-1].seq = 0
	} else {
		if b.done == nil {
			b.done = make(chan struct{})
		}
		b.entries = append(b.entries, batchEntry{ss: s, d: d})
		s.writes.Add(1) // done when the batch is written
	}
	b.mu.Unlock()
	return drops
}

// syncSession writes id's session record as it stands: the live persistent
// session is stored (a session that replaced the stored one is stored
// afresh, after the old one is deleted); none, or one that ends with its
// connection, is deleted if stored. Sessions that never were persistent
// cost no write.
func (s *Server) syncSession(id string) {
	if s.dur == nil {
		return
	}
	sp := s.dur.stripe(id)
	sp.mu.Lock()
	defer sp.mu.Unlock()
	ss := s.sessionOf(id)
	var rec persist.Session
	keep := false
	if ss != nil {
		ss.mu.Lock()
		if !ss.ended && ss.expiry > 0 {
			keep = true
			rec = persist.Session{ClientID: id, Version: byte(ss.client.Version), ExpiryInterval: ss.expiry,
				Created: ss.created}
			var w *packet.Will
			if ss.conn == nil {
				rec.DisconnectedAt = ss.disconnectedAt
				if ss.will != nil {
					w = ss.will.will
				}
			} else {
				w = ss.conn.will
			}
			rec.Will = encodeWill(w)
		}
		ss.mu.Unlock()
	}
	ctx := context.Background()
	prev := sp.stored[id]
	if prev != nil && (!keep || prev != ss) {
		prev.mu.Lock()
		prev.stored = false // no copy is added to a batch from now on
		prev.mu.Unlock()
		// A batch holding a copy for prev and written after this delete
		// would put it in the queue of the session stored next.
		prev.writes.Wait()
		delete(sp.stored, id)
		if err := s.dur.st.DeleteSession(ctx, id); err != nil {
			s.log.Error("mqtt engine: deleting a stored session", "client", id, "err", err)
		}
	}
	if !keep {
		return
	}
	if err := s.dur.st.PutSession(ctx, rec); err != nil {
		s.log.Error("mqtt engine: storing a session", "client", id, "err", err)
		return
	}
	sp.stored[id] = ss
	ss.mu.Lock()
	ss.stored = !ss.ended
	ss.mu.Unlock()
}

// storeSubscribe writes a stored session's new subscription.
func (s *Server) storeSubscribe(ss *session, filter string, o subs.Options) {
	if s.dur == nil || !s.isStored(ss) {
		return
	}
	sub := persist.Subscription{ClientID: ss.id, Filter: filter, QoS: o.QoS, NoLocal: o.NoLocal,
		RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, SubscriptionID: o.SubscriptionID}
	if err := s.dur.st.Subscribe(context.Background(), ss.id, []persist.Subscription{sub}); err != nil {
		s.log.Error("mqtt engine: storing a subscription", "client", ss.id, "err", err)
	}
}

// storeUnsubscribe removes a stored session's subscription.
func (s *Server) storeUnsubscribe(ss *session, filter string) {
	if s.dur == nil || !s.isStored(ss) {
		return
	}
	if err := s.dur.st.Unsubscribe(context.Background(), ss.id, []string{filter}); err != nil {
		s.log.Error("mqtt engine: removing a stored subscription", "client", ss.id, "err", err)
	}
}

// Open returns a server with o's settings and, when o.Store is set, the
// state it holds: expired sessions are deleted, the others are restored
// offline (their subscriptions, queues, in-flight windows and QoS 2 ids;
// those connected when the process stopped are disconnected now and their
// expiry starts), and the retained messages are loaded. Call it before
// Serve; without a store it is New.
func Open(ctx context.Context, o Options) (*Server, error) {
	s := New(o)
	if s.dur == nil {
		return s, nil
	}
	if err := s.restore(ctx); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	return s, nil
}

func (s *Server) restore(ctx context.Context) error {
	now := time.Now()
	st := s.dur.st
	expired, err := st.ExpireSessions(ctx, now)
	if err != nil {
		return fmt.Errorf("mqtt engine: expiring stored sessions: %w", err)
	}
	// The wills of sessions that ended while the server was down go once
	// the retained messages and subscriptions are back.
	var due []pendingWill
	for _, rec := range expired {
		w, err := decodeWill(rec.Will)
		if err != nil {
			s.log.Error("mqtt engine: an expired session's will is unreadable", "client", rec.ClientID, "err", err)
		} else if w != nil {
			due = append(due, pendingWill{w, &Client{ID: rec.ClientID, Version: packet.Version(rec.Version)}})
		}
	}
	var reconnected []string
	var restored []*session
	err = st.Load(ctx, func(l persist.Loaded) error {
		ss, err := s.restoreSession(l)
		if err != nil {
			return err
		}
		restored = append(restored, ss)
		if l.Session.DisconnectedAt.IsZero() {
			reconnected = append(reconnected, ss.id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mqtt engine: loading sessions: %w", err)
	}
	for _, id := range reconnected {
		s.syncSession(id) // connected at the stop: disconnected now
	}
	if _, err := st.ExpireRetained(ctx, now); err != nil {
		return fmt.Errorf("mqtt engine: expiring retained messages: %w", err)
	}
	err = st.LoadRetained(ctx, func(r persist.Retained) error {
		p, err := decodePublish(r.Publish)
		if err != nil {
			return err
		}
		if _, err := s.retained.Retain(retained.Message{Topic: r.Topic, Payload: p.Payload, QoS: p.QoS,
			Properties: p.Properties, Stored: r.Stored}); err != nil {
			return fmt.Errorf("mqtt engine: retained message on %q: %w", r.Topic, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mqtt engine: loading retained messages: %w", err)
	}
	for _, w := range due {
		s.publishWill(w)
	}
	for _, ss := range restored {
		s.startTimers(ss, now)
	}
	return nil
}

// restoreSession rebuilds one stored session, offline.
func (s *Server) restoreSession(l persist.Loaded) (*session, error) {
	rec := l.Session
	ss := newSession(rec.ClientID)
	ss.client = &Client{ID: rec.ClientID, Version: packet.Version(rec.Version)}
	ss.expiry, ss.created, ss.stored = rec.ExpiryInterval, rec.Created, true
	ss.disconnectedAt = rec.DisconnectedAt
	if ss.disconnectedAt.IsZero() {
		// Connected when the server stopped: disconnected now, its will
		// (its delay counted from now) due.
		ss.disconnectedAt = time.Now()
	}
	w, err := decodeWill(rec.Will)
	if err != nil {
		return nil, fmt.Errorf("client %q: %w", rec.ClientID, err)
	}
	if w != nil {
		ss.will = &pendingWill{w, ss.client}
	}
	for _, m := range l.Messages {
		d, err := decodeDelivery(m.Publish, m.Expiry, m.Seq)
		if err != nil {
			return nil, fmt.Errorf("client %q seq %d: %w", rec.ClientID, m.Seq, err)
		}
		if m.Seq > s.dur.seq.Load() {
			s.dur.seq.Store(m.Seq)
		}
		switch m.State {
		case persist.Queued:
			ss.queue = append(ss.queue, d)
			ss.queueBytes += d.msg.size()
		case persist.Sent, persist.Received:
			ss.inflight = append(ss.inflight, outbound{id: m.PacketID, d: d, rel: m.State == persist.Received})
		}
	}
	for _, id := range l.Inbound {
		if ss.inQoS2 == nil {
			ss.inQoS2 = map[uint16]struct{}{}
		}
		ss.inQoS2[id] = struct{}{}
	}
	for _, sub := range l.Subscriptions {
		o := subs.Options{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling, SubscriptionID: sub.SubscriptionID}
		s.router.Subscribe(ss.id, sub.Filter, o)
		ss.setSubLocked(sub.Filter, o)
	}
	s.mu.Lock()
	s.sessions[ss.id] = ss
	s.count.sessions.Add(1)
	s.mu.Unlock()
	sp := s.dur.stripe(ss.id)
	sp.mu.Lock()
	sp.stored[ss.id] = ss
	sp.mu.Unlock()
	return ss, nil
}

// startTimers starts a restored session's expiry and will delay, counted
// from its disconnection, once every session is back (a will due at once
// reaches the restored subscribers).
func (s *Server) startTimers(ss *session, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended || ss.conn != nil {
		return
	}
	gen := ss.timerGen
	if ss.expiry != neverExpires {
		left := time.Duration(ss.expiry)*time.Second - now.Sub(ss.disconnectedAt)
		ss.expiryT = time.AfterFunc(max(left, 0), func() { s.expire(ss, gen) })
	}
	if w := ss.will; w != nil {
		left := time.Duration(w.will.Properties.WillDelay)*time.Second - now.Sub(ss.disconnectedAt)
		ss.willT = time.AfterFunc(max(left, 0), func() { s.willDue(ss, gen) })
	}
}
