package distribution_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink/alinktest"
	"github.com/corral-iot/corral/internal/distribution"
)

// sdkScan reads a bootstrap answer as the Link SDK C v4 does: the body
// into a 192-byte buffer, then a flat search for the first "host", "port"
// and "ip" keys, each value a string without its quotes or a bare number
// up to ',' or '}'. It answers the host, port and backup ip, or ok false
// where the SDK would give up. Written from the SDK's behaviour, not its
// code.
func sdkScan(status int, body []byte) (host string, port int, ip string, ok bool) {
	if status != 200 {
		return "", 0, "", false
	}
	if len(body) > distribution.MaxAnswer {
		body = body[:distribution.MaxAnswer]
	}
	value := func(key string) (string, bool) {
		k := []byte(`"` + key + `"`)
		i := bytes.Index(body, k)
		if i < 0 {
			return "", false
		}
		rest := bytes.TrimLeft(body[i+len(k):], " ")
		if len(rest) == 0 || rest[0] != ':' {
			return "", false
		}
		rest = bytes.TrimLeft(rest[1:], " ")
		if len(rest) > 0 && rest[0] == '"' {
			end := bytes.IndexByte(rest[1:], '"')
			if end < 0 {
				return "", false
			}
			return string(rest[1 : 1+end]), true
		}
		end := bytes.IndexAny(rest, ",}")
		if end < 0 {
			return "", false
		}
		return string(rest[:end]), true
	}
	h, ok1 := value("host")
	p, ok2 := value("port")
	if !ok1 || !ok2 {
		return "", 0, "", false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, "", false
	}
	if v, ok := value("ip"); ok && len(v) < 16 {
		ip = v
	}
	return h, n, ip, true
}

// rawBootstrap sends the SDK's exact request over a raw socket and reads
// the answer as the SDK does.
func rawBootstrap(t *testing.T, addr, req string) (int, []byte) {
	t.Helper()
	return rawBootstrapFrom(t, addr, "", req)
}

// rawBootstrapFrom is rawBootstrap from a bound source address ("" for
// any; all of 127/8 is loopback on Linux).
func rawBootstrapFrom(t *testing.T, addr, src, req string) (int, []byte) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, body
}

func sdkPost(host, pk, dn string) string {
	form := fmt.Sprintf("productKey=%s&deviceName=%s&clientId=%s.%s&resources=mqtt", pk, dn, pk, dn)
	return "POST /auth/bootstrap HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/xml,text/javascript,text/html,application/json\r\n" +
		"Content-Type: application/x-www-form-urlencoded;charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(form)) + "\r\n\r\n" + form
}

func formPost(form string) string {
	return "POST /auth/bootstrap HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + strconv.Itoa(len(form)) + "\r\n\r\n" + form
}

func TestHandlerLinkSDKAnswers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if _, err := f.svc.PutInstance(ctx, f.admin, distribution.InstanceInput{ID: "long", Region: "ap-southeast-1",
		MQTT: strings.Repeat("h", 60) + ".io:65535", BackupIP: "203.0.113.255"}, false); err != nil {
		t.Fatal(err)
	}
	f.svc.SetRecord(ctx, f.admin, pk1, "longest", distribution.RecordInput{TargetIotInstanceID: "long"})
	srv := httptest.NewServer(f.svc.Handler(true))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, tt := range []struct {
		name, req string
		status    int
		host      string
		port      int
		ip        string
	}{
		{"default", sdkPost(addr, pk1, "newdevice"), 200, "centre.example", 1883, ""},
		{"unknown product gets the same", sdkPost(addr, "zzzzzzzzzzz", "newdevice"), 200, "centre.example", 1883, ""},
		{"longest host and backup ip fit 192 bytes", sdkPost(addr, pk1, "longest"), 200, strings.Repeat("h", 60) + ".io", 65535, "203.0.113.255"},
		{"region get", "GET /auth/bootstrap/regionId/0 HTTP/1.1\r\nHost: x\r\nAccept: text/xml,text/javascript,text/html,application/json\r\n\r\n", 200, "centre.example", 1883, ""},
		{"missing productKey", "POST /auth/bootstrap HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\ndeviceName=abc", 400, "", 0, ""},
		{"bad clientId", formPost("productKey=a1ProductKy&deviceName=dev1&clientId=" + strings.Repeat("c", 65)), 400, "", 0, ""},
		{"deviceName too long", formPost("productKey=a1ProductKy&deviceName=" + strings.Repeat("d", 33)), 400, "", 0, ""},
		{"body over 1 KB", formPost("productKey=a1ProductKy&deviceName=dev1&version=" + strings.Repeat("v", 1024)), 413, "", 0, ""},
		{"bad region", "GET /auth/bootstrap/regionId/x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "", 0, ""},
		{"wrong method", "GET /auth/bootstrap HTTP/1.1\r\nHost: x\r\n\r\n", 405, "", 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := rawBootstrap(t, addr, tt.req)
			if status != tt.status {
				t.Fatalf("status %d %s", status, body)
			}
			alinktest.Golden(t, "bootstrap-"+strings.ReplaceAll(tt.name, " ", "-"), body)
			host, port, ip, ok := sdkScan(status, body)
			if ok != (tt.status == 200) || host != tt.host || port != tt.port || ip != tt.ip {
				t.Fatalf("the SDK reads %q %d %q %v from %s", host, port, ip, ok, body)
			}
			if status == 200 && len(body) > distribution.MaxAnswer {
				t.Fatalf("%d bytes: over the SDK's buffer", len(body))
			}
		})
	}
}

