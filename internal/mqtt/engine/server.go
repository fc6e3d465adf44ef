package engine

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// handlerPrefix starts the router ids of in-process handlers: U+0000 may not
// appear in an MQTT client id, so none can collide.
const handlerPrefix = "\x00h"

// ErrClosed is returned by Serve and the API once Close has begun.
var ErrClosed = errors.New("mqtt engine: server closed")

// ErrNoSession is returned when a client id has no session.
var ErrNoSession = errors.New("mqtt engine: no such session")

// Server is an MQTT server. Its zero value is not usable: call New.
//
// Invariants, under mu: sessions holds every live session by client id
// (an ended one is removed at once); conns holds every connection whose
// reader runs; once closed, no connection or listener is added.
type Server struct {
	opts     Options
	log      *slog.Logger
	hooks    Hooks
	router   Router
	retained RetainedStore
	dur      *durable // nil without Options.Store
	count    counters
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // readers (parked ones too), writers, accept loops
	poll     *poller        // nil: Options.ParkIdle 0 or not Linux
	// readBufs holds the read buffers of connections with nothing
	// buffered (an idle connection keeps none: it waits for a packet's
	// first bytes in conn.b); writeBufs the writers' buffers between
	// flushes.
	readBufs, writeBufs sync.Pool
	// nowWriters holds writeNow's states (one a write in progress).
	nowWriters sync.Pool
	// pubs holds the readers' PUBLISH packets between reads
	// (packet.ReadInto): each reader is done with a packet before the next.
	pubs sync.Pool

	// subMu orders a session's subscriptions in the router (keyed by
	// client id) with the removal of an ended session's: an ended session's
	// are removed only while no newer session of its id exists, and a new
	// session removes whatever its id still has before its reader starts
	// (removeSubs, afterTakeover). Taken before the router and mu.
	subMu sync.Mutex

	mu          sync.RWMutex
	sessions    map[string]*session
	handlers    map[string]func(*Message)
	nextHandler uint64
	conns       map[*conn]struct{}
	listeners   map[net.Listener]struct{}
	closed      bool
}

// New returns a server with o's settings.
func New(o Options) *Server {
	o = o.withDefaults()
	s := &Server{opts: o, log: o.Logger, hooks: o.Hooks, router: o.Router, retained: o.Retained,
		sessions: map[string]*session{}, handlers: map[string]func(*Message){},
		conns: map[*conn]struct{}{}, listeners: map[net.Listener]struct{}{}}
	if s.router == nil {
		s.router = NewLocalRouter()
	}
	s.router.Bind(s)
	if o.ParkIdle > 0 {
		s.poll = newPoller(o.Logger)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if o.Store != nil {
		s.dur = newDurable(o.Store)
		go s.dur.run(s)
	}
	return s
}

// Serve accepts connections on ln until Close, serving each in its own
// goroutine; ConnInfo.Listener is ln's address. It returns nil after
// Close, else the accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	name := ln.Addr().String()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.listeners, ln)
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("mqtt engine: accept on %s: %w", name, err)
		}
		c := s.track(nc, name)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

// ServeConn serves one connection (already wrapped: TLS, WebSocket, PROXY).
// It returns once the connection is refused or its session has started;
// the connection is then served by a goroutine of its own until it ends.
func (s *Server) ServeConn(nc net.Conn) {
	if c := s.track(nc, ""); c != nil {
		c.serve()
	}
}

// track registers a new connection, or closes it when the server is closed.
func (s *Server) track(nc net.Conn, listener string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return nil
	}
	c := &conn{srv: s, nc: nc, listener: listener, raw: directSocket(nc)}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

