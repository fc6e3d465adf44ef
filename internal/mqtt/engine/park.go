package engine

import (
	"errors"
	"net"
	"time"
)

// errParked ends a read loop whose connection was parked: its goroutine
// returns and the poller starts a new one when the connection is readable.
var errParked = errors.New("mqtt engine: connection parked")

// Unbuffered is implemented by a connection wrapper whose Read returns
// what the connection under it (NetConn) holds and keeps nothing back
// (ReadsThrough returns true). Under such wrappers only, down to a bare
// socket, a connection may be parked without a timed-out read first (a
// quick park): the kernel sees every byte that waits for it.
type Unbuffered interface {
	ReadsThrough() bool
}

// WritesThrough is implemented by a connection wrapper whose Write is
// the connection's under it (NetConn), unchanged, and which needs to see
// no write (WritesThrough returns true). Under such wrappers only, down to
// a bare socket, the goroutine that routes a message to the connection
// writes it to the socket at once (writeNow), as on a bare one, rather
// than starting a writer goroutine for it.
type WritesThrough interface {
	WritesThrough() bool
}

// Bits of conn.park.
const (
	// parkQuickOK: the connection may park at once (quickParkable),
	// decided with conn.noPark.
	parkQuickOK = 1 << iota
	// parkQuickNext: the packet just read came after a silence of at
	// least half of Options.ParkIdle (setKeepAlive): a connection that
	// speaks now and then (a device reporting every second or every
	// minute) parks as soon as it has read it, rather than holding its
	// reader (and a timer) for ParkIdle first and being woken by the
	// timer to park; its next packet finds a kept reader whose stack has
	// grown already (park_linux.go). One that speaks more often waits
	// ParkIdle as before.
	parkQuickNext
	// parkInEpoll: the connection's socket is in the poller's epoll set
	// (Linux), disarmed since its last resume (one-shot): its next park
	// re-arms it rather than adding it again, and a resume leaves it
	// there, so that a park and resume cost one epoll_ctl, not two. The
	// kernel drops it from the set when the socket is closed.
	parkInEpoll
	// parkReadable: the poller resumed the connection for an event on
	// its socket (readable, or closed): its next read returns at once,
	// so its wait sets no ParkIdle deadline. A device that parks between
	// packets (parkQuickNext) then moves no timer for them: it was one
	// set and one cleared a packet.
	parkReadable
	// packetTimed: the read deadline of the packet begun is
	// Options.PacketTimeout's, sooner than the keep-alive one
	// (setPacketDeadline): its timeout is EndPacketTimeout, not
	// EndKeepAlive. Not a park bit: it shares the byte.
	packetTimed
)

// quickParkable says whether nc may be parked without a read that timed
// out: a bare TCP or Unix socket, or one under Unbuffered wrappers only.
func quickParkable(nc net.Conn) bool {
	for x := range layers(nc) {
		switch t := x.(type) {
		case *net.TCPConn, *net.UnixConn:
			return true
		case Unbuffered:
			if !t.ReadsThrough() {
				return false
			}
		default:
			return false
		}
	}
	return false
}

// Parkable is implemented by a connection wrapper that must never be
// parked (Parkable returns false): one whose Read, having timed out, cannot
// be resumed, or which holds unread bytes the kernel does not see (a
// WebSocket: a timed-out read breaks it). Other wrappers are looked through
// with NetConn() net.Conn down to the socket.
type Parkable interface {
	Parkable() bool
}

// closeNC closes the network connection, taking it out of the poller
// first: the parked reader must resume to end (the socket leaves the
// epoll set as it is closed).
func (c *conn) closeNC() {
	c.ncClosed.Store(true)
	c.srv.poll.unpark(c)
	c.nc.Close()
}

// setKeepAlive notes a packet's arrival: it starts the keep-alive wait
// for the next (1.5 × the keep alive from now, none without one), counts
// the packets that came within busyGap of the one before (busy) and marks
// one that came after a silence of at least half of Options.ParkIdle
// (parkQuickNext).
func (c *conn) setKeepAlive() {
	now := time.Now().UnixNano()
	gap := now - c.last
	if c.last != 0 && gap < int64(busyGap) {
		c.busy = min(c.busy+1, busyReads)
	} else {
		c.busy = 0
	}
	if c.last != 0 && gap >= int64(c.srv.opts.ParkIdle/2) {
		c.park |= parkQuickNext
	} else {
		c.park &^= parkQuickNext
	}
	c.last = now
	if c.keepAlive > 0 {
		c.kaDeadline = now + int64(c.keepAlive*3/2)
	}
}

// A connection the poller resumed after at least wokenAfterIdles ×
// Options.ParkIdle (10 s by default) without a packet takes the packet
// that woke it, then waits for the next at most wokenIdle before it parks
// again, rather than Options.ParkIdle: a device that sent a PINGREQ or a
// lone PUBLISH after a long silence holds a goroutine for milliseconds,
// so that a fleet whose pings come together
// (devices that connected together) does not hold a goroutine stack each
// for ParkIdle, a peak the runtime keeps as free heap long after. One that
// spoke more recently (a device publishing every second) waits ParkIdle as
// before rather than parking and resuming for every packet, and so does a
// connection that sent a second packet with the first or within wokenIdle.
// conn.woken counts the packets down from wokenWaits (set at resume) in
// waitFirst: 1 is the wait for the second.
const (
	wokenAfterIdles = 10
	wokenWaits      = 3
	wokenIdle       = 20 * time.Millisecond
)

