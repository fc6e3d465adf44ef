package engine

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// maxBatch bounds the bytes one writer iteration encodes before writing.
const maxBatch = 64 << 10

// closeGrace bounds the writes to a connection being ended (its DISCONNECT),
// so that a client that does not read delays no takeover, kick or shutdown.
const closeGrace = time.Second

// conn is one network connection. Its reader goroutine owns the fields
// above the line; the fields below are guarded by sess.mu once the
// connection is attached to a session.
type conn struct {
	srv      *Server
	nc       net.Conn
	raw      syscall.RawConn // nc's socket when nc is a bare one (directSocket): kicks write it at once
	listener string
	b        [8]byte // a packet's first bytes, read without a buffer by waitFirst: b[br:bn] not yet taken
	br, bn   uint8
	noPark   bool // no socket under nc, or a wrapper that may not park
	parkSeen bool // noPark (and parkQuickOK) was decided (before the first short wait)

	version packet.Version
	busy    uint8  // packets in a row that came close together (setKeepAlive), up to busyReads
	woken   uint8  // packets counted down since the poller resumed the connection (wokenWaits)
	park    uint8  // parkQuickOK, parkQuickNext (in the padding before expiry0)
	expiry0 uint32 // the session expiry the CONNECT gave (beside the bytes above: no padding)
	// routing is 1 while the reader routes a QoS 1 or 2 PUBLISH of this
	// connection: a delivery to it meanwhile does not start the writer,
	// the ack that follows does, so both go out in one write (a device's
	// shadow update and its update/accepted). A writer already running
	// writes what it finds (holding it back too starved the deliveries of
	// a connection publishing back to back). Cleared under sess.mu. (In
	// the padding after expiry0.)
	routing   atomic.Uint32
	client    *Client
	keepAlive time.Duration
	aliasIn   *[]string // topic aliases the client set; index = alias (a pointer: most clients set none)
	sess      *session  // set once, under Server.mu and sess.mu

	// Client's limits, fixed at CONNECT.
	window      int    // outbound in-flight bound
	maxPacket   int    // 0: none
	aliasOutMax uint16 // aliases the client accepts
	// noProblemInfo: the client asked for no reason strings except on
	// PUBLISH, CONNACK and DISCONNECT (MQTT 5 3.1.2.11.7).
	noProblemInfo bool

	endReported atomic.Bool // SessionEnded was called
	aborting    atomic.Bool // set by abortLocked: the reader handles no more packets
	ncClosed    atomic.Bool // closeNC began: never park
	kaDeadline  int64       // keep-alive deadline of the next packet, Unix ns; 0: none
	last        int64       // when the last packet (or the CONNECT) came, Unix ns (setKeepAlive)
	rdDeadline  int64       // the socket's read deadline as last set, Unix ns; 0: none
	rb          *readBuf    // bytes read and not yet taken; borrowed only while there are
	parkToken   uint64      // the poller's key while parked; guarded by the poller's mu
	parking     parkState   // the poller's, guarded by its mu (Linux: park_linux.go)

	// Guarded by sess.mu.
	ctrl      []byte // encoded control packets to write before messages
	writing   bool   // a writer goroutine runs
	started   bool   // SessionStarted has returned: the writer may start
	closing   bool   // no more messages; close after ctrl is written
	endReason EndReason
	aborted   bool // endReason was set by abort
	will      *packet.Will
	aliasOut  map[string]uint16
	// startWait, made by a takeover of a connection not yet started, is
	// closed once it is: the new connection reports this one's end only
	// then, so that hooks never see a connection end before it started.
	startWait chan struct{}
}

// lingerClose closes a connection refused for a packet it sent, once its
// DISCONNECT is written: it shuts its side down and reads and drops what
// the client still sends (the rest of a packet over the maximum size), for
// at most closeGrace and lingerMax bytes, before closing. Closed with
// bytes unread, the socket would answer them with a reset, which can
// destroy the DISCONNECT before the client reads it. The reader has ended.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
		_, _ = io.CopyN(io.Discard, c.nc, lingerMax)
	}
	c.closeNC()
}