// serve runs a connection's CONNECT, then hands the read loop to a new
// goroutine: its stack starts small and only the read path grows it, where
// the CONNECT (and a TLS handshake before it) would have left the
// accepting goroutine's stack large for the connection's whole life.
func (c *conn) serve() {
	s := c.srv
	pw := c.connect()
	if c.sess == nil {
		c.closeNC()
		c.untrack()
		return
	}
	s.count.connections.Add(1)
	s.afterTakeover(pw)
	if pw.present {
		s.recheckRights(c)
	}
	c.sess.mu.Lock()
	if c.sess.conn == c {
		c.sess.resendLocked(c, time.Now())
	}
	c.sess.mu.Unlock()
	s.syncSession(c.client.ID)
	s.hooks.SessionStarted(c.client, pw.present)
	c.sess.mu.Lock()
	c.started = true
	if c.startWait != nil {
		close(c.startWait)
	}
	// The CONNACK (and what the session holds for the client) is written
	// by this goroutine, done with the CONNECT, once the reader runs: no
	// writer goroutine is started for it.
	write := c.claimWriterLocked()
	c.sess.mu.Unlock()
	c.setKeepAlive()
	go c.run()
	if write {
		c.flush()
	}
}

// tcpKeepAlive turns TCP keep-alives on (Go's defaults: probes after 15 s
// idle) for a client that asked for no MQTT keep alive, when the socket
// is reachable under nc's wrappers: a peer that vanished is then still
// found. Listeners may leave them off for the others
// (netlisten.Config.NoTCPKeepAlive).
func tcpKeepAlive(nc net.Conn) {
	for x := range layers(nc) {
		if tc, ok := x.(*net.TCPConn); ok {
			_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
			return
		}
	}
}

// layers yields nc, then the connections under its wrappers (those with
// NetConn() net.Conn: TLS, the PROXY protocol's), at most 8 deep.
func layers(nc net.Conn) iter.Seq[net.Conn] {
	return func(yield func(net.Conn) bool) {
		for range 8 {
			if !yield(nc) {
				return
			}
			w, ok := nc.(interface{ NetConn() net.Conn })
			if !ok {
				return
			}
			nc = w.NetConn()
		}
	}
}

// run is the connection's reader until it ends or parks; the poller runs
// it again on a parked connection that became readable, timed out or is
// being closed.
func (c *conn) run() {
	r, parked := c.readLoop()
	if parked {
		return
	}
	c.srv.detach(c, r)
	c.srv.count.connections.Add(-1)
	c.untrack()
}

// untrack forgets an ended connection.
func (c *conn) untrack() {
	s := c.srv
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// takeover is what attaching a connection displaced: the previous
// connection (ended here, its SessionEnded due) and the wills to publish.
type takeover struct {
	present bool
	oldConn *conn
	// oldStarted, when not nil, is closed once oldConn's SessionStarted
	// has returned: its end is reported after that.
	oldStarted chan struct{}
	wills      []pendingWill
	removed    string // a discarded session's id, to remove from the router
}

// connect reads and answers CONNECT; on success c.sess is set.
func (c *conn) connect() takeover {
	s := c.srv
	c.setReadDeadline(time.Now().Add(s.opts.ConnectTimeout))
	p, err := c.readConnect()
	if err != nil {
		if errors.Is(err, packet.ErrUnsupportedVersion) {
			c.version = packet.V311
			c.refuse(packet.UnsupportedProtocolVersion, "")
		}
		return takeover{}
	}
	cp, ok := p.(*packet.Connect)
	if !ok {
		return takeover{}
	}
	c.version = cp.Version
	if cp.Properties.AuthMethod != "" {
		c.refuse(packet.BadAuthenticationMethod, "extended authentication is not supported")
		return takeover{}
	}
	id := cp.ClientID
	if id == "" {
		if c.version != packet.V5 && !cp.CleanStart {
			c.refuse(packet.ClientIdentifierNotValid, "")
			return takeover{}
		}
	}
	if ka := s.opts.MaxKeepAlive; c.version != packet.V5 && ka > 0 && cp.KeepAlive > ka {
		c.refuse(packet.ClientIdentifierNotValid, "")
		return takeover{}
	}
	info := ConnInfo{RemoteAddr: c.nc.RemoteAddr(), Listener: c.listener, Conn: c.nc}
	if tc, ok := c.nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		info.TLS = &st
	}
	value, code, reason := s.hooks.Authenticate(s.ctx, info, cp)
	if code != packet.Success {
		c.refuse(code, reason)
		return takeover{}
	}
	sent := id
	if cp.ClientID != "" {
		id = cp.ClientID // Authenticate may have named the session
	}
	var ack packet.Connack
	if id == "" {
		id = assignID()
	}
	if sent == "" && c.version == packet.V5 {
		// The id the session has, assigned or named by Authenticate: a
		// client reconnecting with it resumes the session.
		ack.Properties.AssignedClientID = id
	}
	c.client = &Client{ID: id, Version: c.version, ConnInfo: info, Value: value}
	c.keepAlive = time.Duration(cp.KeepAlive) * time.Second
	c.window = s.opts.MaxInflight
	if c.version == packet.V5 {
		pr := &cp.Properties
		if pr.ReceiveMaximum != 0 {
			c.window = min(c.window, int(pr.ReceiveMaximum))
		}
		c.maxPacket = int(pr.MaximumPacketSize)
		c.aliasOutMax = pr.TopicAliasMaximum
		if pr.SessionExpiry != nil {
			c.expiry0 = s.capExpiry(*pr.SessionExpiry)
		}
		c.noProblemInfo = pr.RequestProblemInfo != nil && !*pr.RequestProblemInfo
		if ka := s.opts.MaxKeepAlive; ka > 0 && (cp.KeepAlive == 0 || cp.KeepAlive > ka) {
			ack.Properties.ServerKeepAlive = &ka
			c.keepAlive = time.Duration(ka) * time.Second
		}
		if pr.SessionExpiry != nil && c.expiry0 != *pr.SessionExpiry {
			e := c.expiry0
			ack.Properties.SessionExpiry = &e
		}
		ack.Properties.ReceiveMaximum = s.opts.ReceiveMaximum
		ack.Properties.TopicAliasMaximum = uint16(s.opts.TopicAliasMaximum)
		ack.Properties.MaximumPacketSize = uint32(s.opts.MaxPacketSize)
	} else if !cp.CleanStart {
		c.expiry0 = s.capExpiry(neverExpires)
	}
	if c.keepAlive == 0 {
		tcpKeepAlive(c.nc)
	}
	c.will = cp.Will
	return s.attach(c, cp.CleanStart, &ack)
}

