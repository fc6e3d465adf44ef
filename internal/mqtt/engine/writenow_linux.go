//go:build linux

package engine

import (
	"net"
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

// writeNow writes what the socket takes of b at once, never waiting for
// it to drain: n is how much (0 when its buffer is full), err a socket
// that failed or a write deadline (set by an earlier writer) that passed.
func writeNow(rc syscall.RawConn, b []byte) (n int, err error) {
	werr := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if e == syscall.EINTR {
				continue
			}
			if e != nil {
				if e != syscall.EAGAIN {
					err = e
				}
				break
			}
			if m <= 0 {
				break
			}
			n += m
		}
		return true // never wait: what is left goes to a writer goroutine
	})
	if err == nil {
		err = werr
	}
	return n, err
}
