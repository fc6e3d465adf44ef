package app_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// TestBehindHAProxy puts a real HAProxy (TCP mode, send-proxy and
// send-proxy-v2) in front of corral's MQTT and MQTT over TLS listeners:
// devices connecting to HAProxy from 127.0.0.3 are seen by corral as
// 127.0.0.3, although every socket corral accepts comes from HAProxy.
// Skipped where haproxy is not installed (apt-get install haproxy).
func TestBehindHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed")
	}
	s := apptest.Start(t, func(c *config.Config) {
		c.MQTTProxyProtocol, c.MQTTSProxyProtocol = true, true
		c.ProxyTrustedCIDRs = "127.0.0.1/32" // HAProxy's source towards corral
	})
	front := map[string]string{}
	cfg := "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
	for _, b := range []struct{ name, backend, send string }{
		{"v1", s.App.Broker().Addr("tcp"), "send-proxy"},
		{"v2", s.App.Broker().Addr("tcp"), "send-proxy-v2"},
		{"tls", s.App.Broker().Addr("tls"), "send-proxy-v2"},
	} {
		front[b.name] = freeAddr(t)
		cfg += fmt.Sprintf("frontend f_%s\n  bind %s\n  default_backend b_%s\nbackend b_%s\n  server corral %s %s\n", b.name, front[b.name], b.name, b.name, b.backend, b.send)
	}
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", file)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	for _, a := range front {
		waitListening(t, a)
	}
	events := watchPresence(t, s) // through a header of its own, from 127.0.0.1
	p := s.CreateProduct("behind-haproxy", nil)

	for _, name := range []string{"v1", "v2", "tls"} {
		t.Run(name, func(t *testing.T) {
			d := s.CreateDevice(p.ProductKey, "dev-haproxy-"+name)
			dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
			c, err := dl.Dial("tcp", front[name])
			if err != nil {
				t.Fatal(err)
			}
			if name == "tls" {
				c = tls.Client(c, &tls.Config{RootCAs: pool(t, s, "ca.pem"), ServerName: "localhost"})
			}
			defer c.Close()
			if err := mqtttest.Handshake(c, mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), KeepAlive: 60}); err != nil {
				t.Fatal(err)
			}
			if ip := nextPresence(t, events, d.DeviceName); ip != "127.0.0.3" {
				t.Errorf("presence ipAddress %q through HAProxy, want the device's 127.0.0.3", ip)
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %s: %v", addr, err)
		}
	}
}
