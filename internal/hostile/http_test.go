package hostile_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// httpPage is one page of any list answer: the items under their key, and
// the cursor to the next page.
type httpPage struct {
	Devices    []map[string]any `json:"devices"`
	Entries    []map[string]any `json:"entries"`
	Products   []map[string]any `json:"products"`
	NextCursor string           `json:"nextCursor"`
}

func (p httpPage) items() []map[string]any {
	switch {
	case p.Devices != nil:
		return p.Devices
	case p.Entries != nil:
		return p.Entries
	}
	return p.Products
}

// httpWalk lists path page by page with limit and returns every item's
// key field, failing on a duplicate or a short page that carries a cursor.
func (w *world) httpWalk(t *testing.T, token, path, limit, key string) []string {
	t.Helper()
	var got []string
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 2000 {
			t.Fatalf("%s: more than 2000 pages", path)
		}
		q := url.Values{"limit": {limit}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p httpPage
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		w.do(token, "GET", path+sep+q.Encode(), nil, 200).JSON(t, &p)
		for _, it := range p.items() {
			k := httpString(it[key])
			if seen[k] {
				t.Fatalf("%s: %s twice", path, k)
			}
			seen[k] = true
			got = append(got, k)
		}
		if p.NextCursor == "" {
			return got
		}
		if n, _ := strconv.Atoi(limit); len(p.items()) < n {
			t.Fatalf("%s: a page of %d (limit %d) carries a cursor", path, len(p.items()), n)
		}
		cursor = p.NextCursor
	}
}

func httpString(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprint(v)
}

// TestHTTPPagingLosesNothing: a product of 1,005 devices listed at the
// largest page size (and at a small one) yields every device once, each
// page that is not the last carrying a cursor; a limit over the maximum
// is refused naming it. The audit trail pages the same way.
func TestHTTPPagingLosesNothing(t *testing.T) {
	w := newWorld(t)
	p := w.S.CreateProduct("many", nil)
	var batch struct {
		Devices []map[string]any `json:"devices"`
	}
	w.do(w.T1.Admin, "POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"count": 1005}, 201).JSON(t, &batch)
	if len(batch.Devices) != 1005 {
		t.Fatalf("batch created %d devices", len(batch.Devices))
	}
	devices := "/v1/products/" + p.ProductKey + "/devices"
	for _, limit := range []string{"1000", "333"} {
		if got := w.httpWalk(t, w.T1.Readonly, devices, limit, "deviceName"); len(got) != 1005 {
			t.Fatalf("limit=%s walked %d of 1005 devices", limit, len(got))
		}
	}
	for _, path := range []string{devices, "/v1/products", "/v1/audit"} {
		r := w.S.Do(w.T1.Admin, "GET", path+"?limit=1001", nil)
		if r.Status != 400 || !strings.Contains(string(r.Body), `"field":"limit"`) || !strings.Contains(string(r.Body), "1000") {
			t.Fatalf("%s?limit=1001 = %d %s, want 400 naming limit and its maximum 1000", path, r.Status, r.Body)
		}
	}

	// The audit trail: more than a page of entries (secret reads are audited).
	names := make(chan string, len(batch.Devices))
	for _, d := range batch.Devices {
		names <- d["deviceName"].(string)
	}
	close(names)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dn := range names {
				if r := w.S.Do(w.T1.Admin, "GET", devices+"/"+dn+"/secret", nil); r.Status != 200 {
					t.Errorf("reading %s's secret: %d", dn, r.Status)
				}
			}
		}()
	}
	wg.Wait()
	// Audit rows are written in the store's next group commit; a durable
	// write queued after them (a device created) commits no earlier, so
	// once it is answered every read is in the trail.
	w.S.CreateDevice(p.ProductKey, "audit-fence")
	reads := func(limit string) int {
		return len(w.httpWalk(t, w.T1.Admin, "/v1/audit?action=device.secret.read", limit, "id"))
	}
	if n := reads("1000"); n != 1005 {
		t.Fatalf("audit at limit=1000 walked %d of 1005 secret reads", n)
	}
	if n := reads("400"); n != 1005 {
		t.Fatalf("audit at limit=400 walked %d of 1005 secret reads", n)
	}
}

