package netlisten

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket serves HTTP on a listener and yields, from Accept, the
// connections upgraded at Path: a byte stream carried in binary messages
// (each message any stretch of it, as MQTT over WebSocket sends).
type WebSocket struct {
	// Path the upgrade is served at, e.g. "/mqtt".
	Path string
	// Subprotocols offered, in order of preference (e.g. "mqtt").
	Subprotocols []string
	// Origins browsers may open the WebSocket from (exact
	// scheme://host[:port], case-insensitive); empty allows any. Requests
	// without an Origin (not from a browser) pass. A refusal is a 403.
	Origins []string
	// Timeouts of the HTTP exchange up to the upgrade (0: none, but the
	// request header is always bounded by 10 s); they do not bind an
	// upgraded connection.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// FirstDeadline, if positive, is the deadline set on a connection as
	// it is upgraded (net/http clears the ones set before): the time its
	// first message has, say until an MQTT CONNECT.
	FirstDeadline time.Duration
	// ForwardedFor, if set, are the HTTP proxies whose X-Forwarded-For
	// is believed: for a request whose peer (after any PROXY header) is
	// in them, the connection's RemoteAddr is the nearest address of the
	// header not in them (port 0). Others' headers are ignored.
	ForwardedFor []netip.Prefix
	// Log receives the HTTP server's errors (default: discarded).
	Log *slog.Logger
}

func (w *WebSocket) check() error {
	if !strings.HasPrefix(w.Path, "/") {
		return errors.New("a WebSocket path must start with /")
	}
	return nil
}

// wsListener is the HTTP server of a WebSocket and the queue of its
// upgraded connections.
type wsListener struct {
	inner  net.Listener
	o      WebSocket
	srv    *http.Server
	up     websocket.Upgrader
	ready  chan net.Conn
	done   chan struct{}
	served chan struct{} // closed when Serve returns
	err    error         // Serve's error, written before served is closed
	once   sync.Once
}

func newWSListener(ln net.Listener, o WebSocket) *wsListener {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var origins []string
	for _, org := range o.Origins {
		if org = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(org)), "/"); org != "" {
			origins = append(origins, org)
		}
	}
	o.Origins = origins
	l := &wsListener{inner: ln, o: o, ready: make(chan net.Conn), done: make(chan struct{}), served: make(chan struct{})}
	l.up = websocket.Upgrader{Subprotocols: o.Subprotocols, CheckOrigin: l.originAllowed}
	mux := http.NewServeMux()
	mux.HandleFunc(o.Path, l.upgrade)
	// The timeouts bound slow and idle HTTP clients. They set deadlines on
	// the connection, which gorilla's Upgrade clears after hijacking it,
	// so a live session outlasts them.
	header := 10 * time.Second
	if o.ReadTimeout > 0 {
		header = min(header, o.ReadTimeout)
	}
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: header, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		IdleTimeout: o.IdleTimeout, ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug)}
	go func() {
		l.err = l.srv.Serve(ln)
		close(l.served)
	}()
	return l
}

func (l *wsListener) upgrade(w http.ResponseWriter, r *http.Request) {
	c, err := l.up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade answered the client
	}
	raw := c.NetConn()
	if l.o.FirstDeadline > 0 {
		raw.SetDeadline(time.Now().Add(l.o.FirstDeadline))
	}
	select {
	case l.ready <- &wsConn{Conn: raw, ws: c, remote: forwardedFor(l.o.ForwardedFor, raw.RemoteAddr(), r.Header.Values("X-Forwarded-For"))}:
	case <-l.done:
		c.Close()
	}
}

// forwardedFor is the client's address by the X-Forwarded-For values of a
// request from peer, or nil to keep peer's: the header is read only when
// peer is a trusted proxy, from the right (the hop nearest corral),
// skipping trusted proxies; an entry that is no address ends the walk
// with peer's address kept, so a malformed header never names one.
func forwardedFor(trusted []netip.Prefix, peer net.Addr, values []string) net.Addr {
	if len(trusted) == 0 || len(values) == 0 {
		return nil
	}
	ta, ok := peer.(*net.TCPAddr)
	if !ok {
		return nil
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok || !inPrefixes(trusted, ip.Unmap()) {
		return nil
	}
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	var client netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		a, err := netip.ParseAddr(h)
		if err != nil {
			ap, perr := netip.ParseAddrPort(h)
			if perr != nil {
				return nil
			}
			a = ap.Addr()
		}
		client = a.Unmap()
		if !inPrefixes(trusted, client) {
			break
		}
	}
	if !client.IsValid() {
		return nil
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(client, 0))
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// originAllowed is the upgrader's Origin check.
func (l *wsListener) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if len(l.o.Origins) == 0 || origin == "" {
		return true
	}
	return slices.Contains(l.o.Origins, strings.ToLower(origin))
}

func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.served:
		if errors.Is(l.err, http.ErrServerClosed) {
			return nil, net.ErrClosed
		}
		return nil, l.err
	}
}

func (l *wsListener) Addr() net.Addr { return l.inner.Addr() }

// Close stops the HTTP server (requests in progress get a second) and
// closes upgraded connections nobody accepted; accepted ones are the
// caller's.
func (l *wsListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := l.srv.Shutdown(ctx); err != nil {
			l.srv.Close()
		}
		<-l.served
	})
	return nil
}

// wsConn presents the binary messages of a WebSocket as a byte stream.
// Its deadlines are the underlying connection's, and so is its address
// unless a trusted proxy's X-Forwarded-For named another.
type wsConn struct {
	net.Conn
	ws     *websocket.Conn
	remote net.Addr // nil: the underlying connection's
	cur    io.Reader
	wmu    sync.Mutex
}

// RemoteAddr is the client's address.
func (c *wsConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// errTextMessage refuses a text message where binary ones carry the stream.
var errTextMessage = errors.New("a WebSocket stream needs binary messages")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.cur == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errTextMessage
			}
			c.cur = r
		}
		n, err := c.cur.Read(p)
		if errors.Is(err, io.EOF) {
			c.cur = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// NetConn returns the connection under the WebSocket.
func (c *wsConn) NetConn() net.Conn { return c.Conn }

// Parkable is false: the MQTT engine must not park a WebSocket on its
// socket (engine.Parkable): a timed-out read breaks it, and its reader
// may hold bytes of a frame the socket no longer shows.
func (c *wsConn) Parkable() bool { return false }
