//go:build linux

package engine

import (
	"net"
	"sync"
	"syscall"
)

// directSocket is nc's socket when nc is a bare TCP or Unix connection,
// or one under WritesThrough wrappers only (a TLS or WebSocket wrapper frames
// what is written: never under one), for writeNow; nil otherwise.
func directSocket(nc net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch x := nc.(type) {
	case *net.TCPConn:
		sc = x
	case *net.UnixConn:
		sc = x
	case WritesThrough:
		if x.WritesThrough() {
			if u, ok := x.(interface{ NetConn() net.Conn }); ok {
				return directSocket(u.NetConn())
			}
		}
		return nil
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// nowWriter is writeNow's state: the callback syscall.RawConn.Write
// calls, made once and reused through the server's pool (a closure made
// each write was three allocations a delivery: itself and the two results
// it set).
type nowWriter struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // write, as a value made once
}

// write writes what the socket fd takes of w.b without waiting.
func (w *nowWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		m, e := syscall.Write(int(fd), w.b[w.n:])
		if e == syscall.EINTR {
			continue
		}
		if e != nil {
			if e != syscall.EAGAIN {
				w.err = e
			}
			break
		}
		if m <= 0 {
			break
		}
		w.n += m
	}
	return true // never wait: what is left goes to a writer goroutine
}

// writeNow writes what the socket takes of b at once, never waiting for
// it to drain: n is how much (0 when its buffer is full), err a socket
// that failed or a write deadline (set by an earlier writer) that passed.
// Its state comes from, and goes back to, pool.
func writeNow(pool *sync.Pool, rc syscall.RawConn, b []byte) (n int, err error) {
	w, _ := pool.Get().(*nowWriter)
	if w == nil {
		w = &nowWriter{}
		w.fn = w.write
	}
	w.b, w.n, w.err = b, 0, nil
	werr := rc.Write(w.fn)
	n, err = w.n, w.err
	w.b, w.err = nil, nil
	pool.Put(w)
	if err == nil {
		err = werr
	}
	return n, err
}
