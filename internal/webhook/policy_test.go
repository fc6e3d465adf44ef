package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	open := Policy{Allow: mustCIDRs(t, "127.0.0.0/8, 10.1.0.0/16,fd00::/8")}
	for _, tt := range []struct {
		addr            string
		byDefault, open bool // allowed by default, allowed with open
	}{
		{"8.8.8.8", true, true},
		{"1.1.1.1", true, true},
		{"2606:4700:4700::1111", true, true},
		{"127.0.0.1", false, true},
		{"127.1.2.3", false, true},
		{"0.0.0.0", false, false},
		{"0.1.2.3", false, false},
		{"::", false, false},
		{"::1", false, false},
		{"::ffff:127.0.0.1", false, true}, // IPv4-mapped: judged as IPv4
		{"::ffff:169.254.169.254", false, false},
		{"::ffff:8.8.8.8", true, true},
		{"::127.0.0.1", false, false}, // IPv4-compatible
		{"169.254.169.254", false, false},
		{"10.0.0.1", false, false},
		{"10.1.2.3", false, true},
		{"172.16.0.1", false, false},
		{"172.31.255.255", false, false},
		{"172.32.0.1", true, true},
		{"192.168.1.1", false, false},
		{"100.64.0.1", false, false},
		{"100.127.255.255", false, false},
		{"100.128.0.1", true, true},
		{"224.0.0.1", false, false},
		{"239.255.255.250", false, false},
		{"255.255.255.255", false, false},
		{"fc00::1", false, false},
		{"fd00:ec2::254", false, true},
		{"fe80::1", false, false},
		{"fe80::1%eth0", false, false},
		{"ff02::1", false, false},
		{"64:ff9b::7f00:1", false, true},      // NAT64 of 127.0.0.1
		{"64:ff9b::808:808", true, true},      // NAT64 of 8.8.8.8
		{"2002:7f00:1::1", false, true},       // 6to4 of 127.0.0.1
		{"2002:808:808::1", true, true},       // 6to4 of 8.8.8.8
		{"2001:0:4136:e378::1", false, false}, // Teredo
	} {
		a := netip.MustParseAddr(tt.addr)
		if err := (Policy{}).CheckAddr(a); (err == nil) != tt.byDefault || err != nil && !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("default policy, %s: %v, want allowed=%v", tt.addr, err, tt.byDefault)
		}
		if err := open.CheckAddr(a); (err == nil) != tt.open {
			t.Errorf("open policy, %s: %v, want allowed=%v", tt.addr, err, tt.open)
		}
	}
	if (Policy{}).CheckAddr(netip.Addr{}) == nil {
		t.Error("the zero address is allowed")
	}
}