// lingerMax bounds what lingerClose reads.
const lingerMax = 4 << 20

// appendCtrlLocked queues a control packet and starts the writer. A client
// that lets control packets pile up past the bound is aborted. Requires
// sess.mu.
func (c *conn) appendCtrlLocked(p packet.Packet) {
	if c.closing {
		return
	}
	var err error
	c.ctrl, err = p.Append(c.ctrl, c.version)
	c.ctrlAppendedLocked(p.Type(), err)
}

// appendPubackLocked is appendCtrlLocked for a PUBACK, which the
// packet.Packet interface would move to the heap: one a QoS 1 PUBLISH.
func (c *conn) appendPubackLocked(ack packet.Ack) {
	if c.closing {
		return
	}
	p := packet.Puback{Ack: ack}
	var err error
	c.ctrl, err = p.Append(c.ctrl, c.version)
	c.ctrlAppendedLocked(packet.TypePuback, err)
}

// ctrlAppendedLocked follows a control packet's encoding into c.ctrl: a
// failure logged, a client holding too many refused, the writer kicked.
func (c *conn) ctrlAppendedLocked(t packet.Type, err error) {
	if err != nil {
		c.srv.log.Error("mqtt engine: encoding a control packet", "type", t.String(), "err", err)
	}
	if len(c.ctrl) > c.srv.opts.MaxControlBytes {
		c.ctrl = c.ctrl[:0]
		c.abortLocked(packet.UnspecifiedError, "", EndSlowConsumer)
		return
	}
	c.kickLocked()
}

// kickLocked starts the writer unless one runs or SessionStarted has not
// returned yet (the CONNACK waits for it). Requires sess.mu.
//
// On a bare socket the kicking goroutine (a publisher's reader, routing)
// first writes what there is itself, without waiting (writeNowLocked), as
// a single-threaded broker does: a writer goroutine starts only for what
// the socket did not take at once or what is left, so that a delivery
// costs no goroutine handed between threads, and a subscriber that does
// not read never holds up the goroutine that kicked it.
func (c *conn) kickLocked() {
	if !c.claimWriterLocked() {
		return
	}
	if c.raw == nil || c.closing {
		go c.flush()
		return
	}
	c.writeNowLocked()
}

// writeNowLocked is kickLocked's first write: control packets, then the
// messages the window allows, encoded and written at once without
// waiting. The writer is released when all of it was written and nothing
// is left; otherwise a writer goroutine goes on from where the socket
// stopped. Requires sess.mu and the writer claimed.
func (c *conn) writeNowLocked() {
	s := c.sess
	bp := c.srv.writeBuf()
	buf := append((*bp)[:0], c.ctrl...)
	c.ctrl = c.ctrl[:0]
	var drops []DropReason
	buf, drops = s.fillLocked(c, buf, time.Now(), drops)
	*bp = buf
	if len(drops) > 0 {
		// Counted now, as the writer goroutine would before its write;
		// logged and told to OnDrop off sess.mu.
		ns := make([]uint64, len(drops))
		for i, r := range drops {
			ns[i] = c.srv.count.drops[r].Add(1)
		}
		go func(id string) {
			for i, r := range drops {
				c.srv.tellDrop(id, r, ns[i])
			}
		}(s.id)
	}
	n := 0
	if len(buf) > 0 {
		var err error
		n, err = writeNow(&c.srv.nowWriters, c.raw, buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// An earlier writer's deadline, passed since: not the socket's.
			_ = c.nc.SetWriteDeadline(time.Time{})
			n, err = writeNow(&c.srv.nowWriters, c.raw, buf)
		}
		if err != nil {
			n = 0 // the writer goroutine meets the error and ends the connection
		}
	}
	if n == len(buf) && len(c.ctrl) == 0 && !s.sendable(c) {
		c.writing = false
		c.ctrl = nil
		c.srv.putWriteBuf(bp)
		c.srv.wg.Done()
		return
	}
	go c.flushFrom(bp, buf[n:])
}

