package netlisten_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/corral-iot/corral/internal/netlisten"
)

// wsDial opens a WebSocket to ln's /mqtt, sending header first on the
// TCP connection (a load balancer's PROXY header).
func wsDial(t *testing.T, addr string, header []byte, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, a)
			if err == nil && len(header) > 0 {
				_, err = c.Write(header)
			}
			return c, err
		}}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return d.Dial("ws://"+addr+"/mqtt", h)
}

func TestWebSocketBehindProxy(t *testing.T) {
	ln, err := netlisten.Listen(netlisten.Config{Addr: "127.0.0.1:0", Proxy: &netlisten.Proxy{Trusted: loopback},
		WebSocket: &netlisten.WebSocket{Path: "/mqtt", Subprotocols: []string{"mqtt"}, Origins: []string{"https://App.example.com/"},
			FirstDeadline: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// An Origin not listed gets 403, and nothing is accepted.
	if c, resp, err := wsDial(t, ln.Addr().String(), []byte(v1), "https://evil.example.com"); err == nil {
		c.Close()
		t.Fatal("upgrade from an unlisted origin succeeded")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unlisted origin: %v %v", resp, err)
	}

	c, _, err := wsDial(t, ln.Addr().String(), []byte(v1), "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().String(); got != "203.0.113.7:40001" {
		t.Errorf("RemoteAddr %s", got)
	}
	// A stream split across messages reads as one; writes are messages.
	c.WriteMessage(websocket.BinaryMessage, []byte("hel"))
	c.WriteMessage(websocket.BinaryMessage, []byte("lo"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	kind, msg, err := c.ReadMessage()
	if err != nil || kind != websocket.BinaryMessage || string(msg) != "back" {
		t.Fatalf("client read %d %q %v", kind, msg, err)
	}
	// A text message ends the stream.
	c.WriteMessage(websocket.TextMessage, []byte("x"))
	if _, err := s.Read(buf); err == nil {
		t.Error("a text message was read as stream data")
	}
}

func TestWebSocketUntrustedCannotSpoof(t *testing.T) {
	ln, err := netlisten.Listen(netlisten.Config{Addr: "127.0.0.1:0",
		Proxy:     &netlisten.Proxy{Trusted: elsewhere, Untrusted: netlisten.DirectUntrusted},
		WebSocket: &netlisten.WebSocket{Path: "/mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The header is no HTTP: the upgrade fails.
	if c, _, err := wsDial(t, ln.Addr().String(), []byte(v1), ""); err == nil {
		c.Close()
		t.Fatal("upgrade after a PROXY header from an untrusted source succeeded")
	}
	// Without one it is served with its own address.
	c, _, err := wsDial(t, ln.Addr().String(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
}

func TestForwardedFor(t *testing.T) {
	trusted := mustCIDRs("127.0.0.0/8,10.0.0.0/8")
	peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		peer    net.Addr
		values  []string
		want    string // "" keeps the peer's
	}{
		{"off", nil, peer, []string{"203.0.113.5"}, ""},
		{"no header", trusted, peer, nil, ""},
		{"untrusted peer cannot spoof", trusted, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 1}, []string{"203.0.113.5"}, ""},
		{"one hop", trusted, peer, []string{"203.0.113.5"}, "203.0.113.5:0"},
		{"client-sent entries left of the nearest untrusted are ignored", trusted, peer, []string{"1.2.3.4, 203.0.113.5, 10.1.1.1"}, "203.0.113.5:0"},
		{"several headers", trusted, peer, []string{"1.2.3.4", "203.0.113.6,10.0.0.2"}, "203.0.113.6:0"},
		{"IPv6 with port", trusted, peer, []string{"[2001:db8::7]:443"}, "[2001:db8::7]:0"},
		{"all trusted: the leftmost", trusted, peer, []string{"10.0.0.9, 127.0.0.5"}, "10.0.0.9:0"},
		{"malformed keeps the peer", trusted, peer, []string{"203.0.113.5, unknown"}, ""},
		{"empty entry keeps the peer", trusted, peer, []string{""}, ""},
	} {
		got := netlisten.ForwardedFor(tc.trusted, tc.peer, tc.values)
		if tc.want == "" {
			if got != nil {
				t.Errorf("%s: %v, want the peer's address", tc.name, got)
			}
			continue
		}
		if got == nil || got.String() != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, got, tc.want)
		}
	}
}

// An upgraded connection from a trusted HTTP proxy has the address its
// X-Forwarded-For names.
func TestWebSocketForwardedFor(t *testing.T) {
	ln, err := netlisten.Listen(netlisten.Config{Addr: "127.0.0.1:0", WebSocket: &netlisten.WebSocket{Path: "/mqtt", ForwardedFor: loopback}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+ln.Addr().String()+"/mqtt", http.Header{"X-Forwarded-For": {"203.0.113.5"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().String(); got != "203.0.113.5:0" {
		t.Errorf("RemoteAddr %s", got)
	}
}