func mustCIDRs(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseCIDRs(t *testing.T) {
	got := mustCIDRs(t, " 10.0.0.0/8 ,,192.168.1.7, 10.1.2.3/16, ::1")
	want := "[10.0.0.0/8 192.168.1.7/32 10.1.0.0/16 ::1/128]"
	if fmtPrefixes(got) != want {
		t.Fatalf("got %s, want %s", fmtPrefixes(got), want)
	}
	for _, bad := range []string{"10.0.0.0/33", "nope", "10.0.0.0/8,x"} {
		if _, err := ParseCIDRs(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func fmtPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestCheckURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		err error
	}{
		{"https://hooks.example.com/x", nil},
		{"http://example.com:8080/a?b=c", nil},
		{"http://8.8.8.8/", nil},
		{"http://[2606:4700:4700::1111]:443/", nil},
		{"ftp://example.com/", ErrBadURL},
		{"file:///etc/passwd", ErrBadURL},
		{"gopher://127.0.0.1/", ErrBadURL},
		{"//example.com/", ErrBadURL},
		{"example.com", ErrBadURL},
		{"http://", ErrBadURL},
		{"http://user:pw@example.com/", ErrBadURL},
		{"http://127.0.0.1:9000/hook", ErrForbiddenAddress},
		{"http://169.254.169.254/latest/meta-data/", ErrForbiddenAddress},
		{"http://[::1]/", ErrForbiddenAddress},
		{"http://[::ffff:127.0.0.1]/", ErrForbiddenAddress},
		{"http://[fe80::1%25eth0]/", ErrForbiddenAddress},
		{"http://0.0.0.0/", ErrForbiddenAddress},
		{"http://localhost:8080/", nil},             // a name: checked when called, against what it resolves to
		{"http://2130706433/", ErrForbiddenAddress}, // 127.0.0.1 as one number
		{"http://0x7f.1/", ErrForbiddenAddress},
		{"http://0177.0.0.1/", ErrForbiddenAddress},
		{"http://10.1/", ErrForbiddenAddress},
	} {
		err := (Policy{}).CheckURL(tt.url)
		if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
			t.Errorf("%s: %v, want %v", tt.url, err, tt.err)
		}
	}
	if err := (Policy{Allow: mustCIDRs(t, "127.0.0.0/8")}).CheckURL("http://127.0.0.1:9000/"); err != nil {
		t.Errorf("allowlisted address refused: %v", err)
	}
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1/", "https://example.com/x", "http://0x7f.1/", "http://[::ffff:10.0.0.1]/", "http://2130706433/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := (Policy{}).CheckURL(raw)
		if err != nil {
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("%q accepted", raw)
		}
		if a, perr := netip.ParseAddr(u.Hostname()); perr == nil && (Policy{}).CheckAddr(a) != nil {
			t.Fatalf("%q accepted with a forbidden literal address", raw)
		}
	})
}

// TestCallChecksTheDialledAddress: a host name passes configuration, and
// what it resolves to is checked when the call dials; "localhost" stands
// for a name an attacker rebinds to the loopback address after the check.
func TestCallChecksTheDialledAddress(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	byName := "http://localhost:" + u.Port() + "/hook"
	c := New(Options{Secret: []byte("k")})
	for _, target := range []string{srv.URL, byName} {
		err := c.Call(context.Background(), target, 1, nil, 2*time.Second)
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Fatalf("%s: %v, want ErrForbiddenAddress", target, err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the loopback server was called %d times", n)
	}
	open := New(Options{Secret: []byte("k"), Policy: loopback})
	if err := open.Call(context.Background(), byName, 1, nil, 2*time.Second); err != nil {
		t.Fatalf("allowlisted: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("allowlisted server called %d times", n)
	}
}

// TestRedirectsAreNotFollowed: a 3xx fails the call, and its target is
// never reached, even when it is an allowed address.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var reached atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer target.Close()
	for _, code := range []int{301, 302, 303, 307, 308} {
		redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/elsewhere", code)
		}))
		c := New(Options{Secret: []byte("k"), Policy: loopback})
		err := c.Call(context.Background(), redir.URL, 1, nil, 2*time.Second)
		redir.Close()
		if !errors.Is(err, ErrStatus) || !strings.Contains(err.Error(), "3") {
			t.Fatalf("%d: %v, want a failed call", code, err)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("redirect target reached %d times", n)
	}
}

// TestErrorsNameNoURLSecret: a function URL's path and query are often
// its key; errors name only the scheme and host.
func TestErrorsNameNoURLSecret(t *testing.T) {
	c := New(Options{Secret: []byte("k")})
	for _, u := range []string{"http://127.0.0.1:1/services/T00/B00/SECRETPATH?code=SECRETQUERY", "http://user:SECRETPW@127.0.0.1:1/"} {
		err := c.Call(context.Background(), u, 1, nil, time.Second)
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("error %v", err)
		}
	}
	if got := Redact("https://hooks.example.com:8443/a/b?k=v"); got != "https://hooks.example.com:8443" {
		t.Fatalf("Redact = %q", got)
	}
}