// writeBuf takes a write buffer from the server's pool.
func (s *Server) writeBuf() *[]byte {
	if bp, _ := s.writeBufs.Get().(*[]byte); bp != nil {
		return bp
	}
	b := make([]byte, 0, 4096)
	return &b
}

// putWriteBuf gives bp back to the pool, unless it grew large.
func (s *Server) putWriteBuf(bp *[]byte) {
	if cap(*bp) <= 256<<10 {
		*bp = (*bp)[:0]
		s.writeBufs.Put(bp)
	}
}

// claimWriterLocked says whether there is something to write and no
// writer: the caller then runs flush (marked writing, counted in the
// server's wait group). Requires sess.mu.
func (c *conn) claimWriterLocked() bool {
	if c.writing || !c.started {
		return false
	}
	if len(c.ctrl) == 0 && (c.closing || !c.sess.sendable(c)) {
		return false
	}
	if c.routing.Load() != 0 {
		return false // the ack of the publish being routed starts it
	}
	c.writing = true
	c.srv.wg.Add(1)
	return true
}

// sendable says whether the queue's head can be written now. Requires mu.
func (s *session) sendable(c *conn) bool {
	if s.unsent > 0 {
		return len(s.inflight)-int(s.unsent) < c.window
	}
	if s.queued() == 0 {
		return false
	}
	return s.queue[s.qhead].qos == 0 || len(s.inflight) < c.window
}

// abortLocked ends the connection: MQTT 5 clients are sent DISCONNECT with
// code (never 3.1.1 ones), then the network connection is closed, which
// ends the reader. Requires sess.mu.
func (c *conn) abortLocked(code packet.ReasonCode, reason string, r EndReason) {
	if c.closing {
		return
	}
	if c.version == packet.V5 {
		d := packet.Disconnect{ReasonCode: code}
		d.Properties.ReasonString = reason
		c.ctrl, _ = d.Append(c.ctrl, c.version)
	}
	c.closing, c.aborted, c.endReason = true, true, r
	c.aborting.Store(true)
	if c.writing {
		_ = c.nc.SetWriteDeadline(time.Now().Add(closeGrace))
		return
	}
	if len(c.ctrl) == 0 {
		c.closeNC()
		return
	}
	c.writing = true
	c.srv.wg.Add(1)
	go c.flush()
}

// flush is the writer: it writes control packets, then the messages the
// window allows, until there is nothing left, and exits. When the
// connection is closing it closes it once the control packets are out.
func (c *conn) flush() { c.flushFrom(c.srv.writeBuf(), nil) }

// flushFrom is flush writing pending (bytes of *bp) first.
func (c *conn) flushFrom(bp *[]byte, pending []byte) {
	defer c.srv.wg.Done()
	c.srv.count.writers.Add(1)
	s := c.sess
	defer func() { c.srv.putWriteBuf(bp) }()
	var drops []DropReason
	for {
		if len(pending) > 0 {
			buf := pending
			pending = nil
			s.mu.Lock()
			closing := c.closing
			s.mu.Unlock()
			if !c.write(buf, closing) {
				return
			}
			continue
		}
		s.mu.Lock()
		buf := append((*bp)[:0], c.ctrl...)
		c.ctrl = c.ctrl[:0]
		if !c.closing {
			buf, drops = s.fillLocked(c, buf, time.Now(), drops[:0])
		}
		*bp = buf
		closing := c.closing
		if len(buf) == 0 {
			c.writing = false
			c.ctrl = nil
			// Refused for what it sent, an MQTT 5 client was told why.
			refused := c.aborted && c.endReason == EndProtocolError && c.version == packet.V5
			s.mu.Unlock()
			c.srv.reportDrops(s.id, drops)
			switch {
			case closing && refused:
				c.lingerClose()
			case closing:
				c.closeNC()
			}
			return
		}
		s.mu.Unlock()
		c.srv.reportDrops(s.id, drops)
		drops = drops[:0]
		if !c.write(buf, closing) {
			return
		}
	}
}

