package broker

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// admission guards the broker's listeners against connections that never
// authenticate: each must send its CONNECT within a deadline, and one
// source address holds at most max connections whose CONNECT has not been
// accepted (pending), across all listeners; further ones are closed at
// accept, before any byte is read.
type admission struct {
	timeout time.Duration
	max     int // 0: no cap
	now     func() time.Time
	refused func() // counts a connection closed at accept

	mu      sync.Mutex
	pending map[string]int
}

func newAdmission(timeout time.Duration, max int, now func() time.Time, refused func()) *admission {
	return &admission{timeout: timeout, max: max, now: now, refused: refused, pending: map[string]int{}}
}

func (a *admission) take(src string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.max > 0 && a.pending[src] >= a.max {
		return false
	}
	a.pending[src]++
	return true
}

func (a *admission) release(src string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending[src] <= 1 {
		delete(a.pending, src)
		return
	}
	a.pending[src]--
}

// listener wraps ln so that what it accepts is admitted.
func (a *admission) listener(ln net.Listener) net.Listener { return &admitListener{Listener: ln, a: a} }

type admitListener struct {
	net.Listener
	a *admission
}

func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceKey(c.RemoteAddr().String())
		if !l.a.take(src) {
			c.Close()
			l.a.refused()
			continue
		}
		c.SetDeadline(l.a.now().Add(l.a.timeout))
		return &pendingConn{Conn: c, a: l.a, src: src}, nil
	}
}

// pendingConn holds its source's pending slot until admitted or closed.
// It lives as long as the connection, so it is kept small: an atomic flag
// rather than a sync.Once (48 B rather than 64 B a connection).
type pendingConn struct {
	net.Conn
	a    *admission
	src  string
	done atomic.Bool
}

func (c *pendingConn) admitted() {
	if c.done.CompareAndSwap(false, true) {
		c.a.release(c.src)
		c.src = "" // the connection may live for days: keep no copy
	}
}

func (c *pendingConn) Close() error {
	c.admitted()
	return c.Conn.Close()
}

// NetConn returns the wrapped connection.
func (c *pendingConn) NetConn() net.Conn { return c.Conn }

// ReadsThrough says its Read is the wrapped connection's, keeping nothing
// back (engine.Unbuffered): the engine may park it without a timed wait.
func (c *pendingConn) ReadsThrough() bool { return true }

// WritesThrough says its Write is the wrapped connection's
// (engine.WritesThrough): the engine may write to the socket under it.
func (c *pendingConn) WritesThrough() bool { return true }

// admitConn releases the pending slot of a connection whose CONNECT was
// accepted, looking through the TLS and WebSocket layers above it.
func admitConn(c net.Conn) {
	for c != nil {
		switch x := c.(type) {
		case *pendingConn:
			x.admitted()
			return
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return
		}
	}
}

// sourceKey is the address limits count against: the IP of host:port,
// and for IPv6 its /64, which one subscriber usually holds whole.
func sourceKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			return remote
		}
		return host
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