// refuse answers CONNACK with a failure (3.1.1: its return code, or nothing
// when it has none); the caller closes the connection.
func (c *conn) refuse(code packet.ReasonCode, reason string) {
	ack := packet.Connack{ReasonCode: code}
	if c.version == packet.V5 {
		ack.Properties.ReasonString = reason
	} else {
		rc, ok := packet.V311ConnackCode(code)
		if !ok {
			return
		}
		ack.ReasonCode = packet.ReasonCode(rc)
	}
	b, err := ack.Append(nil, c.version)
	if err != nil {
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	_, _ = c.nc.Write(b)
}

func assignID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "auto-" + hex.EncodeToString(b[:])
}

func (s *Server) capExpiry(e uint32) uint32 {
	if s.opts.MaxSessionExpiry > 0 && e > s.opts.MaxSessionExpiry {
		return s.opts.MaxSessionExpiry
	}
	return e
}

// attach binds c to its client id's session: it ends the connection the
// session had (takeover), discards the session on a clean start, queues
// CONNACK and the resent in-flight window.
func (s *Server) attach(c *conn, clean bool, ack *packet.Connack) takeover {
	var t takeover
	id := c.client.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.refuse(packet.ServerUnavailable, "shutting down")
		return t
	}
	ss := s.sessions[id]
	if ss != nil {
		ss.mu.Lock()
		// A session whose expiry is 0 ends with the connection displaced
		// here: it is not resumed.
		clean := clean || ss.expiry == 0
		if oc := ss.conn; oc != nil {
			oc.abortLocked(packet.SessionTakenOver, "another connection took the session over", EndTakeover)
			t.oldConn = oc
			if !oc.started {
				if oc.startWait == nil {
					oc.startWait = make(chan struct{})
				}
				t.oldStarted = oc.startWait
			}
			ss.conn = nil
			// The displaced connection's will goes now unless the new one
			// resumes the session within the will delay.
			if w := oc.will; w != nil && (clean || w.Properties.WillDelay == 0) {
				t.wills = append(t.wills, pendingWill{w, oc.client})
			}
			oc.will = nil
		}
		ss.stopTimersLocked()
		if w := ss.will; w != nil && clean {
			t.wills = append(t.wills, *w)
		}
		ss.will = nil
		if clean {
			ss.ended = true
			ss.mu.Unlock()
			delete(s.sessions, id)
			s.count.sessions.Add(-1)
			t.removed = id
			ss = nil
		} else {
			t.present = true
			ss.mu.Unlock()
		}
	}
	if ss == nil {
		ss = newSession(id)
		ss.created = time.Now()
		s.sessions[id] = ss
		s.count.sessions.Add(1)
		// An ended session of this id whose subscriptions are not yet out
		// of the router (its end finishing) leaves none to this one.
		t.removed = id
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.conn, ss.client, ss.expiry = c, c.client, c.expiry0
	c.sess = ss
	ack.SessionPresent = t.present
	c.appendCtrlLocked(ack)
	c.kickLocked()
	return t
}