// write is the writer's write of buf, bounded by the write timeout (by
// closeGrace when closing). A write that fails ends the connection and
// the writer: it then says false.
func (c *conn) write(buf []byte, closing bool) bool {
	timeout := c.srv.opts.WriteTimeout
	if closing {
		timeout = closeGrace
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.nc.Write(buf)
	if err == nil {
		return true
	}
	s := c.sess
	s.mu.Lock()
	if !c.closing {
		// A write that timed out is a client that stopped reading; any
		// other error, a connection already gone.
		r := EndClosed
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			r = EndSlowConsumer
		}
		c.closing, c.aborted, c.endReason = true, true, r
		c.aborting.Store(true)
	}
	c.writing = false
	c.ctrl = nil
	s.mu.Unlock()
	c.closeNC()
	return false
}

// fillLocked encodes queued messages into buf while the window allows, and
// moves QoS 1 and 2 ones into the in-flight window. Requires mu.
func (s *session) fillLocked(c *conn, buf []byte, now time.Time, drops []DropReason) ([]byte, []DropReason) {
	buf = s.resendUnsentLocked(c, buf, now)
	for s.queued() > 0 && len(buf) < maxBatch {
		d := s.queue[s.qhead]
		rem, has, ok := d.msg.remaining(now)
		if !ok {
			s.popLocked()
			s.doneLocked(c.srv, &d)
			drops = append(drops, DropExpired)
			continue
		}
		if d.qos > 0 && len(s.inflight) >= c.window {
			break
		}
		p := publishOf(&d, rem, has)
		if d.qos > 0 {
			p.PacketID = s.freeIDLocked()
		}
		var newAlias bool
		if c.aliasOutMax > 0 {
			if a, ok := c.aliasOut[p.Topic]; ok {
				p.Properties.TopicAlias, p.Topic = a, ""
			} else if len(c.aliasOut) < int(c.aliasOutMax) {
				if c.aliasOut == nil {
					c.aliasOut = make(map[string]uint16)
				}
				a := uint16(len(c.aliasOut) + 1)
				c.aliasOut[p.Topic] = a
				p.Properties.TopicAlias, newAlias = a, true
			}
		}
		start := len(buf)
		var err error
		buf, err = p.Append(buf, c.version)
		if err != nil || (c.maxPacket > 0 && len(buf)-start > c.maxPacket) {
			buf = buf[:start]
			if newAlias {
				delete(c.aliasOut, d.msg.Topic)
			}
			s.popLocked()
			s.doneLocked(c.srv, &d)
			drops = append(drops, DropTooLarge)
			continue
		}
		s.popLocked()
		if d.qos > 0 {
			s.inflight = append(s.inflight, outbound{id: p.PacketID, d: d})
			if d.seq != 0 {
				c.srv.dur.transition(s.id, &d, persist.Sent, p.PacketID)
			}
		}
		c.srv.count.sent.Add(1)
	}
	return buf, drops
}

// doneLocked deletes a stored message whose delivery is over. Requires mu.
func (s *session) doneLocked(srv *Server, d *delivery) {
	if d.seq != 0 {
		srv.dur.transition(s.id, d, persist.Done, 0)
	}
}

