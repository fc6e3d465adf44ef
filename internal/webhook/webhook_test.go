package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// loopback opens the test servers' addresses, which the default policy refuses.
var loopback = Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1700000000, 0)
	h := Sign([]byte("k"), now, []byte("body"))
	if !Verify([]byte("k"), h, []byte("body"), now, time.Minute) {
		t.Fatal("own signature refused")
	}
	for _, tt := range []struct {
		key, body string
		at        time.Time
	}{{"x", "body", now}, {"k", "bodY", now}, {"k", "body", now.Add(time.Hour)}} {
		if Verify([]byte(tt.key), h, []byte(tt.body), tt.at, time.Minute) {
			t.Fatalf("verified %+v", tt)
		}
	}
	if Verify([]byte("k"), "garbage", nil, now, time.Minute) {
		t.Fatal("garbage header verified")
	}
}

func TestCallRetriesAndSigns(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !Verify([]byte("key"), r.Header.Get(SignatureHeader), body, time.Now(), time.Minute) {
			w.WriteHeader(401)
			return
		}
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"allow": true})
	}))
	defer srv.Close()
	c := New(Options{Secret: []byte("key"), Policy: loopback})
	var out struct{ Allow bool }
	if err := c.Call(context.Background(), srv.URL, map[string]string{"a": "b"}, &out, 2*time.Second); err != nil || !out.Allow {
		t.Fatalf("%v %+v", err, out)
	}
	if calls.Load() != 2 {
		t.Fatalf("calls = %d", calls.Load())
	}
}

func TestCallTimesOut(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	c := New(Options{Secret: []byte("k"), Policy: loopback})
	start := time.Now()
	if err := c.Call(context.Background(), srv.URL, 1, nil, 200*time.Millisecond); err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestEventsAreRetried(t *testing.T) {
	var calls atomic.Int32
	got := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(500)
			return
		}
		got <- struct{}{}
	}))
	defer srv.Close()
	c := New(Options{Secret: []byte("k"), EventBackoff: 10 * time.Millisecond, Policy: loopback})
	c.Start(1)
	defer c.Stop()
	c.Post(srv.URL, map[string]string{"event": "x"})
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatalf("event not delivered after %d calls", calls.Load())
	}
}
