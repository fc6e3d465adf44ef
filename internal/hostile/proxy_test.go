package hostile_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/config"
	"github.com/gorilla/websocket"
)

// --- PROXY protocol (issue 13 item 5): an anonymous client names an
// address it does not have ---

// spoofHeader claims the connection comes from 203.0.113.99.
const spoofHeader = "PROXY TCP4 203.0.113.99 192.0.2.1 40099 1883\r\n"

// spoofed fails the test if the claimed address reached the audit trail.
func spoofed(t *testing.T, w *world) {
	t.Helper()
	if rows := connAudit(w, "203.0.113.99"); len(rows) != 0 {
		t.Fatalf("the spoofed address reached the audit trail: %+v", rows)
	}
}

// On listeners without the option a PROXY header is garbage: the
// connection is closed unanswered and the address it names is never used.
func TestProxyHeaderOnPlainListener(t *testing.T) {
	w := newWorld(t)
	_, user, _ := connDeviceCreds(w.T1.DevA)
	for _, listener := range []string{"tcp", "tls"} {
		c := connDial(t, w.S.App.Broker().Addr(listener), "")
		c.Write(append([]byte(spoofHeader), connConnect(4, "spoof", user, "wrong")...))
		connClosedByServer(t, c, 5*time.Second)
	}
	// The same failed login without the header is audited from the
	// socket's address.
	c := connDial(t, w.S.App.Broker().Addr("tcp"), "127.0.0.7")
	if code := connConnack(t, c, connConnect(4, "spoof", user, "wrong")); code == 0 {
		t.Fatal("a wrong password was accepted")
	}
	waitRows(t, w, "127.0.0.7")
	spoofed(t, w)
}

// On a PROXY listener a source outside proxy_trusted_cidrs cannot name an
// address: refused at accept by default, and under proxy_untrusted=direct
// its header is garbage as on a plain listener.
func TestProxyHeaderFromUntrustedSource(t *testing.T) {
	for _, policy := range []string{"refuse", "direct"} {
		t.Run(policy, func(t *testing.T) {
			w := newWorld(t, func(c *config.Config) {
				c.MQTTProxyProtocol, c.WSProxyProtocol = true, true
				c.ProxyTrustedCIDRs = "192.0.2.0/24" // the load balancers: not this test
				c.ProxyUntrusted = policy
			})
			_, user, _ := connDeviceCreds(w.T1.DevA)
			c := connDial(t, w.S.App.Broker().Addr("tcp"), "127.0.0.8")
			c.Write(append([]byte(spoofHeader), connConnect(4, "spoof", user, "wrong")...))
			connClosedByServer(t, c, 5*time.Second)
			ws := connDial(t, w.S.App.Broker().Addr("ws"), "127.0.0.8")
			ws.Write([]byte(spoofHeader + "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
			connClosedByServer(t, ws, 5*time.Second)
			if policy == "direct" {
				// Served as itself: the failed login is the socket's.
				c := connDial(t, w.S.App.Broker().Addr("tcp"), "127.0.0.8")
				if code := connConnack(t, c, connConnect(4, "spoof", user, "wrong")); code == 0 {
					t.Fatal("a wrong password was accepted")
				}
				waitRows(t, w, "127.0.0.8")
			}
			spoofed(t, w)
		})
	}
}

func waitRows(t *testing.T, w *world, source string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(connAudit(w, source)) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no audit row from %s", source)
		}
	}
}

// X-Forwarded-For from a source outside proxy_trusted_cidrs names nobody.
func TestForwardedForFromUntrustedSource(t *testing.T) {
	w := newWorld(t, func(c *config.Config) {
		c.WSForwardedFor = true
		c.ProxyTrustedCIDRs = "192.0.2.0/24"
	})
	_, user, _ := connDeviceCreds(w.T1.DevA)
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second,
		NetDial: func(network, addr string) (net.Conn, error) {
			return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).Dial(network, addr)
		}}
	ws, _, err := d.Dial("ws://"+w.S.App.Broker().Addr("ws")+"/mqtt", http.Header{"X-Forwarded-For": {"203.0.113.99"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.BinaryMessage, connConnect(4, "spoof", user, "wrong"))
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := ws.ReadMessage(); err != nil || len(msg) < 4 || msg[0] != 0x20 || msg[3] == 0 {
		t.Fatalf("CONNACK %x, %v; want a refusal", msg, err)
	}
	waitRows(t, w, "127.0.0.9")
	spoofed(t, w)
}