// publishOf is the PUBLISH of a delivery, without packet id or alias.
func publishOf(d *delivery, rem uint32, hasExpiry bool) *packet.Publish {
	p := &packet.Publish{QoS: d.qos, Retain: d.retain, Topic: d.msg.Topic,
		Properties: d.msg.Props.properties(), Payload: d.msg.Payload}
	p.Properties.MessageExpiry = nil
	if hasExpiry {
		p.Properties.MessageExpiry = &rem
	}
	p.Properties.SubscriptionIDs = d.subIDs
	return p
}

// resendLocked queues, after the CONNACK, the in-flight window of a resumed
// session in its original order: PUBLISH with DUP for those not yet
// acknowledged, PUBREL for those awaiting PUBCOMP. The new connection's
// Receive Maximum may be smaller than the window: the PUBLISHes past it
// are marked unsent and resent (same id, DUP) as acknowledgements return
// quota, before any queued message. Requires mu.
func (s *session) resendLocked(c *conn, now time.Time) {
	s.unsent = 0
	for i := range s.inflight {
		o := &s.inflight[i]
		o.unsent = false
		if o.rel {
			c.appendCtrlLocked(&packet.Pubrel{Ack: packet.Ack{PacketID: o.id}})
			continue
		}
		if i >= c.window {
			o.unsent = true
			s.unsent++
			continue
		}
		c.appendCtrlLocked(dupOf(o, now))
	}
}

// resendUnsentLocked encodes into buf the unsent in-flight PUBLISHes the
// window has room for, in order. Requires mu.
func (s *session) resendUnsentLocked(c *conn, buf []byte, now time.Time) []byte {
	for i := 0; s.unsent > 0 && i < len(s.inflight) && len(s.inflight)-int(s.unsent) < c.window; i++ {
		o := &s.inflight[i]
		if !o.unsent {
			continue
		}
		o.unsent = false
		s.unsent--
		var err error
		if buf, err = dupOf(o, now).Append(buf, c.version); err != nil {
			c.srv.log.Error("mqtt engine: encoding a resent PUBLISH", "err", err)
		}
	}
	return buf
}

// dupOf is the resend of an in-flight PUBLISH: its id, DUP set.
func dupOf(o *outbound, now time.Time) *packet.Publish {
	rem, has, _ := o.d.msg.remaining(now)
	p := publishOf(&o.d, rem, has)
	p.PacketID, p.Dup = o.id, true
	return p
}

// readLoop reads and handles packets until the connection ends, and says
// why it ended; parked says its goroutine must return, the connection
// living on in the poller.
func (c *conn) readLoop() (r EndReason, parked bool) {
	r, parked = c.readPackets()
	if !parked {
		// A parked connection holds no buffer, and is no longer this
		// goroutine's: a new reader may have it already.
		c.releaseBuf()
	}
	return r, parked
}

func (c *conn) readPackets() (r EndReason, parked bool) {
	limit := c.srv.opts.MaxPacketSize
	// A PUBLISH is decoded into pub, the packet handled before the next
	// is read (nothing keeps it: routed messages copy what they need).
	pub, _ := c.srv.pubs.Get().(*packet.Publish)
	if pub == nil {
		pub = new(packet.Publish)
	}
	defer func() {
		*pub = packet.Publish{} // its topic and payload go with it
		c.srv.pubs.Put(pub)
	}()
	for {
		err := c.waitFirst()
		if err == errParked {
			return 0, true
		}
		var p packet.Packet
		begun := false
		if err == nil {
			begun = true
			p, err = packet.ReadInto(c, c.version, limit, pub)
		}
		if err != nil {
			return c.readFailed(err, begun), false
		}
		c.srv.count.received.Add(1)
		if c.aborting.Load() {
			// Taken over, kicked or shut down while this packet came in:
			// the session is no longer this connection's to act on.
			return c.readFailed(net.ErrClosed, false), false
		}
		if r, done := c.handle(p); done {
			return r, false
		}
		c.setKeepAlive()
	}
}