// TestHTTPPrefixIsLiteral: LIKE wildcards in prefix= match themselves.
func TestHTTPPrefixIsLiteral(t *testing.T) {
	w := newWorld(t)
	devices := "/v1/products/" + w.T1.Direct.ProductKey + "/devices"
	for _, prefix := range []string{"%", "dev%", "%A", "_", "de_A", `\`, `dev\`} {
		if got := w.httpWalk(t, w.T1.Readonly, devices+"?prefix="+url.QueryEscape(prefix), "100", "deviceName"); len(got) != 0 {
			t.Fatalf("prefix=%q listed %v, want nothing (no name starts with it)", prefix, got)
		}
	}
	if got := w.httpWalk(t, w.T1.Readonly, devices+"?prefix=devA", "100", "deviceName"); len(got) != 1 || got[0] != "devA" {
		t.Fatalf("prefix=devA listed %v", got)
	}
}

// ssrfTarget is a local HTTP server standing for what an attacker points
// webhooks at (the server itself, a metadata service); it records the
// paths it is called on.
type ssrfTarget struct {
	srv   *httptest.Server
	calls chan string
	port  string
}

// ssrfServe listens on host (an address of the loopback network) and
// answers h, recording each call's path.
func ssrfServe(t *testing.T, host string, h http.HandlerFunc) *ssrfTarget {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	st := &ssrfTarget{calls: make(chan string, 100)}
	st.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		st.calls <- r.URL.Path
		if h != nil {
			h(rw, r)
		}
	}))
	st.srv.Listener.Close()
	st.srv.Listener = ln
	st.srv.Start()
	t.Cleanup(st.srv.Close)
	_, st.port, _ = net.SplitHostPort(ln.Addr().String())
	return st
}

// called returns the paths called so far.
func (st *ssrfTarget) called() []string {
	var out []string
	for {
		select {
		case p := <-st.calls:
			out = append(out, p)
		default:
			return out
		}
	}
}

// wait waits up to 5 s for a call on path and returns the calls before it.
func (st *ssrfTarget) wait(t *testing.T, path string) []string {
	t.Helper()
	var before []string
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-st.calls:
			if p == path {
				return before
			}
			before = append(before, p)
		case <-deadline:
			t.Fatalf("no call on %s within 5 s (got %v)", path, before)
			return nil
		}
	}
}

var httpInsecure = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// httpRegister registers dn in p over HTTPS dynamic registration (Alibaba's
// form) and returns the answer's code (200 on success).
func (w *world) httpRegister(t *testing.T, p apptest.Product, dn string) int {
	t.Helper()
	random := fmt.Sprintf("r%d", w.seq.Add(1))
	m := hmac.New(sha256.New, []byte(p.ProductSecret))
	m.Write([]byte("deviceName" + dn + "productKey" + p.ProductKey + "random" + random))
	form := url.Values{"productKey": {p.ProductKey}, "deviceName": {dn}, "random": {random}, "sign": {hex.EncodeToString(m.Sum(nil))}, "signMethod": {"hmacsha256"}}
	resp, err := httpInsecure.Post("https://"+w.S.App.HTTPSAddr()+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		Code int `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatalf("registration answer: %v", err)
	}
	return ans.Code
}

// httpHooked creates a product with dynamic registration whose
// pre-registration hook and event URLs are given.
func (w *world) httpHooked(t *testing.T, hook string, events ...string) apptest.Product {
	t.Helper()
	var p apptest.Product
	w.do(w.T1.Admin, "POST", "/v1/products", map[string]any{"name": "hooked", "dynamicRegistration": "auto",
		"provisioning": map[string]any{"hookUrl": hook, "eventUrls": events}}, 201).JSON(t, &p)
	return p
}

const httpDenied = 6206 // provision.CodeDenied

