package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	proxyproto "github.com/pires/go-proxyproto"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// corral behind a load balancer (issue 13 item 5): every listener expects
// PROXY headers from 127.0.0.1 and refuses other sources; the address in
// the header is the one presence, audit, admission and registration see.

// proxyV1 is a PROXY v1 header, written by hand from the specification.
func proxyV1(src string, srcPort int) []byte {
	return fmt.Appendf(nil, "PROXY TCP4 %s 192.0.2.1 %d 443\r\n", src, srcPort)
}

// proxyV2 is a PROXY v2 header for TCP over IPv4, written by hand from the
// specification, with an ALPN TLV (which corral skips).
func proxyV2(src [4]byte, srcPort uint16) []byte {
	h := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11")
	body := append(src[:], 192, 0, 2, 1)
	body = binary.BigEndian.AppendUint16(body, srcPort)
	body = binary.BigEndian.AppendUint16(body, 8883)
	body = append(body, 0x01, 0x00, 0x04, 'm', 'q', 't', 't')
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// proxyLib is a PROXY header of the given version by the library's writer.
func proxyLib(t *testing.T, version byte, src string) []byte {
	t.Helper()
	s, err := net.ResolveTCPAddr("tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := proxyproto.HeaderProxyFromAddrs(version, s, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1883}).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// dialWith opens TCP to addr from the local address from ("" for any) and
// sends header first, as a load balancer does.
func dialWith(ctx context.Context, addr, from string, header []byte) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(header); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func startBehindProxy(t *testing.T) *apptest.Server {
	s := apptest.Start(t, func(c *config.Config) {
		c.MQTTProxyProtocol, c.MQTTSProxyProtocol, c.WSProxyProtocol, c.HTTPProxyProtocol, c.HTTPSProxyProtocol = true, true, true, true, true
		c.ProxyTrustedCIDRs = "127.0.0.1"
		c.ProxyHeaderTimeout = time.Second
		c.MQTTMaxPendingPerIP = 1
	})
	// The test's API client comes through the load balancer too.
	s.Client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return dialWith(ctx, addr, "", proxyV1("198.51.100.10", 50000))
	}}
	return s
}

// watchPresence subscribes an application, connected through the load
// balancer with a v2 header from the library, to presence events.
func watchPresence(t *testing.T, s *apptest.Server) chan map[string]any {
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	events := make(chan map[string]any, 16)
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID("watcher").
		SetUsername(kid).SetPassword(secret).SetAutoReconnect(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			return dialWith(context.Background(), u.Host, "", proxyLib(t, 2, "198.51.100.11:50001"))
		})
	c := paho.NewClient(o)
	if err := apptest.ConnectMQTT(t, c); err != nil {
		t.Fatalf("watcher: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("$aws/events/presence/connected/+", 1, func(_ paho.Client, m paho.Message) {
		var ev map[string]any
		json.Unmarshal(m.Payload(), &ev)
		events <- ev
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return events
}

func nextPresence(t *testing.T, events chan map[string]any, device string) string {
	t.Helper()
	for {
		select {
		case ev := <-events:
			if ev["deviceName"] == device {
				ip, _ := ev["ipAddress"].(string)
				return ip
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no presence event for %s", device)
			return ""
		}
	}
}

type auditRow struct {
	Action, Outcome, Reason, Source, Target string
}

func auditFrom(t *testing.T, s *apptest.Server, query, source string) []auditRow {
	t.Helper()
	var page struct{ Entries []auditRow }
	s.Admin("GET", "/v1/audit?limit=1000&"+query, nil, 200).JSON(t, &page)
	var out []auditRow
	for _, e := range page.Entries {
		if e.Source == source {
			out = append(out, e)
		}
	}
	return out
}

func TestProxyProtocolEndToEnd(t *testing.T) {
	s := startBehindProxy(t)
	p := s.CreateProduct("behind-lb", nil) // over HTTP with a PROXY header
	events := watchPresence(t, s)
	tcp := s.App.Broker().Addr("tcp")

	t.Run("MQTT with a v1 header by hand", func(t *testing.T) {
		d := s.CreateDevice(p.ProductKey, "dev-v1")
		c, err := dialWith(context.Background(), tcp, "", proxyV1("203.0.113.7", 40001))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := mqtttest.Handshake(c, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), KeepAlive: 60}); err != nil {
			t.Fatal(err)
		}
		if ip := nextPresence(t, events, "dev-v1"); ip != "203.0.113.7" {
			t.Errorf("presence ipAddress %q, want the PROXY source 203.0.113.7", ip)
		}
	})

	t.Run("refused CONNECT audited with a v2 header's address", func(t *testing.T) {
		d := s.CreateDevice(p.ProductKey, "dev-v2")
		c, err := dialWith(context.Background(), tcp, "", proxyV2([4]byte{203, 0, 113, 9}, 40002))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = mqtttest.Handshake(c, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, "wrong-secret")})
		if _, refused := err.(*mqtttest.RefusedError); !refused {
			t.Fatalf("CONNECT with a wrong secret: %v", err)
		}
		waitFor(t, func() bool { return len(auditFrom(t, s, "action=mqtt.connect", "203.0.113.9")) == 1 })
	})

	t.Run("admission counts pending connections per PROXY source", func(t *testing.T) {
		// mqtt_max_pending_per_ip is 1: a second pending connection from
		// the same device address is closed; another address is served,
		// although every socket comes from the load balancer.
		first, err := dialWith(context.Background(), tcp, "", proxyLib(t, 1, "203.0.113.50:1000"))
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		time.Sleep(100 * time.Millisecond) // let the first be admitted as pending
		second, err := dialWith(context.Background(), tcp, "", proxyLib(t, 2, "203.0.113.50:1001"))
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		second.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := second.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("second pending connection from 203.0.113.50: %v, want closed", err)
		}
		d := s.CreateDevice(p.ProductKey, "dev-other-source")
		other, err := dialWith(context.Background(), tcp, "", proxyLib(t, 2, "203.0.113.51:1002"))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if err := mqtttest.Handshake(other, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)}); err != nil {
			t.Fatalf("another source while 203.0.113.50 is at its cap: %v", err)
		}
	})

	t.Run("untrusted source refused and cannot spoof", func(t *testing.T) {
		d := s.CreateDevice(p.ProductKey, "dev-spoof")
		c, err := dialWith(context.Background(), tcp, "127.0.0.2", proxyV1("203.0.113.66", 40066))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := mqtttest.Handshake(c, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)}); err == nil {
			t.Fatal("CONNECT from an untrusted source behind a spoofed header was accepted")
		}
		if rows := auditFrom(t, s, "action=mqtt.connect", "203.0.113.66"); len(rows) != 0 {
			t.Errorf("the spoofed address reached the audit: %+v", rows)
		}
		m := s.Admin("GET", "/metrics", nil, 200)
		if !bytes.Contains(m.Body, []byte(`corral_proxy_refused_total{listener="mqtt",reason="untrusted"} 1`)) {
			t.Errorf("no untrusted refusal counted:\n%s", grepLines(m.Body, "corral_proxy"))
		}
	})

	t.Run("trusted source without a header refused", func(t *testing.T) {
		d := s.CreateDevice(p.ProductKey, "dev-noheader")
		if c, err := mqtttest.Dial(tcp, "", mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)}); err == nil {
			c.Close()
			t.Fatal("CONNECT without a PROXY header from the load balancer was accepted")
		}
	})

	t.Run("MQTT over TLS behind PROXY", func(t *testing.T) {
		d := s.CreateDevice(p.ProductKey, "dev-tls")
		raw, err := dialWith(context.Background(), s.App.Broker().Addr("tls"), "", proxyV2([4]byte{203, 0, 113, 20}, 40020))
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{RootCAs: pool(t, s, "ca.pem"), ServerName: "localhost"})
		defer c.Close()
		if err := mqtttest.Handshake(c, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), KeepAlive: 60}); err != nil {
			t.Fatal(err)
		}
		if ip := nextPresence(t, events, "dev-tls"); ip != "203.0.113.20" {
			t.Errorf("presence ipAddress %q over TLS, want 203.0.113.20", ip)
		}
	})

	t.Run("MQTT over WebSocket behind PROXY", func(t *testing.T) {
		d := s.CreateDevice(p.ProductKey, "dev-ws")
		dialer := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second,
			NetDialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dialWith(ctx, addr, "", proxyV1("203.0.113.30", 40030))
			}}
		ws, _, err := dialer.Dial("ws://"+s.App.Broker().Addr("ws")+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ws.WriteMessage(websocket.BinaryMessage, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), KeepAlive: 60}.Bytes())
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, msg, err := ws.ReadMessage(); err != nil || len(msg) < 4 || msg[0] != 0x20 || msg[3] != 0 {
			t.Fatalf("CONNACK %x, %v", msg, err)
		}
		if ip := nextPresence(t, events, "dev-ws"); ip != "203.0.113.30" {
			t.Errorf("presence ipAddress %q over WebSocket, want 203.0.113.30", ip)
		}
	})

	t.Run("HTTPS registration sees the PROXY address", func(t *testing.T) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool(t, s, "ca.pem"), ServerName: "localhost"},
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dialWith(ctx, addr, "", proxyV1("203.0.113.40", 40040))
			}}}
		form := url.Values{"productKey": {p.ProductKey}, "deviceName": {"dev-reg"}, "random": {"abc123"}, "sign": {"00"}, "signMethod": {"hmacsha256"}}
		resp, err := client.PostForm("https://"+s.App.HTTPSAddr()+"/auth/register/device", form)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		client.CloseIdleConnections()
		waitFor(t, func() bool { return len(auditFrom(t, s, "action=registration.https", "203.0.113.40")) == 1 })
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met within 5 s")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// An HTTP load balancer in front of MQTT over WebSocket names the client
// in X-Forwarded-For (ws_forwarded_for): believed from proxy_trusted_cidrs.
func TestWebSocketForwardedForEndToEnd(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) {
		c.WSForwardedFor = true
		c.ProxyTrustedCIDRs = "127.0.0.1"
	})
	p := s.CreateProduct("behind-alb", nil)
	d := s.CreateDevice(p.ProductKey, "dev-xff")
	events := make(chan map[string]any, 4)
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	w := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID("watcher").
		SetUsername(kid).SetPassword(secret).SetAutoReconnect(false))
	if err := apptest.ConnectMQTT(t, w); err != nil {
		t.Fatal(err)
	}
	defer w.Disconnect(100)
	if tok := w.Subscribe("$aws/events/presence/connected/+", 1, func(_ paho.Client, m paho.Message) {
		var ev map[string]any
		json.Unmarshal(m.Payload(), &ev)
		events <- ev
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	ws, _, err := (&websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}).Dial(
		"ws://"+s.App.Broker().Addr("ws")+"/mqtt", http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.80"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.BinaryMessage, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), KeepAlive: 60}.Bytes())
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := ws.ReadMessage(); err != nil || len(msg) < 4 || msg[3] != 0 {
		t.Fatalf("CONNACK %x, %v", msg, err)
	}
	if ip := nextPresence(t, events, "dev-xff"); ip != "203.0.113.80" {
		t.Errorf("presence ipAddress %q, want the nearest forwarded address 203.0.113.80", ip)
	}
}
