package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

const wait = 5 * time.Second

// start runs a server on a :0 port and closes it when the test ends.
func start(t testing.TB, o Options) (*Server, string) {
	t.Helper()
	return startWrapped(t, o, nil)
}

// startWrapped is start with each connection the server accepts wrapped
// by wrap (nil: none).
func startWrapped(t testing.TB, o Options, wrap func(net.Conn) net.Conn) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(o)
	done := make(chan error, 1)
	var l net.Listener = ln
	if wrap != nil {
		l = &wrapping{Listener: ln, wrap: wrap}
	}
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// wrapping is a listener whose accepted connections wrap wraps.
type wrapping struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *wrapping) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// client is a raw MQTT client for tests.
type client struct {
	t testing.TB
	c net.Conn
	v packet.Version
}

func dialRaw(t testing.TB, addr string, v packet.Version) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, v: v}
}

// connect dials and sends CONNECT, and returns the CONNACK.
func connect(t testing.TB, addr string, cp *packet.Connect) (*client, *packet.Connack) {
	t.Helper()
	cl := dialRaw(t, addr, cp.Version)
	cl.send(cp)
	p := cl.recv()
	ack, ok := p.(*packet.Connack)
	if !ok {
		t.Fatalf("got %T, want CONNACK", p)
	}
	return cl, ack
}

// mustConnect connects and fails unless the CONNACK is a success.
func mustConnect(t testing.TB, addr string, cp *packet.Connect) (*client, *packet.Connack) {
	t.Helper()
	cl, ack := connect(t, addr, cp)
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK 0x%02X", byte(ack.ReasonCode))
	}
	return cl, ack
}

func conn5(id string, clean bool) *packet.Connect {
	return &packet.Connect{Version: packet.V5, ClientID: id, CleanStart: clean, KeepAlive: 60}
}

func conn3(id string, clean bool) *packet.Connect {
	return &packet.Connect{Version: packet.V311, ClientID: id, CleanStart: clean, KeepAlive: 60}
}

func connOf(v packet.Version, id string, clean bool) *packet.Connect {
	if v == packet.V5 {
		return conn5(id, clean)
	}
	return conn3(id, clean)
}

func (c *client) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Append(nil, c.v)
	if err != nil {
		c.t.Fatal(err)
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(wait))
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write %s: %v", p.Type(), err)
	}
}

func (c *client) read(d time.Duration) (packet.Packet, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	return packet.Read(c.c, c.v, 0)
}

func (c *client) recv() packet.Packet {
	c.t.Helper()
	p, err := c.read(wait)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

// ping sends PINGREQ and fails unless the next packet is PINGRESP.
func (c *client) ping() {
	c.t.Helper()
	c.send(&packet.Pingreq{})
	if p := c.recv(); p.Type() != packet.TypePingresp {
		c.t.Fatalf("got %s, want PINGRESP", p.Type())
	}
}

// recvPublish reads the next packet and fails unless it is a PUBLISH.
func (c *client) recvPublish() *packet.Publish {
	c.t.Helper()
	p := c.recv()
	pub, ok := p.(*packet.Publish)
	if !ok {
		c.t.Fatalf("got %s, want PUBLISH", p.Type())
	}
	return pub
}

// silent fails if a packet arrives within d.
func (c *client) silent(d time.Duration) {
	c.t.Helper()
	p, err := c.read(d)
	if err == nil {
		c.t.Fatalf("got %s, want nothing", p.Type())
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("read: %v, want a timeout", err)
	}
}

// closed fails unless the server closes the connection within wait,
// after the packets it returns.
func (c *client) closed() []packet.Packet {
	c.t.Helper()
	var got []packet.Packet
	for {
		p, err := c.read(wait)
		if err == nil {
			got = append(got, p)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %v", wait)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
			var oe *net.OpError
			if !errors.As(err, &oe) {
				c.t.Logf("closed with %v", err)
			}
		}
		return got
	}
}

// subscribe subscribes and checks the SUBACK codes.
func (c *client) subscribe(id uint16, want []packet.ReasonCode, s ...packet.Subscription) {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: id, Subscriptions: s})
	p := c.recv()
	ack, ok := p.(*packet.Suback)
	if !ok || ack.PacketID != id {
		c.t.Fatalf("got %s, want SUBACK %d", p.Type(), id)
	}
	if want != nil && !equal(ack.ReasonCodes, want) {
		c.t.Fatalf("SUBACK %v, want %v", ack.ReasonCodes, want)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hooks is configurable Hooks recording session ends.
type hooks struct {
	AllowAll
	denyPublish string // topic refused to MayPublish
	denySub     string // filter refused to MaySubscribe

	mu     sync.Mutex
	events []string
}

func (h *hooks) MayPublish(_ *Client, topic string) bool { return topic != h.denyPublish }
func (h *hooks) MaySubscribe(_ *Client, f string) bool   { return f != h.denySub }
func (h *hooks) SessionStarted(c *Client, present bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, "start "+c.ID)
}
func (h *hooks) SessionEnded(c *Client, r EndReason) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, "end "+c.ID+" "+r.String())
}

func (h *hooks) log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

// eventually polls f until it is true or wait passes.
func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var versions = []struct {
	name string
	v    packet.Version
}{{"v311", packet.V311}, {"v5", packet.V5}}
