//go:build linux

package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller holds the parked connections of a Server: their sockets in one
// epoll instance (started at the first park), watched by one goroutine
// that resumes a connection on a fresh goroutine when it is readable or
// its peer hung up. A parked connection holds no goroutine, only its
// entry here and its keep-alive timer.
//
// A connection is parked only after a read timed out waiting for a
// packet's first byte, so every buffer above the socket (TLS plaintext,
// the PROXY header's reader) was empty: the socket's readability is the
// right signal, and a wrapper holding part of a record just gets more
// bytes.
type poller struct {
	log    *slog.Logger
	count  atomic.Int64  // parked now
	total  atomic.Uint64 // parks so far, for tests
	mu     sync.Mutex
	epfd   int // -1 until the first park
	wake   int // eventfd that stops the loop
	next   uint64
	parked map[uint64]*parkedConn
	closed bool
	done   chan struct{} // closed when the loop has returned
}

// parkedConn is one parked connection: its socket's fd and the timer that
// resumes it at its keep-alive deadline, to time out as it would have.
type parkedConn struct {
	c  *conn
	fd int
	t  *time.Timer
}

func newPoller(log *slog.Logger) *poller {
	return &poller{log: log, epfd: -1, wake: -1, parked: map[uint64]*parkedConn{}}
}

// startLocked creates the epoll instance and its loop. Requires mu.
func (p *poller) startLocked() error {
	if p.epfd >= 0 {
		return nil
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN} // token 0: the wake-up
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	p.epfd, p.wake, p.done = epfd, wake, make(chan struct{})
	go p.loop(epfd)
	return nil
}

// canPark says whether nc can be parked: a socket is under its wrappers
// and none of them says it may not be.
func canPark(nc net.Conn) bool { return rawConn(nc) != nil }

// rawConn finds the socket under nc's wrappers; nil when there is none or
// a wrapper may not be parked.
func rawConn(nc net.Conn) syscall.RawConn {
	for range 8 {
		if pk, ok := nc.(Parkable); ok && !pk.Parkable() {
			return nil
		}
		switch x := nc.(type) {
		case syscall.Conn:
			rc, err := x.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case interface{ NetConn() net.Conn }:
			nc = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// park registers c's socket and says whether c is parked: its reader must
// then return. ka is its keep-alive deadline (zero: none).
func (p *poller) park(c *conn, ka time.Time) bool {
	rc := rawConn(c.nc)
	if rc == nil {
		c.noPark = true
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Checked under mu: a closeNC that began has set ncClosed before its
	// unpark takes mu, and closes the socket only after.
	if p.closed || c.ncClosed.Load() {
		return false
	}
	if err := p.startLocked(); err != nil {
		p.log.Error("mqtt engine: parking connections is off", "err", err)
		p.closed = true
		return false
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return false
	}
	p.next++
	tok := p.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return false
	}
	pc := &parkedConn{c: c, fd: fd}
	if !ka.IsZero() {
		pc.t = time.AfterFunc(time.Until(ka), func() { p.resume(tok) })
	}
	p.parked[tok] = pc
	c.parkToken = tok
	p.count.Add(1)
	p.total.Add(1)
	return true
}

// unpark resumes c if it is parked.
func (p *poller) unpark(c *conn) {
	if p == nil {
		return
	}
	p.mu.Lock()
	tok := c.parkToken
	p.mu.Unlock()
	if tok != 0 {
		p.resume(tok)
	}
}

// resume takes a parked connection out of the epoll set and starts its
// reader again; nothing if it was resumed already.
func (p *poller) resume(tok uint64) {
	p.mu.Lock()
	pc := p.parked[tok]
	if pc == nil {
		p.mu.Unlock()
		return
	}
	delete(p.parked, tok)
	pc.c.parkToken = 0
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
	if pc.t != nil {
		pc.t.Stop()
	}
	p.count.Add(-1)
	p.mu.Unlock()
	go pc.c.run()
}

func (p *poller) parkedCount() int64 {
	if p == nil {
		return 0
	}
	return p.count.Load()
}

// loop waits for parked sockets to become readable until close.
func (p *poller) loop(epfd int) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			p.log.Error("mqtt engine: epoll_wait: parked connections resumed, parking is off", "err", err)
			p.stop()
			return
		}
		for _, ev := range events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if tok == 0 {
				p.stop()
				return
			}
			p.resume(tok)
		}
	}
}

// stop resumes every parked connection and frees the epoll instance: the
// loop's end.
func (p *poller) stop() {
	p.mu.Lock()
	p.closed = true
	toks := make([]uint64, 0, len(p.parked))
	for tok := range p.parked {
		toks = append(toks, tok)
	}
	p.mu.Unlock()
	for _, tok := range toks {
		p.resume(tok)
	}
	p.mu.Lock()
	unix.Close(p.wake)
	unix.Close(p.epfd)
	p.wake, p.epfd = -1, -1
	p.mu.Unlock()
}

// close stops the loop, if it runs, and waits for it. The server's
// connections have ended: none is parked.
func (p *poller) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	done := p.done
	if p.wake >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(p.wake, one[:])
	}
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}
