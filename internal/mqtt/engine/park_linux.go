//go:build linux

package engine

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller holds the parked connections of a Server: their sockets in one
// epoll instance (started at the first park), watched by one goroutine
// that resumes a connection, on a kept reader (see poller.kept) or a fresh
// goroutine, when it is readable or its peer hung up, or when its
// keep-alive deadline passes (the soonest deadline is epoll_wait's
// timeout). A parked connection holds no goroutine and no timer, only its
// entry here.
//
// A connection is parked after a read timed out waiting for a packet's
// first byte, so every buffer above the socket (TLS plaintext, the PROXY
// header's reader) was empty: the socket's readability is the right
// signal, and a wrapper holding part of a record just gets more bytes. Or
// it is parked as soon as it has read a packet that came after a silence
// (parkQuickNext), only where no wrapper above the socket buffers what it
// reads (Unbuffered) and nothing is left in the engine's own buffers;
// epoll reports at once what came meanwhile.
type poller struct {
	log   *slog.Logger
	count atomic.Int64  // parked now
	total atomic.Uint64 // parks so far, for tests
	// rearmed counts the parks that re-armed a socket in the set, for tests.
	rearmed atomic.Uint64
	mu      sync.Mutex
	epfd    int // -1 until the first park
	wake    int // eventfd that stops the loop
	next    uint64
	parked  map[uint64]*parkedConn
	due     dueHeap // the parked connections with a keep-alive deadline, soonest first
	// waitUntil is when the loop's epoll_wait times out (Unix ns; 0: it
	// waits for events only): a park due sooner wakes it to wait less.
	waitUntil int64
	closed    bool
	done      chan struct{} // closed when the loop has returned

	// Kept readers run the readers of resumed connections: a resumed
	// connection's reader was a new goroutine whose stack, started small,
	// grew (copied two or three times, each copy walking every frame) on
	// the way down a packet's handlers: about a tenth of the server's CPU
	// with 10,000 devices updating their shadows once a second, each
	// resumed for each update. A kept reader's stack stays grown between
	// connections. Idle ones wait on kept; at most maxKept run.
	kept     chan *conn
	keptN    atomic.Int32
	keptQuit chan struct{} // closed by close: idle kept readers return
	keptWG   sync.WaitGroup
}

// maxKept bounds the kept readers; a resume finding none idle and this
// many running starts a goroutine of its own, as before.
const maxKept = 64

// parkState is what a connection keeps for its parks: its socket's
// descriptor, read at the first, and its entry, reused by each.
type parkState struct {
	fd     int
	fdRead bool
	entry  parkedConn
}

// parkedConn is one parked connection and its keep-alive deadline, when
// it is resumed to time out as it would have.
type parkedConn struct {
	c   *conn
	tok uint64
	due int64 // keep-alive deadline, Unix ns; 0: none
	idx int32 // its place in poller.due; -1: not there
}

// dueHeap orders parked connections by keep-alive deadline
// (container/heap), each knowing its place so that a resumed one leaves
// at once.
type dueHeap []*parkedConn

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = int32(i), int32(j)
}
func (h *dueHeap) Push(x any) {
	pc := x.(*parkedConn)
	pc.idx = int32(len(*h))
	*h = append(*h, pc)
}
func (h *dueHeap) Pop() any {
	old := *h
	pc := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	pc.idx = -1
	return pc
}

func newPoller(log *slog.Logger) *poller {
	return &poller{log: log, epfd: -1, wake: -1, parked: map[uint64]*parkedConn{},
		kept: make(chan *conn), keptQuit: make(chan struct{})}
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
	for x := range layers(nc) {
		if pk, ok := x.(Parkable); ok && !pk.Parkable() {
			return nil
		}
		if sc, ok := x.(syscall.Conn); ok {
			rc, err := sc.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		}
	}
	return nil
}

// park registers c's socket and says whether c is parked: its reader must
// then return. ka is its keep-alive deadline (zero: none).
func (p *poller) park(c *conn, ka time.Time) bool {
	var rc syscall.RawConn
	if !c.parking.fdRead {
		if rc = rawConn(c.nc); rc == nil {
			c.noPark = true
			return false
		}
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
	if !c.parking.fdRead {
		// Read once: the socket stays open while ncClosed is false, and
		// closeNC sets it before it takes mu to unpark, then closes.
		fd := -1
		if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
			return false
		}
		c.parking.fd, c.parking.fdRead = fd, true
	}
	p.next++
	tok := p.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if err := p.arm(c, c.parking.fd, &ev); err != nil {
		return false
	}
	pc := &c.parking.entry // no parked connection refers to it: not parked
	*pc = parkedConn{c: c, tok: tok, idx: -1}
	if !ka.IsZero() {
		pc.due = ka.UnixNano()
		heap.Push(&p.due, pc)
		if p.waitUntil == 0 || pc.due < p.waitUntil {
			p.wakeLocked() // the loop waits for longer than this one may
		}
	}
	p.parked[tok] = pc
	c.parkToken = tok
	p.count.Add(1)
	p.total.Add(1)
	return true
}