// TestHTTPWebhooksRefuseLocalAddresses: by default a webhook URL whose host
// is a loopback, link-local or private address is refused when it is set
// (400 naming the field), and one whose name resolves to such an address
// is refused when it is called: the pre-registration hook then fails
// closed (the registration is denied) and events are not delivered.
func TestHTTPWebhooksRefuseLocalAddresses(t *testing.T) {
	// 127.0.0.2 is opened for the fence server only; 127.0.0.1 stays closed.
	w := newWorld(t, apptest.AllowWebhooksTo("127.0.0.2/32"))
	local := ssrfServe(t, "127.0.0.1", func(rw http.ResponseWriter, r *http.Request) {
		json.NewEncoder(rw).Encode(map[string]any{"allow": true})
	})
	fence := ssrfServe(t, "127.0.0.2", nil)

	for _, tt := range []struct{ field, url string }{
		{"provisioning.hookUrl", "http://127.0.0.1:" + local.port + "/hook"},
		{"provisioning.hookUrl", "http://169.254.169.254/latest/meta-data/"},
		{"provisioning.hookUrl", "http://[::1]:" + local.port + "/hook"},
		{"provisioning.hookUrl", "http://[::ffff:127.0.0.1]:" + local.port + "/hook"},
		{"provisioning.hookUrl", "http://0.0.0.0:" + local.port + "/hook"},
		{"provisioning.hookUrl", "http://2130706433:" + local.port + "/hook"},
		{"provisioning.hookUrl", "http://10.0.0.1/hook"},
		{"provisioning.hookUrl", "http://[fd00:ec2::254]/latest/meta-data/"},
		{"provisioning.hookUrl", "gopher://example.com/"},
		{"provisioning.eventUrls[1]", "http://192.168.1.1/events"},
	} {
		pv := map[string]any{"eventUrls": []string{"https://hooks.example.com/e"}}
		if tt.field == "provisioning.hookUrl" {
			pv["hookUrl"] = tt.url
		} else {
			pv["eventUrls"] = []string{"https://hooks.example.com/e", tt.url}
		}
		r := w.S.Do(w.T1.Admin, "POST", "/v1/products", map[string]any{"name": "ssrf", "provisioning": pv})
		if r.Status != 400 || !strings.Contains(string(r.Body), `"field":"`+tt.field+`"`) {
			t.Errorf("product with %s %s = %d %s, want 400 naming the field", tt.field, tt.url, r.Status, r.Body)
		}
		r = w.S.Do(w.T1.Admin, "PATCH", "/v1/products/"+w.T1.Direct.ProductKey, map[string]any{"provisioning": pv})
		if r.Status != 400 || !strings.Contains(string(r.Body), `"field":"`+tt.field+`"`) {
			t.Errorf("patching %s to %s = %d %s, want 400 naming the field", tt.field, tt.url, r.Status, r.Body)
		}
	}

	// A name is checked when called, against the address it resolves to
	// then (as a rebinding name would be): "localhost" is 127.0.0.1.
	byName := "http://localhost:" + local.port
	p := w.httpHooked(t, byName+"/hook", byName+"/events", "http://127.0.0.2:"+fence.port+"/fence")
	if code := w.httpRegister(t, p, "ssrf-01"); code != httpDenied {
		t.Fatalf("registration with an unreachable hook answered code %d, want %d (denied: the hook fails closed)", code, httpDenied)
	}
	w.do(w.T1.Admin, "GET", "/v1/products/"+p.ProductKey+"/devices/ssrf-01", nil, 404)
	// The fence event was queued after the one for the local server.
	fence.wait(t, "/fence")
	if got := local.called(); len(got) != 0 {
		t.Fatalf("the local server was called on %v", got)
	}
}

// TestHTTPWebhooksAllowlisted: with the operator's allowlist holding the
// range, the same local hook and events are accepted and called.
func TestHTTPWebhooksAllowlisted(t *testing.T) {
	w := newWorld(t, apptest.AllowWebhooksTo("127.0.0.0/8"))
	local := ssrfServe(t, "127.0.0.1", func(rw http.ResponseWriter, r *http.Request) {
		json.NewEncoder(rw).Encode(map[string]any{"allow": true})
	})
	base := "http://127.0.0.1:" + local.port
	p := w.httpHooked(t, base+"/hook", base+"/events")
	if code := w.httpRegister(t, p, "local-01"); code != 200 {
		t.Fatalf("registration with an allowlisted hook answered code %d", code)
	}
	if before := local.wait(t, "/events"); len(before) != 1 || before[0] != "/hook" {
		t.Fatalf("calls before the event: %v, want the hook", before)
	}
}

