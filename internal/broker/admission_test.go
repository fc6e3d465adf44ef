package broker

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestSourceKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"127.0.0.1:5555", "127.0.0.1"},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3"},
		{"[2001:db8:1:2:3:4:5:6]:1883", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:1", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:1883", "fe80::/64"},
		{"pipe", "pipe"},
	} {
		if got := sourceKey(tt.in); got != tt.want {
			t.Errorf("sourceKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzSourceKey(f *testing.F) {
	for _, s := range []string{"127.0.0.1:1", "[::1]:2", "", "x:y:z", "[fe80::1%25eth0]:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := sourceKey(s)
		if host, _, err := net.SplitHostPort(s); err == nil && !strings.Contains(host, ":") && net.ParseIP(host) != nil && k != net.ParseIP(host).String() {
			t.Fatalf("sourceKey(%q) = %q, want the IP", s, k)
		}
	})
}

func TestAdmissionCap(t *testing.T) {
	refused := 0
	a := newAdmission(time.Second, 2, time.Now, func() { refused++ })
	for i, tt := range []struct {
		op   string
		src  string
		want bool
	}{
		{"take", "a", true}, {"take", "a", true}, {"take", "a", false}, {"take", "b", true},
		{"release", "a", true}, {"take", "a", true}, {"take", "a", false},
		{"release", "a", true}, {"release", "a", true}, {"take", "a", true}, {"take", "a", true},
	} {
		switch tt.op {
		case "take":
			if got := a.take(tt.src); got != tt.want {
				t.Fatalf("step %d: take(%s) = %v, want %v", i, tt.src, got, tt.want)
			}
		case "release":
			a.release(tt.src)
		}
	}
	a.release("a")
	a.release("a")
	a.release("b")
	if len(a.pending) != 0 {
		t.Fatalf("pending left: %v", a.pending)
	}
}
