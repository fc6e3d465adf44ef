package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// netListener serves MQTT on a net.Listener corral opened itself, so that
// ":0" works and the bound address is known.
type netListener struct {
	id, proto string
	ln        net.Listener
	once      sync.Once
	// closeClients ends the listener's sessions on Close, in place of the
	// function mochi passes (see Broker.closeListenerClients).
	closeClients func(listener string)
}

func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.ln.Addr().String() }
func (l *netListener) Protocol() string        { return l.proto }
func (l *netListener) Init(*slog.Logger) error { return nil }
func (l *netListener) Close(listeners.CloseFn) {
	l.once.Do(func() { l.ln.Close() })
	l.closeClients(l.id)
}

func (l *netListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		go establish(l.id, conn)
	}
}

// wsListener serves MQTT over WebSocket at /mqtt.
type wsListener struct {
	id   string
	ln   net.Listener
	srv  *http.Server
	once sync.Once
	log  *slog.Logger
	// closeClients: as for netListener.
	closeClients func(listener string)
	// Timeouts of the HTTP exchange up to the upgrade (see Init).
	readTimeout, writeTimeout, idleTimeout time.Duration
	// connectTimeout bounds the time from the upgrade to CONNECT.
	connectTimeout time.Duration
	now            func() time.Time
	// origins allowed (lower case); empty: any.
	origins []string

	mu        sync.Mutex
	establish listeners.EstablishFn
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

// Init builds the HTTP server; mochi calls it before Serve and Close.
func (l *wsListener) Init(*slog.Logger) error {
	up := websocket.Upgrader{Subprotocols: []string{"mqtt", "mqttv3.1"}, CheckOrigin: l.originAllowed}
	mux := http.NewServeMux()
	mux.HandleFunc("/mqtt", func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		establish := l.establish
		l.mu.Unlock()
		if establish == nil {
			http.Error(w, "not serving yet", http.StatusServiceUnavailable)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		// net/http cleared the connection's deadlines for the request; the
		// CONNECT gets its own.
		c.UnderlyingConn().SetDeadline(l.now().Add(l.connectTimeout))
		if err := establish(l.id, &wsConn{Conn: c.UnderlyingConn(), ws: c}); err != nil {
			l.log.Debug("websocket session ended", "err", err)
		}
	})
	// The timeouts bound slow and idle HTTP clients. They set deadlines on
	// the connection, which gorilla's Upgrade clears after hijacking it,
	// so a live MQTT session outlasts them.
	header := 10 * time.Second
	if l.readTimeout > 0 {
		header = min(header, l.readTimeout)
	}
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: header, ReadTimeout: l.readTimeout, WriteTimeout: l.writeTimeout, IdleTimeout: l.idleTimeout}
	return nil
}

// originAllowed is the upgrader's Origin check (a refusal is a 403).
// Credentials travel in CONNECT, not in cookies, so any Origin is the
// default; requests without one do not come from a browser page.
func (l *wsListener) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if len(l.origins) == 0 || origin == "" {
		return true
	}
	return slices.Contains(l.origins, strings.ToLower(origin))
}

func (l *wsListener) Close(listeners.CloseFn) {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l.srv.Shutdown(ctx)
	})
	l.closeClients(l.id)
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "err", err)
	}
}

// wsConn presents the binary messages of a WebSocket as a byte stream.
type wsConn struct {
	net.Conn
	ws  *websocket.Conn
	cur io.Reader
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.cur == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errors.New("MQTT over WebSocket needs binary messages")
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

// NetConn returns the connection under the WebSocket.
func (c *wsConn) NetConn() net.Conn { return c.Conn }

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