// readFailed ends the connection after a read error; begun says a packet
// had begun to come (its timeout may be Options.PacketTimeout's).
func (c *conn) readFailed(err error, begun bool) EndReason {
	s := c.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.aborted {
		return c.endReason
	}
	var ne net.Error
	var pe *packet.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout() && begun && c.park&packetTimed != 0:
		c.abortLocked(packet.KeepAliveTimeout, "packet not complete within the packet timeout", EndPacketTimeout)
		return EndPacketTimeout
	case errors.As(err, &ne) && ne.Timeout():
		c.abortLocked(packet.KeepAliveTimeout, "keep alive timeout", EndKeepAlive)
		return EndKeepAlive
	case errors.As(err, &pe):
		c.abortLocked(pe.Code, "", EndProtocolError)
		return EndProtocolError
	}
	return EndClosed
}

// fail aborts the connection for a packet the client must not send.
func (c *conn) fail(code packet.ReasonCode, reason string) (EndReason, bool) {
	s := c.sess
	s.mu.Lock()
	c.abortLocked(code, reason, EndProtocolError)
	r := c.endReason
	s.mu.Unlock()
	return r, true
}

// handle acts on one packet; done says the connection ends.
func (c *conn) handle(p packet.Packet) (EndReason, bool) {
	switch p := p.(type) {
	case *packet.Publish:
		return c.onPublish(p)
	case *packet.Puback:
		c.onAck(packet.TypePuback, p.PacketID, p.ReasonCode)
	case *packet.Pubrec:
		c.onAck(packet.TypePubrec, p.PacketID, p.ReasonCode)
	case *packet.Pubcomp:
		c.onAck(packet.TypePubcomp, p.PacketID, p.ReasonCode)
	case *packet.Pubrel:
		c.onPubrel(p.PacketID)
	case *packet.Subscribe:
		return c.onSubscribe(p)
	case *packet.Unsubscribe:
		c.onUnsubscribe(p)
	case *packet.Pingreq:
		c.sess.mu.Lock()
		c.appendCtrlLocked(&packet.Pingresp{})
		c.sess.mu.Unlock()
	case *packet.Disconnect:
		return c.onDisconnect(p)
	default:
		c.srv.log.Debug("mqtt engine: protocol error, connection closed", "clientId", c.client.ID,
			"type", p.Type().String(), "reason", "packet not expected from a client")
		return c.fail(packet.ProtocolError, p.Type().String()+" not expected from a client")
	}
	return 0, false
}

func (c *conn) onDisconnect(p *packet.Disconnect) (EndReason, bool) {
	s := c.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := p.Properties.SessionExpiry; e != nil && c.version == packet.V5 {
		if c.expiry0 == 0 && *e != 0 {
			c.abortLocked(packet.ProtocolError, "session expiry set on DISCONNECT after 0 on CONNECT", EndProtocolError)
			return EndProtocolError, true
		}
		s.expiry = c.srv.capExpiry(*e)
	}
	r := EndNormal
	if p.ReasonCode != packet.Success {
		r = EndWithWill
	} else {
		c.will = nil
	}
	c.closing, c.aborted, c.endReason = true, true, r
	return r, true
}

// onAck handles PUBACK, PUBREC and PUBCOMP: an acknowledgement returns send
// quota, a PUBREC is answered PUBREL (0x92 when the id is not in flight), and
// a PUBREC with a failure code ends the exchange as a PUBACK does.
func (c *conn) onAck(t packet.Type, id uint16, code packet.ReasonCode) {
	s := c.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.inflightIndex(id)
	switch t {
	case packet.TypePuback:
		if k < 0 || s.inflight[k].d.qos != 1 {
			return
		}
	case packet.TypePubrec:
		switch {
		case k < 0:
			c.appendCtrlLocked(&packet.Pubrel{Ack: packet.Ack{PacketID: id, ReasonCode: packet.PacketIdentifierNotFound}})
			return
		case s.inflight[k].d.qos != 2:
			return
		case code < 0x80:
			s.inflight[k].rel = true
			if s.inflight[k].unsent { // received on an earlier connection
				s.inflight[k].unsent = false
				s.unsent--
			}
			if d := &s.inflight[k].d; d.seq != 0 {
				c.srv.dur.transition(s.id, d, persist.Received, id)
			}
			c.appendCtrlLocked(&packet.Pubrel{Ack: packet.Ack{PacketID: id}})
			return
		}
	case packet.TypePubcomp:
		if k < 0 || !s.inflight[k].rel {
			return
		}
	}
	s.doneLocked(c.srv, &s.inflight[k].d)
	s.ackLocked(k)
	c.kickLocked()
}