// recheckRights drops from a resumed session what its new client may not
// receive: the queue and the in-flight window (but PUBRELs due) were
// checked against the rights of the client they were routed to, and a
// client comes back with the rights it has now (a disabled device, an
// application key that changed role: the embedder kicks the old
// connection and authenticates the new one). It runs before the writer
// starts and before the in-flight window is resent; each refused delivery
// is counted (DropNotAuthorized).
func (s *Server) recheckRights(c *conn) {
	ss := c.sess
	ss.mu.Lock()
	if ss.queued() == 0 && len(ss.inflight) == 0 {
		ss.mu.Unlock()
		return
	}
	var topics []string
	seen := map[string]bool{}
	for i := ss.qhead; i < len(ss.queue); i++ {
		if t := ss.queue[i].msg.Topic; !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	for i := range ss.inflight {
		if t := ss.inflight[i].d.msg.Topic; !ss.inflight[i].rel && !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	ss.mu.Unlock()
	refused := map[string]bool{}
	for _, t := range topics {
		if !s.hooks.MayReceive(c.client, t) {
			refused[t] = true
		}
	}
	if len(refused) == 0 {
		return
	}
	var drops []DropReason
	ss.mu.Lock()
	if ss.conn == c {
		drops = ss.dropRefusedLocked(s, refused, drops)
	}
	ss.mu.Unlock()
	s.reportDrops(ss.id, drops)
}

// afterTakeover finishes a takeover out of locks: the router forgets a
// discarded session (before the new one can subscribe: the new reader has
// not started), the old connection's end is reported, wills go out.
func (s *Server) afterTakeover(t takeover) {
	if t.removed != "" {
		s.subMu.Lock()
		s.router.RemoveClient(t.removed)
		s.subMu.Unlock()
	}
	if t.oldStarted != nil {
		// The displaced connection's CONNECT raced this one: its
		// SessionStarted comes first (it waits for nothing of ours).
		<-t.oldStarted
	}
	if oc := t.oldConn; oc != nil {
		s.ended(oc, EndTakeover)
	}
	for _, w := range t.wills {
		s.publishWill(w)
	}
}

// detach ends c's side of its session after the read loop: the session
// ends now when its expiry is 0, else waits offline; the will goes now or
// after its delay, unless the client disconnected normally.
func (s *Server) detach(c *conn, r EndReason) {
	ss := c.sess
	var wills []pendingWill
	removed, detached := false, false
	s.mu.Lock()
	ss.mu.Lock()
	if !c.closing {
		c.closing, c.endReason = true, r
	}
	writing := c.writing
	w := c.will
	c.will = nil
	if ss.conn == c {
		ss.conn = nil
		ss.disconnectedAt, detached = time.Now(), true
		if ss.expiry == 0 && r != EndShutdown {
			ss.ended = true
			ss.stopTimersLocked()
			delete(s.sessions, ss.id)
			s.count.sessions.Add(-1)
			removed = true
		} else if ss.expiry != neverExpires && r != EndShutdown {
			gen := ss.timerGen
			ss.expiryT = time.AfterFunc(time.Duration(ss.expiry)*time.Second, func() { s.expire(ss, gen) })
		}
		if w != nil && r != EndNormal && r != EndShutdown {
			pw := pendingWill{w, c.client}
			if d := w.Properties.WillDelay; d == 0 || ss.ended {
				wills = append(wills, pw)
			} else {
				ss.will = &pw
				gen := ss.timerGen
				ss.willT = time.AfterFunc(time.Duration(d)*time.Second, func() { s.willDue(ss, gen) })
			}
		}
	}
	ss.mu.Unlock()
	s.mu.Unlock()
	if !writing {
		c.closeNC()
	}
	if removed {
		s.removeSubs(ss.id)
	}
	if detached && r != EndShutdown {
		s.syncSession(ss.id)
	}
	s.ended(c, r)
	for _, w := range wills {
		s.publishWill(w)
	}
}

// willDue publishes a delayed will if it is still pending.
func (s *Server) willDue(ss *session, gen uint64) {
	ss.mu.Lock()
	if ss.timerGen != gen {
		ss.mu.Unlock()
		return
	}
	w := ss.will
	ss.will, ss.willT = nil, nil
	ss.mu.Unlock()
	if w != nil {
		s.publishWill(*w)
		s.syncSession(ss.id) // the stored will is gone
	}
}

// expire ends an offline session whose expiry interval has passed, and
// publishes its pending will.
func (s *Server) expire(ss *session, gen uint64) {
	s.mu.Lock()
	ss.mu.Lock()
	if ss.ended || ss.conn != nil || ss.timerGen != gen {
		ss.mu.Unlock()
		s.mu.Unlock()
		return
	}
	ss.ended = true
	w := ss.will
	ss.will = nil
	ss.stopTimersLocked()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
		s.count.sessions.Add(-1)
	}
	ss.mu.Unlock()
	s.mu.Unlock()
	s.removeSubs(ss.id)
	s.syncSession(ss.id)
	if w != nil {
		s.publishWill(*w)
	}
}

// removeSubs removes an ended session's subscriptions from the router,
// unless a newer session of its id exists by now: that one removed them
// (attach) before it could subscribe, and what it has are its own.
func (s *Server) removeSubs(id string) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.mu.RLock()
	_, newer := s.sessions[id]
	s.mu.RUnlock()
	if !newer {
		s.router.RemoveClient(id)
	}
}

