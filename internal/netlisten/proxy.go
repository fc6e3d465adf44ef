package netlisten

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Untrusted says what a PROXY-enabled listener does with a connection
// from a source outside Proxy.Trusted.
type Untrusted int

const (
	// RefuseUntrusted closes it at accept, before reading a byte.
	RefuseUntrusted Untrusted = iota
	// DirectUntrusted serves it as a direct client whose address is the
	// socket's; its bytes are never read as a PROXY header, so a header it
	// sends is garbage to the protocol spoken and spoofs nothing.
	DirectUntrusted
)

// ParseUntrusted reads "refuse" or "direct".
func ParseUntrusted(s string) (Untrusted, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "refuse":
		return RefuseUntrusted, nil
	case "direct":
		return DirectUntrusted, nil
	}
	return 0, fmt.Errorf("%q is neither refuse nor direct", s)
}

// DefaultHeaderTimeout bounds the wait for a PROXY header when
// Proxy.HeaderTimeout is zero.
const DefaultHeaderTimeout = 5 * time.Second

// Refusal names why a PROXY-enabled listener closed a connection.
type Refusal string

const (
	// RefusedUntrusted: a source outside Proxy.Trusted under RefuseUntrusted.
	RefusedUntrusted Refusal = "untrusted"
	// RefusedHeader: a trusted source sent no valid PROXY header in time.
	RefusedHeader Refusal = "header"
)

// Proxy is the PROXY protocol policy of a listener. A connection from a
// trusted source must open with a PROXY header (v1 or v2) within
// HeaderTimeout, else it is closed; the header's source address becomes
// the connection's RemoteAddr (a LOCAL or UNSPEC header, as health checks
// send, leaves the socket's). v2 TLVs are skipped unread. Connections
// from other sources are refused or served directly (Untrusted): a header
// from them never names an address.
type Proxy struct {
	// Trusted are the load balancers' source ranges (required).
	Trusted []netip.Prefix
	// Untrusted is what becomes of other sources (default: refused).
	Untrusted Untrusted
	// HeaderTimeout bounds the wait for the header (default 5 s).
	HeaderTimeout time.Duration
	// Refused, if set, is told of every connection closed by the policy,
	// with the socket's peer address (for metrics and sampled logs).
	Refused func(peer net.Addr, why Refusal)
}

// ParseCIDRs reads comma-separated CIDRs; a bare address is its own /32
// or /128.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8) or an address", part)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (p *Proxy) check() error {
	if len(p.Trusted) == 0 {
		return errors.New("the PROXY protocol needs trusted source ranges")
	}
	if p.HeaderTimeout < 0 {
		return errors.New("the PROXY header timeout must not be negative")
	}
	return nil
}

// trusts says whether the socket peer a may send a PROXY header.
func (p *Proxy) trusts(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, pre := range p.Trusted {
		if pre.Contains(ip) {
			return true
		}
	}
	return false
}

// proxyListener applies a Proxy. One goroutine accepts; each trusted
// connection reads its header in a goroutine of its own, so that a slow
// one holds up no other; Accept yields connections whose address is known.
type proxyListener struct {
	inner net.Listener
	p     Proxy

	ready   chan net.Conn
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the accept loop ends
	err     error         // why it ended; written before stopped is closed
	once    sync.Once
	wg      sync.WaitGroup // the accept loop and header readers

	mu      sync.Mutex
	reading map[net.Conn]struct{} // connections whose header is awaited; closed by Close
}

func newProxyListener(ln net.Listener, p Proxy) *proxyListener {
	if p.HeaderTimeout == 0 {
		p.HeaderTimeout = DefaultHeaderTimeout
	}
	l := &proxyListener{inner: ln, p: p, ready: make(chan net.Conn), done: make(chan struct{}),
		stopped: make(chan struct{}), reading: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.run()
	return l
}

func (l *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.stopped:
		return nil, l.err
	}
}

func (l *proxyListener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, closes the connections still sending their
// header and waits for the goroutines it started.
func (l *proxyListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		for c := range l.reading {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

func (l *proxyListener) run() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait, as
				// net/http does, rather than stop serving.
				backoff = min(max(5*time.Millisecond, 2*backoff), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.done:
				}
			}
			l.err = err
			close(l.stopped)
			return
		}
		backoff = 0
		if !l.p.trusts(c.RemoteAddr()) {
			if l.p.Untrusted == RefuseUntrusted {
				l.refuse(c, RefusedUntrusted)
				continue
			}
			l.deliver(c)
			continue
		}
		l.mu.Lock()
		select {
		case <-l.done:
			l.mu.Unlock()
			c.Close()
			continue
		default:
		}
		l.reading[c] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		go l.readHeader(c)
	}
}

// readHeader waits for c's PROXY header, then yields c with the address
// it names.
func (l *proxyListener) readHeader(c net.Conn) {
	defer l.wg.Done()
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(l.p.HeaderTimeout))
	h := pc.ProxyHeader() // nil unless a valid header came in time
	l.mu.Lock()
	delete(l.reading, c)
	l.mu.Unlock()
	if h == nil {
		l.refuse(c, RefusedHeader)
		return
	}
	l.deliver(&proxiedConn{Conn: pc, raw: c})
}

func (l *proxyListener) refuse(c net.Conn, why Refusal) {
	peer := c.RemoteAddr()
	c.Close()
	if l.p.Refused != nil {
		l.p.Refused(peer, why)
	}
}

func (l *proxyListener) deliver(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.done:
		c.Close()
	}
}

// proxiedConn is a connection that came with a PROXY header: RemoteAddr
// (and LocalAddr) are the header's.
type proxiedConn struct {
	*proxyproto.Conn
	raw net.Conn
}

// NetConn returns the socket under the header.
func (c *proxiedConn) NetConn() net.Conn { return c.raw }