func (c *conn) onPubrel(id uint16) {
	s := c.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	code := packet.Success
	if _, ok := s.inQoS2[id]; ok {
		delete(s.inQoS2, id)
		if len(s.inQoS2) == 0 {
			s.inQoS2 = nil
		}
		if s.stored {
			c.srv.dur.push(pendingOp{t: persist.Transition{ClientID: s.id, PacketID: id}, rmInbound: true})
		}
	} else {
		code = packet.PacketIdentifierNotFound
	}
	c.appendCtrlLocked(&packet.Pubcomp{Ack: packet.Ack{PacketID: id, ReasonCode: code}})
}

func (c *conn) onPublish(p *packet.Publish) (EndReason, bool) {
	srv, s := c.srv, c.sess
	topic := p.Topic
	if a := p.Properties.TopicAlias; a != 0 {
		if int(a) > srv.opts.TopicAliasMaximum {
			return c.fail(packet.TopicAliasInvalid, "topic alias above the maximum")
		}
		if c.aliasIn == nil {
			in := make([]string, srv.opts.TopicAliasMaximum+1)
			c.aliasIn = &in
		}
		if topic != "" {
			(*c.aliasIn)[a] = topic
		} else if topic = (*c.aliasIn)[a]; topic == "" {
			return c.fail(packet.ProtocolError, "unknown topic alias")
		}
	}
	if topic == "" {
		return c.fail(packet.ProtocolError, "PUBLISH without a topic")
	}
	if p.QoS == 2 {
		s.mu.Lock()
		_, dup := s.inQoS2[p.PacketID]
		switch {
		case dup:
			c.appendCtrlLocked(&packet.Pubrec{Ack: packet.Ack{PacketID: p.PacketID}})
			s.mu.Unlock()
			return 0, false
		case len(s.inQoS2) >= int(srv.opts.ReceiveMaximum):
			c.abortLocked(packet.ReceiveMaximumExceeded, "receive maximum exceeded", EndProtocolError)
			s.mu.Unlock()
			return EndProtocolError, true
		}
		if s.inQoS2 == nil {
			s.inQoS2 = make(map[uint16]struct{})
		}
		s.inQoS2[p.PacketID] = struct{}{}
		s.mu.Unlock()
	}
	code, reason := packet.Success, ""
	if srv.hooks.MayPublish(c.client, topic) {
		now := time.Now()
		m := newMessage(p, topic, c.client.ID, now)
		var in *persist.Inbound
		if p.QoS == 2 && srv.dur != nil && srv.isStored(s) {
			in = &persist.Inbound{ClientID: s.id, PacketID: p.PacketID}
		}
		if p.QoS > 0 {
			c.routing.Store(1)
		}
		n, err := srv.route(m, now, in)
		switch {
		case err != nil && p.QoS > 0:
			srv.log.Error("mqtt engine: a message was not stored: not acknowledged", "client", c.client.ID, "err", err)
			if c.version != packet.V5 {
				// 3.1.1 has no failure PUBACK: the client resends on
				// reconnecting.
				c.routing.Store(0)
				return c.fail(packet.UnspecifiedError, "")
			}
			code = packet.UnspecifiedError
			if !c.noProblemInfo {
				reason = "the message could not be stored"
			}
		case n == 0:
			code = packet.NoMatchingSubscribers
		}
	} else if c.version == packet.V5 {
		code = packet.NotAuthorized
		if !c.noProblemInfo {
			reason = "not authorized to publish on this topic"
		}
	}
	if p.QoS == 0 {
		return 0, false
	}
	ack := packet.Ack{PacketID: p.PacketID, ReasonCode: code}
	ack.Properties.ReasonString = reason
	s.mu.Lock()
	c.routing.Store(0) // what was delivered meanwhile goes out with the ack
	if p.QoS == 1 {
		c.appendPubackLocked(ack)
	} else {
		if code >= 0x80 {
			delete(s.inQoS2, p.PacketID)
		}
		c.appendCtrlLocked(&packet.Pubrec{Ack: ack})
	}
	s.mu.Unlock()
	return 0, false
}