// arm puts fd, c's socket, in the epoll set armed for one event ev, or
// re-arms it where it is already (parkInEpoll). Requires mu.
func (p *poller) arm(c *conn, fd int, ev *unix.EpollEvent) error {
	op, other := unix.EPOLL_CTL_ADD, unix.EPOLL_CTL_MOD
	if c.park&parkInEpoll != 0 {
		op, other = other, op
	}
	err := unix.EpollCtl(p.epfd, op, fd, ev)
	switch {
	case err == nil && op == unix.EPOLL_CTL_MOD:
		p.rearmed.Add(1)
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EEXIST):
		err = unix.EpollCtl(p.epfd, other, fd, ev) // not as the bit said: never expected
	}
	if err != nil {
		c.park &^= parkInEpoll
		return err
	}
	c.park |= parkInEpoll
	return nil
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
		p.resume(tok, false)
	}
}

// resume takes a parked connection off the parked ones and starts its
// reader again; nothing if it was resumed already. event says an event
// on its socket resumed it (parkReadable).
func (p *poller) resume(tok uint64, event bool) {
	p.mu.Lock()
	pc := p.parked[tok]
	if pc == nil {
		p.mu.Unlock()
		return
	}
	delete(p.parked, tok)
	pc.c.parkToken = 0
	// Its socket stays in the epoll set: disarmed when an event resumed
	// it; armed still when a deadline or closeNC did, and an event then
	// finds no parked connection for tok (tokens are never reused).
	if pc.idx >= 0 {
		heap.Remove(&p.due, int(pc.idx))
	}
	p.count.Add(-1)
	p.mu.Unlock()
	// Its reader has returned: the fields are ours until run starts.
	if pc.c.quietFor(time.Now()) >= wokenAfterIdles*pc.c.srv.opts.ParkIdle {
		pc.c.woken = wokenWaits
	}
	if event {
		pc.c.park |= parkReadable
	}
	p.run(pc.c)
}

// run starts c's reader on an idle kept reader, a new one while fewer
// than maxKept run, or else its own goroutine.
func (p *poller) run(c *conn) {
	select {
	case p.kept <- c:
		return
	default:
	}
	if p.keptN.Add(1) <= maxKept {
		p.keptWG.Add(1)
		go p.keptReader(c)
		return
	}
	p.keptN.Add(-1)
	go c.run()
}

// keptReader runs c's reader, then those of the connections handed to it,
// until the poller closes.
func (p *poller) keptReader(c *conn) {
	defer p.keptWG.Done()
	defer p.keptN.Add(-1)
	for {
		c.run()
		select {
		case c = <-p.kept:
		case <-p.keptQuit:
			return
		}
	}
}

func (p *poller) parkedCount() int64 {
	if p == nil {
		return 0
	}
	return p.count.Load()
}

// wakeLocked makes the loop's epoll_wait return (to stop, or to wait for
// a sooner deadline). Requires mu.
func (p *poller) wakeLocked() {
	if p.wake >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(p.wake, one[:])
	}
}

// timeout is epoll_wait's: milliseconds until the soonest keep-alive
// deadline (rounded up), -1 when none.
func (p *poller) timeout() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.due) == 0 {
		p.waitUntil = 0
		return -1
	}
	p.waitUntil = p.due[0].due
	ms := (p.waitUntil - time.Now().UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	return int(max(ms, 0))
}

// resumeDue resumes the connections whose keep-alive deadline has passed.
func (p *poller) resumeDue() {
	now := time.Now().UnixNano()
	var toks []uint64
	p.mu.Lock()
	for len(p.due) > 0 && p.due[0].due <= now {
		toks = append(toks, heap.Pop(&p.due).(*parkedConn).tok)
	}
	p.mu.Unlock()
	for _, tok := range toks {
		p.resume(tok, false)
	}
}

// loop waits for parked sockets to become readable, and for their
// keep-alive deadlines, until close.
func (p *poller) loop(epfd int) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(epfd, events, p.timeout())
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
				var b [8]byte
				_, _ = unix.Read(p.wake, b[:])
				p.mu.Lock()
				closed := p.closed
				p.mu.Unlock()
				if closed {
					p.stop()
					return
				}
				continue // a sooner deadline: wait again with it
			}
			p.resume(tok, true)
		}
		p.resumeDue()
		if n > 0 {
			// The readers just resumed wait in this goroutine's run
			// queue, and epoll_wait is a blocking system call that holds
			// the processor until the runtime's monitor takes it back
			// (20 µs to 10 ms): yield, so they run first.
			runtime.Gosched()
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
		p.resume(tok, false)
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
	p.wakeLocked()
	p.mu.Unlock()
	if done != nil {
		<-done
	}
	select {
	case <-p.keptQuit:
	default:
		close(p.keptQuit)
	}
	p.keptWG.Wait()
}
