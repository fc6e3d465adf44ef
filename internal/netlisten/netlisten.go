// Package netlisten opens the network listeners corral's servers accept
// connections on: plain TCP, TLS, WebSocket (each binary message carrying
// a stretch of a byte stream, as MQTT over WebSocket does), and the PROXY
// protocol v1 and v2 in front of any of them, so that a server behind
// HAProxy or a cloud load balancer still sees its clients' addresses. It
// knows nothing of the protocol spoken on the connections it yields: every
// net.Conn it returns has as RemoteAddr the client's address, the one
// rate limits, admission and audit count against.
package netlisten

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// Config says how to open one listener. Layers apply in this order: the
// TCP socket, the PROXY protocol (if Proxy is set), Wrap, TLS (if set),
// then WebSocket (if set).
type Config struct {
	// Addr is the TCP address to listen on (host:port; port 0 picks one).
	Addr string
	// Proxy turns the PROXY protocol on for this listener (nil: off; then
	// a PROXY header is only bytes of the protocol spoken, never an
	// address).
	Proxy *Proxy
	// Wrap, if set, wraps the listener once client addresses are known
	// and before any TLS or HTTP byte is read: where a server counts
	// connections per address or sets a first deadline.
	Wrap func(net.Listener) net.Listener
	// TLS, if set, makes this a TLS listener (the handshake runs on the
	// first read or write of a connection, in the caller's goroutine).
	TLS *tls.Config
	// WebSocket, if set, serves HTTP and yields upgraded connections.
	WebSocket *WebSocket
	// NoTCPKeepAlive leaves TCP keep-alives off on accepted connections
	// (Go turns them on: four setsockopt calls a connection), for a
	// protocol that detects dead peers itself, as MQTT's keep alive does.
	NoTCPKeepAlive bool
}

// Listen opens the listener c describes.
func Listen(c Config) (net.Listener, error) {
	if c.Proxy != nil {
		if err := c.Proxy.check(); err != nil {
			return nil, err
		}
	}
	if c.WebSocket != nil {
		if err := c.WebSocket.check(); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	if c.NoTCPKeepAlive {
		lc.KeepAlive = -1
	}
	ln, err := lc.Listen(context.Background(), "tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", c.Addr, err)
	}
	if c.Proxy != nil {
		ln = newProxyListener(ln, *c.Proxy)
	}
	if c.Wrap != nil {
		ln = c.Wrap(ln)
	}
	if c.TLS != nil {
		ln = tls.NewListener(ln, c.TLS)
	}
	if c.WebSocket != nil {
		ln = newWSListener(ln, *c.WebSocket)
	}
	return ln, nil
}