// quietFor is how long before now c's last packet came (its CONNECT when
// none came since).
func (c *conn) quietFor(now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - c.last)
}

// A connection whose last busyReads packets each came within busyGap of
// the one before is busy: it waits for the next with a read buffer (held
// until it parks, at most Options.ParkIdle), taking packets in one read
// each rather than their first bytes (up to len(conn.b)) and then the
// rest.
const (
	busyReads = 8
	busyGap   = 10 * time.Millisecond
)

func (c *conn) keepAliveDeadline() time.Time {
	if c.kaDeadline == 0 {
		return time.Time{}
	}
	return time.Unix(0, c.kaDeadline)
}

// waitFirst waits for the first byte of a packet (in the read buffer, or
// in c.b for ReadByte) and leaves the keep-alive deadline, or
// Options.PacketTimeout's when sooner (setPacketDeadline), on the socket
// for the rest, unless the whole packet is buffered already. Bytes
// already buffered are that packet: no wait. Otherwise a busy connection
// (busyReads) waits with its buffer, so that one read takes the packet
// whole, as does one the poller resumed because bytes came; any other
// gives the buffer back (an idle connection holds none) and reads into
// c.b (up to 8 bytes: a small packet whole). Waiting
// longer than Options.ParkIdle (or wokenIdle) before the keep-alive
// deadline parks the connection (errParked). A timeout in the middle of a
// packet is not a park: only the first byte's wait may end early.
func (c *conn) waitFirst() error {
	ka := c.keepAliveDeadline()
	if c.woken > 0 {
		c.woken--
	}
	if !c.buffered() {
		if err := c.waitReadable(ka); err != nil {
			return err
		}
	}
	if !c.packetBuffered() {
		c.setPacketDeadline(ka)
	}
	return nil
}

// setPacketDeadline bounds the read of the rest of a packet begun: by the
// keep-alive deadline ka, or by Options.PacketTimeout from now when that
// is sooner (always, without a keep alive), so that a client stopping in
// the middle of a packet holds its reader and read buffer no longer. A
// deadline as set is kept while it is earlier than the bound by at most a
// quarter of it (deadlineLags): a connection whose packets span reads
// moves no timer for each.
func (c *conn) setPacketDeadline(ka time.Time) {
	t, slack := ka, c.keepAlive/4
	c.park &^= packetTimed
	pt := c.srv.opts.PacketTimeout
	if p := time.Now().Add(pt); ka.IsZero() || p.Before(ka) {
		t, slack = p, pt/4
		c.park |= packetTimed
	}
	if c.deadlineLags(t, slack) {
		c.setReadDeadline(t)
	}
}

// waitReadable waits until bytes come: in the read buffer (a busy
// connection that may park) or one in c.b.
func (c *conn) waitReadable(ka time.Time) error {
	if !c.parkSeen && c.srv.poll != nil {
		// Decided before any short wait: a wrapper that may not be parked
		// (a WebSocket) may not survive a read that timed out either.
		c.parkSeen, c.noPark = true, !canPark(c.nc)
		if !c.noPark && quickParkable(c.nc) {
			c.park |= parkQuickOK
		}
	}
	if c.park&parkReadable != 0 {
		// Bytes wait (or the peer hung up): one read into the borrowed
		// buffer takes them all, a packet longer than c.b whole too; the
		// buffer goes back when it is drained (a device's update cost a
		// read of its first bytes and a second of the rest).
		c.park &^= parkReadable
		if c.deadlineLags(ka, c.keepAlive/4) {
			c.setReadDeadline(ka)
		}
		return c.fill()
	}
	if c.park&(parkQuickOK|parkQuickNext) == parkQuickOK|parkQuickNext && c.srv.poll != nil {
		// Nothing is buffered here (waitFirst) nor under the wrappers.
		c.park &^= parkQuickNext
		c.releaseBuf()
		c.busy = 0
		if c.srv.poll.park(c, ka) {
			return errParked
		}
	}
	now := time.Now()
	idle := c.srv.opts.ParkIdle
	if c.woken == 1 {
		idle = min(idle, wokenIdle)
	}
	d := now.Add(idle)
	if c.srv.poll == nil || c.noPark || (!ka.IsZero() && !d.Before(ka)) {
		c.releaseBuf()
		c.setReadDeadline(ka)
		return c.readFirst()
	}
	// A wait that may park. A deadline set by an earlier wait is kept
	// while it is at least half of ParkIdle away: a busy connection then
	// moves no timer a packet.
	if dl := c.rdDeadline; dl < now.Add(idle/2).UnixNano() || dl > d.UnixNano() {
		c.setReadDeadline(d)
	}
	var err error
	if c.busy >= busyReads {
		err = c.fill()
	} else {
		c.releaseBuf()
		err = c.readFirst()
	}
	if err == nil {
		return nil
	}
	c.releaseBuf()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || (!ka.IsZero() && !time.Now().Before(ka)) {
		return err
	}
	c.busy = 0
	if c.srv.poll.park(c, ka) {
		return errParked
	}
	// Not parked (no socket under the connection, or it is closing): wait
	// as without parking.
	c.setReadDeadline(ka)
	return c.readFirst()
}
