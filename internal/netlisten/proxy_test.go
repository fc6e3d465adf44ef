package netlisten_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/corral-iot/corral/internal/netlisten"
)

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // prefixes joined by space; "error" for a refusal
	}{
		{"", ""},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{" 10.1.2.3/8 , 192.0.2.7 ", "10.0.0.0/8 192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8::/32,::1", "2001:db8::/32 ::1/128"},
		{"10.0.0.0/33", "error"},
		{"example.com", "error"},
		{"10.0.0.0/8,,", "10.0.0.0/8"},
	} {
		got, err := netlisten.ParseCIDRs(tc.in)
		if tc.want == "error" {
			if err == nil {
				t.Errorf("ParseCIDRs(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCIDRs(%q): %v", tc.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != tc.want {
			t.Errorf("ParseCIDRs(%q) = %v, want %s", tc.in, s, tc.want)
		}
	}
}

func TestParseUntrusted(t *testing.T) {
	for in, want := range map[string]netlisten.Untrusted{"": netlisten.RefuseUntrusted, "refuse": netlisten.RefuseUntrusted, " Direct ": netlisten.DirectUntrusted} {
		if got, err := netlisten.ParseUntrusted(in); err != nil || got != want {
			t.Errorf("ParseUntrusted(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := netlisten.ParseUntrusted("ignore"); err == nil {
		t.Error("ParseUntrusted(ignore) accepted")
	}
}

func TestListenRefusesBadConfig(t *testing.T) {
	for name, c := range map[string]netlisten.Config{
		"no trusted ranges": {Addr: "127.0.0.1:0", Proxy: &netlisten.Proxy{}},
		"negative timeout":  {Addr: "127.0.0.1:0", Proxy: &netlisten.Proxy{Trusted: loopback, HeaderTimeout: -1}},
		"websocket path":    {Addr: "127.0.0.1:0", WebSocket: &netlisten.WebSocket{Path: "mqtt"}},
		"bad address":       {Addr: "127.0.0.1:x"},
	} {
		if ln, err := netlisten.Listen(c); err == nil {
			ln.Close()
			t.Errorf("%s: Listen succeeded", name)
		}
	}
}

var (
	loopback  = mustCIDRs("127.0.0.0/8,::1")
	elsewhere = mustCIDRs("192.0.2.0/24")
)

func mustCIDRs(s string) []netip.Prefix {
	p, err := netlisten.ParseCIDRs(s)
	if err != nil {
		panic(err)
	}
	return p
}

// v1 is a PROXY v1 header written by hand from the specification.
const v1 = "PROXY TCP4 203.0.113.7 198.51.100.1 40001 1883\r\n"

// v2 is a PROXY v2 header written by hand from the specification: the
// signature, version 2 / PROXY, TCP over IPv4, the addresses and ports,
// then TLVs (ALPN and a NOOP, which must be skipped unread).
func v2(tlvs ...[]byte) []byte {
	var body bytes.Buffer
	body.Write([]byte{203, 0, 113, 9, 198, 51, 100, 1})
	binary.Write(&body, binary.BigEndian, uint16(40002))
	binary.Write(&body, binary.BigEndian, uint16(8883))
	for _, t := range tlvs {
		body.Write(t)
	}
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	h = append(h, 0x21, 0x11)
	h = binary.BigEndian.AppendUint16(h, uint16(body.Len()))
	return append(h, body.Bytes()...)
}

func tlv(kind byte, v string) []byte {
	return append([]byte{kind, byte(len(v) >> 8), byte(len(v))}, v...)
}

// v2Local is a v2 LOCAL header, as a load balancer's health check sends.
var v2Local = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")

func libraryHeader(t *testing.T, src, dst string, version byte) []byte {
	t.Helper()
	s, _ := net.ResolveTCPAddr("tcp", src)
	d, _ := net.ResolveTCPAddr("tcp", dst)
	var b bytes.Buffer
	if _, err := proxyproto.HeaderProxyFromAddrs(version, s, d).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// refusals records a listener's policy refusals.
type refusals struct {
	mu  sync.Mutex
	got []netlisten.Refusal
}

func (r *refusals) add(_ net.Addr, why netlisten.Refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, why)
}

func (r *refusals) list() []netlisten.Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netlisten.Refusal(nil), r.got...)
}

// accepted is what one connection became: a served connection's address
// and first bytes, or nothing.
type accepted struct {
	remote string
	data   string
}

func TestProxyPolicy(t *testing.T) {
	const payload = "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00" // an MQTT CONNECT
	for _, tc := range []struct {
		name    string
		proxy   *netlisten.Proxy // Refused is set by the test
		send    []byte
		want    *accepted // nil: closed by the policy
		refusal netlisten.Refusal
	}{
		{name: "v1 by hand", proxy: &netlisten.Proxy{Trusted: loopback}, send: []byte(v1 + payload),
			want: &accepted{"203.0.113.7:40001", payload}},
		{name: "v2 by hand with TLVs", proxy: &netlisten.Proxy{Trusted: loopback},
			send: append(v2(tlv(0x01, "mqtt"), tlv(0x04, "\x00\x00"), tlv(0xEE, strings.Repeat("x", 300))), payload...),
			want: &accepted{"203.0.113.9:40002", payload}},
		{name: "v2 by the library, IPv6", proxy: &netlisten.Proxy{Trusted: loopback},
			send: append(libraryHeader(t, "[2001:db8::5]:5555", "[2001:db8::1]:1883", 2), payload...),
			want: &accepted{"[2001:db8::5]:5555", payload}},
		{name: "v1 by the library", proxy: &netlisten.Proxy{Trusted: loopback},
			send: append(libraryHeader(t, "198.51.100.77:1234", "198.51.100.1:1883", 1), payload...),
			want: &accepted{"198.51.100.77:1234", payload}},
		{name: "v2 LOCAL keeps the socket's address", proxy: &netlisten.Proxy{Trusted: loopback},
			send: append(v2Local, payload...), want: &accepted{"socket", payload}},
		{name: "trusted source without a header", proxy: &netlisten.Proxy{Trusted: loopback},
			send: []byte(payload), refusal: netlisten.RefusedHeader},
		{name: "trusted source with a broken v1 header", proxy: &netlisten.Proxy{Trusted: loopback},
			send: []byte("PROXY TCP4 203.0.113.7 nonsense\r\n" + payload), refusal: netlisten.RefusedHeader},
		{name: "trusted source silent", proxy: &netlisten.Proxy{Trusted: loopback, HeaderTimeout: 100 * time.Millisecond},
			refusal: netlisten.RefusedHeader},
		{name: "untrusted source refused", proxy: &netlisten.Proxy{Trusted: elsewhere},
			send: []byte(v1 + payload), refusal: netlisten.RefusedUntrusted},
		{name: "untrusted source served directly cannot spoof", proxy: &netlisten.Proxy{Trusted: elsewhere, Untrusted: netlisten.DirectUntrusted},
			send: []byte(v1 + payload), want: &accepted{"socket", v1 + payload}},
		{name: "no PROXY on the listener: a header is data", send: []byte(v1 + payload),
			want: &accepted{"socket", v1 + payload}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var refused refusals
			if tc.proxy != nil {
				tc.proxy.Refused = refused.add
			}
			ln, err := netlisten.Listen(netlisten.Config{Addr: "127.0.0.1:0", Proxy: tc.proxy})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			got := make(chan accepted, 1)
			go func() {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				defer s.Close()
				buf := make([]byte, len(tc.send))
				s.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _ := io.ReadAtLeast(s, buf, 1)
				got <- accepted{s.RemoteAddr().String(), string(buf[:n])}
			}()
			if tc.want == nil {
				// The client sees its connection closed, and nothing is accepted.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
					t.Fatalf("read on a refused connection: %v, want it closed", err)
				}
				select {
				case a := <-got:
					t.Fatalf("accepted %+v", a)
				case <-time.After(50 * time.Millisecond):
				}
				if r := refused.list(); len(r) != 1 || r[0] != tc.refusal {
					t.Fatalf("refusals %v, want [%s]", r, tc.refusal)
				}
				return
			}
			select {
			case a := <-got:
				want := *tc.want
				if want.remote == "socket" {
					want.remote = c.LocalAddr().String()
				}
				if a.remote != want.remote {
					t.Errorf("RemoteAddr %s, want %s", a.remote, want.remote)
				}
				if !strings.HasPrefix(want.data, a.data) || a.data == "" {
					t.Errorf("first bytes %q, want %q", a.data, want.data)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("nothing accepted")
			}
			if r := refused.list(); len(r) != 0 {
				t.Errorf("refusals %v", r)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A trusted source that is slow to send its header holds up no other
// connection, and Close ends the wait at once.
func TestProxySlowHeaderBlocksNobody(t *testing.T) {
	ln, err := netlisten.Listen(netlisten.Config{Addr: "127.0.0.1:0", Proxy: &netlisten.Proxy{Trusted: loopback, HeaderTimeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("PROXY TCP4 203.0.")) // and nothing more
	fast, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	fast.Write([]byte(v1))
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.RemoteAddr().String(); got != "203.0.113.7:40001" {
		t.Errorf("RemoteAddr %s", got)
	}
	s.Close()
	start := time.Now()
	ln.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s with a header pending", d)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

// The PROXY header comes before the TLS handshake.
func TestProxyBeforeTLS(t *testing.T) {
	cert := testCertificate(t)
	ln, err := netlisten.Listen(netlisten.Config{Addr: "127.0.0.1:0", Proxy: &netlisten.Proxy{Trusted: loopback},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write(v2())
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("hello"))
		done <- err
	}()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().String(); got != "203.0.113.9:40002" {
		t.Errorf("RemoteAddr %s", got)
	}
	r := bufio.NewReader(s)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hello" {
		t.Errorf("read %q, %v", buf, err)
	}
	if _, ok := s.(*tls.Conn); !ok {
		t.Errorf("accepted a %T, want *tls.Conn", s)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