// TestHTTPWebhookRedirectsNotFollowed: a hook or event URL that answers
// with a redirect fails; its target (here an allowed address) is not
// called, so a redirect cannot carry a call past the address check.
func TestHTTPWebhookRedirectsNotFollowed(t *testing.T) {
	w := newWorld(t, apptest.AllowWebhooksTo("127.0.0.0/8"))
	target := ssrfServe(t, "127.0.0.1", func(rw http.ResponseWriter, r *http.Request) {
		json.NewEncoder(rw).Encode(map[string]any{"allow": true})
	})
	redirector := ssrfServe(t, "127.0.0.1", func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "http://127.0.0.1:"+target.port+"/redirected"+r.URL.Path, http.StatusTemporaryRedirect)
	})
	redir := "http://127.0.0.1:" + redirector.port
	p := w.httpHooked(t, redir+"/hook", redir+"/events", "http://127.0.0.1:"+target.port+"/fence")
	if code := w.httpRegister(t, p, "redir-01"); code != httpDenied {
		t.Fatalf("registration through a redirecting hook answered code %d, want %d (denied)", code, httpDenied)
	}
	if before := target.wait(t, "/fence"); len(before) != 0 {
		t.Fatalf("redirects were followed to %v", before)
	}
	// Event URLs are called independently, so the redirector's event may
	// come after the fence's: wait for it (a followed redirect would have
	// reached the target before the fence, checked above).
	got := redirector.called() // called drains what it returns: accumulate
	for deadline := time.Now().Add(5 * time.Second); len(got) < 2 && time.Now().Before(deadline); got = append(got, redirector.called()...) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != 2 {
		t.Fatalf("redirector called on %v, want the hook and the event once each", got)
	}
}

// httpShortTimeouts shortens the HTTP read and idle timeouts for a test
// (the read timeout also bounds the TLS handshake, so not to less than a
// loaded machine under the race detector needs for one).
func httpShortTimeouts(c *config.Config) {
	c.HTTPReadTimeout = time.Second
	c.HTTPIdleTimeout = time.Second
}

// httpDial opens a raw connection to an HTTP listener ("http", "https" or
// "ws").
func (w *world) httpDial(t *testing.T, listener string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	switch listener {
	case "http":
		c, err = net.Dial("tcp", w.S.App.HTTPAddr())
	case "https":
		c, err = tls.Dial("tcp", w.S.App.HTTPSAddr(), &tls.Config{InsecureSkipVerify: true})
	case "ws":
		c, err = net.Dial("tcp", w.S.App.Broker().Addr("ws"))
	}
	if err != nil {
		t.Fatalf("dialling %s: %v", listener, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// httpUntilClosed reads c until the server closes it and fails the test if
// that takes 5 s (the server would hold the connection forever).
func httpUntilClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the server still holds the connection after 5 s", what)
		}
		return // EOF or reset: closed by the server
	}
}

// httpSlowBody sends a request's headers and the start of its body, and
// never the rest.
func httpSlowBody(t *testing.T, c net.Conn, path, token string) {
	t.Helper()
	req := "POST " + path + " HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n{\"name\":"); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPSlowAndIdleClientsAreCut: on every HTTP listener (the API over
// HTTP and HTTPS, the WebSocket listener's handshake), a request whose body
// never completes is cut after the read timeout, and an idle keep-alive
// connection after the idle timeout; an upgraded WebSocket MQTT session is
// bound by neither.
func TestHTTPSlowAndIdleClientsAreCut(t *testing.T) {
	w := newWorld(t, httpShortTimeouts)
	for _, l := range []struct{ listener, path string }{{"http", "/v1/products"}, {"https", "/v1/products"}, {"ws", "/mqtt"}} {
		t.Run(l.listener, func(t *testing.T) {
			c := w.httpDial(t, l.listener)
			httpSlowBody(t, c, l.path, w.T1.Admin)
			httpUntilClosed(t, c, "slow body")

			c = w.httpDial(t, l.listener)
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: corral\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("keep-alive request: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Close {
				t.Fatal("the server closed the connection itself; want keep-alive")
			}
			httpUntilClosed(t, c, "idle keep-alive")
		})
	}

	t.Run("live websocket session", func(t *testing.T) {
		o := w.deviceOptions(w.T1.DevA)
		o.Servers = nil
		o.AddBroker("ws://" + w.S.App.Broker().Addr("ws") + "/mqtt")
		dev := connect(t, o)
		// A slow request begun after the session's upgrade is cut after
		// the read timeout: once it is, the session has outlived the
		// timeouts its own handshake started under.
		c := w.httpDial(t, "ws")
		httpSlowBody(t, c, "/mqtt", "")
		httpUntilClosed(t, c, "slow body")
		in := newInbox()
		own := "/" + w.T1.DevA.ProductKey + "/devA/user/echo"
		mustSubscribe(t, dev, own, in)
		publish(t, dev, own, "still here")
		if m := in.next(t); string(m.Payload()) != "still here" {
			t.Fatalf("got %q", m.Payload())
		}
	})
}