func TestHandlerTLSOnly(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	srv := httptest.NewServer(f.svc.Handler(false))
	defer srv.Close()
	resp, err := http.PostForm(srv.URL+distribution.BootstrapPath, url.Values{"productKey": {pk1}, "deviceName": {"dev1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("plain HTTP with plain off: %d", resp.StatusCode)
	}
	tsrv := httptest.NewTLSServer(f.svc.Handler(false))
	defer tsrv.Close()
	resp, err = tsrv.Client().PostForm(tsrv.URL+distribution.BootstrapPath, url.Values{"productKey": {pk1}, "deviceName": {"dev1"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if host, port, _, ok := sdkScan(resp.StatusCode, body); !ok || host != "centre.example" || port != 8883 {
		t.Fatalf("over TLS: %d %s", resp.StatusCode, body)
	}
}

// FuzzBootstrapForm: any body gets a JSON answer with a status, never a
// panic, and a 200 answer always reads as an endpoint.
func FuzzBootstrapForm(f *testing.F) {
	fx := newFixture(f, fixtureOptions{})
	h := fx.svc.Handler(true)
	f.Add("productKey=a1ProductKy&deviceName=dev1&clientId=a1ProductKy.dev1&resources=mqtt")
	f.Add("productKey=&deviceName=")
	f.Add("productKey=%zz")
	f.Add("productKey=a1ProductKy&productKey=a1ProductKy&deviceName=dev1")
	f.Fuzz(func(t *testing.T, form string) {
		r := httptest.NewRequest("POST", distribution.BootstrapPath, strings.NewReader(form))
		r.RemoteAddr = "192.0.2.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !strings.HasPrefix(w.Body.String(), `{"code":`) {
			t.Fatalf("%d %q", w.Code, w.Body)
		}
		if _, _, _, ok := sdkScan(w.Code, w.Body.Bytes()); ok != (w.Code == 200) {
			t.Fatalf("%d %q", w.Code, w.Body)
		}
	})
}

// TestHandlerRateLimited: past the per-source budget, 429 with
// Retry-After and the SDK-readable error shape; another source is served.
func TestHandlerRateLimited(t *testing.T) {
	f := newFixture(t, fixtureOptions{rate: 1})
	h := f.svc.Handler(true)
	ask := func(src string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", distribution.BootstrapPath, strings.NewReader("productKey="+pk1+"&deviceName=dev1"))
		r.RemoteAddr = src
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for range 3 {
		if w := ask("192.0.2.7:1000"); w.Code != 200 {
			t.Fatalf("within the burst: %d %s", w.Code, w.Body)
		}
	}
	w := ask("192.0.2.7:1001")
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d %v", w.Code, w.Header())
	}
	alinktest.Golden(t, "bootstrap-rate-limited", w.Body.Bytes())
	if w := ask("192.0.2.8:1000"); w.Code != 200 {
		t.Fatalf("another source: %d", w.Code)
	}
}

// FuzzBootstrapPath: any path and method under /auth/bootstrap gets a
// JSON answer with a status, never a panic.
func FuzzBootstrapPath(f *testing.F) {
	fx := newFixture(f, fixtureOptions{})
	h := fx.svc.Handler(true)
	for _, s := range []string{"/regionId/0", "/regionId/20", "/regionId/-1", "/regionId/99999999999999999999", "/regionId/", "/x", ""} {
		f.Add("GET", s)
	}
	f.Add("POST", "/regionId/1")
	f.Fuzz(func(t *testing.T, method, rest string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n") {
			return
		}
		u := &url.URL{Path: distribution.BootstrapPath + rest}
		r, err := http.NewRequest(method, u.String(), nil)
		if err != nil {
			return
		}
		r.RemoteAddr = "192.0.2.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !strings.HasPrefix(w.Body.String(), `{"code":`) {
			t.Fatalf("%s %q: %d %q", method, rest, w.Code, w.Body)
		}
	})
}