func (c *conn) onSubscribe(p *packet.Subscribe) (EndReason, bool) {
	srv, s := c.srv, c.sess
	codes := make([]packet.ReasonCode, len(p.Subscriptions))
	var subID uint32
	if ids := p.Properties.SubscriptionIDs; len(ids) > 0 {
		subID = ids[0]
	}
	refused := packet.ReasonCode(0x80)
	var retained []subs.Subscription
	sh, _ := srv.hooks.(SubscriptionHooks)
	var granted []string
	for i, sub := range p.Subscriptions {
		if err := packet.ValidTopicFilter(sub.Filter); err != nil {
			codes[i] = packet.TopicFilterInvalid
			if c.version != packet.V5 {
				codes[i] = refused
			}
			continue
		}
		_, inner, shared := packet.ParseShared(sub.Filter)
		if shared && sub.NoLocal {
			return c.fail(packet.ProtocolError, "no local on a shared subscription")
		}
		if !srv.hooks.MaySubscribe(c.client, inner) {
			codes[i] = packet.NotAuthorized
			if c.version != packet.V5 {
				codes[i] = refused
			}
			continue
		}
		o := subs.Options{QoS: min(sub.QoS, 2), NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling, SubscriptionID: subID}
		if sh != nil {
			o = sh.SubscriptionOptions(c.client, sub.Filter, o)
		}
		if srv.subscribe(s, sub.Filter, o, shared) {
			retained = append(retained, subs.Subscription{Filter: sub.Filter, Options: o})
		}
		codes[i] = packet.ReasonCode(o.QoS)
		if sh != nil {
			granted = append(granted, sub.Filter)
		}
	}
	var ds []delivery
	for _, r := range retained {
		ds = append(ds, srv.retainedFor(s, r.Filter, r.Options)...)
	}
	ack := &packet.Suback{PacketID: p.PacketID, ReasonCodes: codes}
	if c.version == packet.V5 && !c.noProblemInfo {
		for _, code := range codes {
			if code >= 0x80 {
				ack.Properties.ReasonString = "some filters were refused: invalid or not authorized"
				break
			}
		}
	}
	srv.enqueueAll(s, c, ack, ds)
	if len(granted) > 0 {
		sh.Subscribed(c.client, granted)
	}
	return 0, false
}

func (c *conn) onUnsubscribe(p *packet.Unsubscribe) {
	srv, s := c.srv, c.sess
	var codes []packet.ReasonCode
	if c.version == packet.V5 {
		codes = make([]packet.ReasonCode, len(p.Filters))
	}
	for i, f := range p.Filters {
		ok := srv.router.Unsubscribe(s.id, f)
		s.mu.Lock()
		s.removeSubLocked(f)
		s.mu.Unlock()
		srv.storeUnsubscribe(s, f)
		if !ok && codes != nil {
			codes[i] = packet.NoSubscriptionExisted
		}
	}
	s.mu.Lock()
	c.appendCtrlLocked(&packet.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
	s.mu.Unlock()
}
