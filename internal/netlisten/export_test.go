package netlisten

import "net"

// NewProxyListener applies p to ln, for tests over in-memory connections.
func NewProxyListener(ln net.Listener, p Proxy) net.Listener { return newProxyListener(ln, p) }

// ForwardedFor is forwardedFor, for table tests.
var ForwardedFor = forwardedFor