// publishWill publishes a will under its client's rights.
func (s *Server) publishWill(w pendingWill) {
	if !s.hooks.MayPublish(w.client, w.will.Topic) {
		return
	}
	now := time.Now()
	m := &Message{Topic: w.will.Topic, Payload: w.will.Payload, QoS: w.will.QoS, Retain: w.will.Retain,
		Props: propsOf(&w.will.Properties), Publisher: w.client.ID}
	m.setExpiry(now)
	if _, err := s.route(m, now, nil); err != nil {
		s.log.Error("mqtt engine: a will was not stored", "client", w.client.ID, "err", err)
	}
}

// Deliver gives m to a local session or handler (Deliverer).
func (s *Server) Deliver(clientID string, m *Message, sub *subs.Subscriber) {
	s.mu.RLock()
	if strings.HasPrefix(clientID, handlerPrefix) {
		h := s.handlers[clientID]
		s.mu.RUnlock()
		if h != nil {
			h(m)
		}
		return
	}
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return
	}
	ss.mu.Lock()
	client := ss.client
	ss.mu.Unlock()
	if !s.hooks.MayReceive(client, m.Topic) {
		return
	}
	d := delivery{msg: m, qos: min(m.QoS, sub.QoS), retain: m.Retain && sub.RetainAsPublished}
	if len(sub.SubIDs) > 0 && client.Version == packet.V5 {
		d.subIDs = append([]uint32(nil), sub.SubIDs...)
	}
	s.enqueue(ss, d, client)
}

// enqueue queues d to ss and starts its writer. client is the one d was
// checked for (MayReceive): when a new connection has resumed the session
// since, d is checked again for the new client, whose rights may differ.
func (s *Server) enqueue(ss *session, d delivery, client *Client) {
	var dropBuf [4]DropReason
	for {
		ss.mu.Lock()
		if ss.ended {
			ss.mu.Unlock()
			return
		}
		if ss.client == client {
			break
		}
		client = ss.client
		ss.mu.Unlock()
		if !s.hooks.MayReceive(client, d.msg.Topic) {
			return
		}
	}
	drops := s.enqueueStoredLocked(ss, d, dropBuf[:0])
	if c := ss.conn; c != nil {
		c.kickLocked()
	}
	ss.mu.Unlock()
	s.reportDrops(ss.id, drops)
}

