package netlisten_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/netlisten"
)

// pipeListener accepts in-memory connections whose peer is 127.0.0.1,
// so that fuzzing opens no sockets.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883} }

type peerConn struct {
	net.Conn
	peer net.Addr
}

func (c peerConn) RemoteAddr() net.Addr { return c.peer }

// FuzzProxyFirstBytes: whatever a trusted source sends first, the listener
// neither panics nor waits past its header timeout: the connection is
// accepted (with a header's address) or closed.
func FuzzProxyFirstBytes(f *testing.F) {
	f.Add([]byte(v1))
	f.Add(v2(tlv(0x01, "mqtt")))
	f.Add(v2Local)
	f.Add([]byte("PROXY TCP4 203.0.113.7"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"))
	f.Add([]byte("\x10\x0c\x00\x04MQTT"))
	f.Add([]byte{})
	const timeout = 50 * time.Millisecond
	f.Fuzz(func(t *testing.T, first []byte) {
		inner := &pipeListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
		ln := netlisten.NewProxyListener(inner, netlisten.Proxy{Trusted: loopback, HeaderTimeout: timeout})
		defer ln.Close()
		server, client := net.Pipe()
		defer client.Close()
		inner.conns <- peerConn{Conn: server, peer: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 4000}}
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			client.SetWriteDeadline(time.Now().Add(2 * timeout))
			client.Write(first)
		}()
		accepted := make(chan net.Conn, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				accepted <- c
			}
		}()
		select {
		case c := <-accepted:
			if c.RemoteAddr() == nil {
				t.Error("accepted a connection without an address")
			}
			c.Close()
		case <-readClosed(client, 10*timeout):
		case <-time.After(20 * timeout):
			t.Fatalf("neither accepted nor closed after %s", 20*timeout)
		}
		client.Close()
		<-wrote
	})
}

// readClosed is closed once c reads an error other than a timeout before
// d passes: its peer closed it.
func readClosed(c net.Conn, d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		c.SetReadDeadline(time.Now().Add(d))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			close(ch)
		}
	}()
	return ch
}
