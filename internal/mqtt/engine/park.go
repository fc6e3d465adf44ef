package engine

import (
	"errors"
	"net"
	"time"
)

// errParked ends a read loop whose connection was parked: its goroutine
// returns and the poller starts a new one when the connection is readable.
var errParked = errors.New("mqtt engine: connection parked")

// Parkable is implemented by a connection wrapper that must never be
// parked (Parkable returns false): one whose Read, having timed out, cannot
// be resumed, or which holds unread bytes the kernel does not see (a
// WebSocket: a timed-out read breaks it). Other wrappers are looked through
// with NetConn() net.Conn down to the socket.
type Parkable interface {
	Parkable() bool
}

// closeNC closes the network connection, taking it out of the poller
// first: the kernel must not see a parked fd number that Close frees and
// a new connection reuses, and the parked reader must resume to end.
func (c *conn) closeNC() {
	c.ncClosed.Store(true)
	c.srv.poll.unpark(c)
	c.nc.Close()
}

// setKeepAlive starts the keep-alive wait for the next packet: 1.5 × the
// keep alive from now, none without one.
func (c *conn) setKeepAlive() {
	if c.keepAlive > 0 {
		c.kaDeadline = time.Now().Add(c.keepAlive * 3 / 2).UnixNano()
	}
}

func (c *conn) keepAliveDeadline() time.Time {
	if c.kaDeadline == 0 {
		return time.Time{}
	}
	return time.Unix(0, c.kaDeadline)
}

// waitFirst waits for the first byte of a packet, keeping it for ReadByte,
// and sets the read deadline of the rest to the keep-alive one. Waiting
// longer than Options.ParkIdle before the keep-alive deadline parks the
// connection (errParked). A timeout in the middle of a packet is not a park:
// only the first byte's wait may end early.
func (c *conn) waitFirst() error {
	ka := c.keepAliveDeadline()
	if !c.parkSeen && c.srv.poll != nil {
		// Decided before any short wait: a wrapper that may not be parked
		// (a WebSocket) may not survive a read that timed out either.
		c.parkSeen, c.noPark = true, !canPark(c.nc)
	}
	if c.srv.poll == nil || c.noPark {
		_ = c.nc.SetReadDeadline(ka)
		return nil
	}
	d := time.Now().Add(c.srv.opts.ParkIdle)
	if !ka.IsZero() && !d.Before(ka) {
		_ = c.nc.SetReadDeadline(ka)
		return nil
	}
	_ = c.nc.SetReadDeadline(d)
	b, err := c.ReadByte()
	if err == nil {
		c.b[0], c.hasFirst = b, true
		_ = c.nc.SetReadDeadline(ka)
		return nil
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || (!ka.IsZero() && !time.Now().Before(ka)) {
		return err
	}
	if c.srv.poll.park(c, ka) {
		return errParked
	}
	// Not parked (no socket under the connection, or it is closing): wait
	// as without parking.
	_ = c.nc.SetReadDeadline(ka)
	return nil
}