func (s *Server) reportDrops(id string, drops []DropReason) {
	for _, r := range drops {
		s.dropped(id, r)
	}
}

// Accepts says whether a shared subscription's message may go to clientID
// now (Deliverer).
func (s *Server) Accepts(clientID string) bool {
	s.mu.RLock()
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return strings.HasPrefix(clientID, handlerPrefix)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.conn != nil && !ss.conn.closing && !ss.full(&s.opts)
}

// subscribe adds one subscription of ss and says whether retained messages
// are due for it (not shared; Retain Handling 0, or 1 and new).
func (s *Server) subscribe(ss *session, filter string, o subs.Options, shared bool) bool {
	// Under subMu, a session found live is not removed from the router
	// before this subscription is in it (removeSubs then takes it out
	// with the rest); one found ended subscribes nothing, which could
	// otherwise land on a newer session of its id.
	s.subMu.Lock()
	ss.mu.Lock()
	ended := ss.ended
	if !ended {
		ss.setSubLocked(filter, o)
	}
	ss.mu.Unlock()
	var isNew bool
	if !ended {
		isNew = s.router.Subscribe(ss.id, filter, o)
	}
	s.subMu.Unlock()
	if ended {
		return false
	}
	s.storeSubscribe(ss, filter, o)
	return !shared && (o.RetainHandling == 0 || (o.RetainHandling == 1 && isNew))
}

// retainedFor returns the deliveries of the retained messages matching
// filter that ss's client may receive, with RETAIN set.
func (s *Server) retainedFor(ss *session, filter string, o subs.Options) []delivery {
	ss.mu.Lock()
	client := ss.client
	ss.mu.Unlock()
	var ds []delivery
	for _, m := range s.matchRetained(filter, time.Now()) {
		if !s.hooks.MayReceive(client, m.Topic) {
			continue
		}
		d := delivery{msg: m, qos: min(m.QoS, o.QoS), retain: true}
		if o.SubscriptionID != 0 && client.Version == packet.V5 {
			d.subIDs = []uint32{o.SubscriptionID}
		}
		ds = append(ds, d)
	}
	return ds
}

// enqueueAll queues ds to ss in order, after ack (a SUBACK to connection
// from, when not nil) under one hold of the session's lock: no message
// routed meanwhile comes between them.
func (s *Server) enqueueAll(ss *session, from *conn, ack packet.Packet, ds []delivery) {
	var drops []DropReason
	ss.mu.Lock()
	if ack != nil {
		from.appendCtrlLocked(ack) // nothing if from was taken over
	}
	var b *batch
	if !ss.ended {
		if ss.stored && len(ds) > 0 {
			b = &batch{}
		}
		for _, d := range ds {
			d.msg.batch = b // a retained message's copy: this delivery's own
			drops = s.enqueueStoredLocked(ss, d, drops)
		}
	}
	if c := ss.conn; c != nil {
		c.kickLocked()
	}
	ss.mu.Unlock()
	if b != nil {
		if err := s.commit(b, nil, time.Time{}, nil); err != nil {
			s.log.Error("mqtt engine: retained messages for a new subscription were not stored", "client", ss.id, "err", err)
		}
	}
	s.reportDrops(ss.id, drops)
}

// Publish publishes m as the server: no MayPublish, no publisher (so No
// Local never applies). The topic must be a valid topic name. m's payload
// and Props are kept as they are (sessions share them): do not change them
// after.
func (s *Server) Publish(m Message) error {
	if err := packet.ValidTopicName(m.Topic); err != nil {
		return fmt.Errorf("mqtt engine: publish: %w", err)
	}
	if m.QoS > 2 {
		return fmt.Errorf("mqtt engine: publish: QoS %d", m.QoS)
	}
	now := time.Now()
	msg := &Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Props: m.Props}
	msg.setExpiry(now)
	if _, err := s.route(msg, now, nil); err != nil {
		return fmt.Errorf("mqtt engine: publish: %w", err)
	}
	return nil
}

// Subscribe calls h with every message published on a topic matching filter
// (shared filters included), until the returned function is called. h runs
// on the publisher's goroutine with no engine lock held: it must not block
// (it may publish). The message is shared and must not be changed; it may
// be kept.
func (s *Server) Subscribe(filter string, h func(*Message)) (unsubscribe func(), err error) {
	if err := packet.ValidTopicFilter(filter); err != nil {
		return nil, fmt.Errorf("mqtt engine: subscribe: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.nextHandler++
	id := handlerPrefix + strconv.FormatUint(s.nextHandler, 10)
	s.handlers[id] = h
	s.mu.Unlock()
	s.router.Subscribe(id, filter, subs.Options{QoS: 2})
	var once sync.Once
	return func() {
		once.Do(func() {
			s.router.RemoveClient(id)
			s.mu.Lock()
			delete(s.handlers, id)
			s.mu.Unlock()
		})
	}, nil
}

// SubscribeClient subscribes clientID's session, online or offline, as if
// it had sent SUBSCRIBE (retained messages included), without MaySubscribe:
// the caller decides. Filters must be valid.
func (s *Server) SubscribeClient(clientID string, list []subs.Subscription) error {
	for _, sub := range list {
		if err := packet.ValidTopicFilter(sub.Filter); err != nil {
			return fmt.Errorf("mqtt engine: subscribe %s: %w", clientID, err)
		}
	}
	s.mu.RLock()
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return fmt.Errorf("mqtt engine: subscribe %s: %w", clientID, ErrNoSession)
	}
	for _, sub := range list {
		_, _, shared := packet.ParseShared(sub.Filter)
		if s.subscribe(ss, sub.Filter, sub.Options, shared) {
			s.enqueueAll(ss, nil, nil, s.retainedFor(ss, sub.Filter, sub.Options))
		}
	}
	return nil
}

// Kick ends clientID's connection (MQTT 5: DISCONNECT 0x98 with reason);
// its session stays as its expiry says. It reports whether it was
// connected.
func (s *Server) Kick(clientID, reason string) bool {
	s.mu.RLock()
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	c := ss.conn
	if c == nil || c.closing {
		return false
	}
	c.abortLocked(packet.AdministrativeAction, reason, EndKicked)
	return true
}

// Connected reports whether clientID has a connection now.
func (s *Server) Connected(clientID string) bool {
	s.mu.RLock()
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.conn != nil && !ss.conn.closing
}

// SessionInfo describes a session.
type SessionInfo struct {
	ClientID  string
	Connected bool
	Client    *Client // the last connection's
	Queued    int
	Inflight  int
	Filters   []string
}

// SessionByID describes clientID's session; false when it has none.
func (s *Server) SessionByID(clientID string) (SessionInfo, bool) {
	s.mu.RLock()
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return SessionInfo{}, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	in := SessionInfo{ClientID: clientID, Connected: ss.conn != nil && !ss.conn.closing, Client: ss.client,
		Queued: ss.queued(), Inflight: len(ss.inflight)}
	for _, sub := range ss.subs {
		in.Filters = append(in.Filters, sub.Filter)
	}
	return in, true
}

// Close stops the listeners, ends every connection (MQTT 5: DISCONNECT
// 0x8B) and waits for their goroutines, or until ctx ends, when it closes
// what remains at once. Sessions are not ended and wills not published.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if ss := c.sess; ss != nil {
			ss.mu.Lock()
			c.abortLocked(packet.ServerShuttingDown, "", EndShutdown)
			ss.mu.Unlock()
		} else {
			c.closeNC()
		}
	}
	for _, ss := range s.sessions {
		ss.mu.Lock()
		ss.stopTimersLocked()
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.poll.close() // no connection is left to park
		if s.dur != nil {
			s.dur.close() // the acknowledgements received are written
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.closeNC()
	}
	s.mu.Unlock()
	<-done
	return fmt.Errorf("mqtt engine: close: %w", ctx.Err())
}
