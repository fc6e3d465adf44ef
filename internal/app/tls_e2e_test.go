package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/app"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/credential"
)

// The device-facing TLS listeners as a stock Alibaba Link SDK device sees
// them: its mbedtls has no elliptic curves, so it offers only static RSA
// key-exchange suites and can parse only an RSA certificate (issue 10).

// tlsDevice is what a TLS client saw of the server.
type tlsDevice struct {
	suite  atomic.Uint32
	rsa    atomic.Bool
	leafOK atomic.Bool
}

// pool reads a PEM file of <data-dir>/tls into a certificate pool.
func pool(t *testing.T, s *apptest.Server, file string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.Config.DataDir, "tls", file))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		t.Fatalf("no certificate in %s", file)
	}
	return p
}

// linkSDKClient is a client limited the way the Link SDK's mbedtls is: one
// static RSA suite, TLS 1.2, and only corral's RSA CA trusted (ca-rsa.pem);
// it refuses a leaf that is not RSA even if it verifies.
func linkSDKClient(t *testing.T, s *apptest.Server, suite uint16, host string, seen *tlsDevice) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite},
		RootCAs: pool(t, s, "ca-rsa.pem"), ServerName: host,
		VerifyConnection: func(cs tls.ConnectionState) error {
			seen.suite.Store(uint32(cs.CipherSuite))
			if _, ok := cs.PeerCertificates[0].PublicKey.(*rsa.PublicKey); !ok {
				return fmt.Errorf("leaf has a %T key; a Link SDK device cannot parse it", cs.PeerCertificates[0].PublicKey)
			}
			seen.rsa.Store(true)
			seen.leafOK.Store(true)
			return nil
		},
	}
}

// modernClient is Go's default client trusting ca.pem (both CAs).
func modernClient(t *testing.T, s *apptest.Server, host string, seen *tlsDevice) *tls.Config {
	return &tls.Config{RootCAs: pool(t, s, "ca.pem"), ServerName: host, MaxVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			seen.suite.Store(uint32(cs.CipherSuite))
			_, isRSA := cs.PeerCertificates[0].PublicKey.(*rsa.PublicKey)
			seen.rsa.Store(isRSA)
			_, isEC := cs.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey)
			seen.leafOK.Store(isEC)
			return nil
		}}
}

// mqttConnect makes a device-signed MQTT CONNECT over TLS and reports the
// broker's answer (nil: accepted) or the handshake's failure.
func tlsMQTTConnect(t *testing.T, s *apptest.Server, d apptest.Device, conf *tls.Config) error {
	t.Helper()
	id, user, pass, err := device.Credentials(device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}, "hmacsha256", "2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A handshake failure is reported here rather than as a CONNECT
	// timeout, which paho would hide.
	if _, err := tlsHandshake(s.App.Broker().Addr("tls"), conf.Clone()); err != nil {
		return err
	}
	o := paho.NewClientOptions().AddBroker("ssl://" + s.App.Broker().Addr("tls")).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetTLSConfig(conf)
	c := paho.NewClient(o)
	if err := apptest.ConnectMQTT(t, c); err != nil {
		return err
	}
	c.Disconnect(0)
	return nil
}

func tlsHandshake(addr string, conf *tls.Config) (tls.ConnectionState, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// registerHTTPS registers a device over the HTTPS listener the way the
// Link SDK does (POST /auth/register/device, signed by the ProductSecret).
func registerHTTPS(t *testing.T, s *apptest.Server, p apptest.Product, dn string, conf *tls.Config) error {
	t.Helper()
	random := fmt.Sprintf("r%d", time.Now().UnixNano())
	m := hmac.New(sha256.New, []byte(p.ProductSecret))
	m.Write([]byte("deviceName" + dn + "productKey" + p.ProductKey + "random" + random))
	form := url.Values{"productKey": {p.ProductKey}, "deviceName": {dn}, "random": {random}, "sign": {hex.EncodeToString(m.Sum(nil))}, "signMethod": {"hmacsha256"}}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
	resp, err := cl.Post("https://"+s.App.HTTPSAddr()+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Code int
		Data struct{ DeviceSecret string }
	}
	if json.Unmarshal(body, &r) != nil || r.Code != 200 || r.Data.DeviceSecret == "" {
		return fmt.Errorf("registration answered %d %s", resp.StatusCode, body)
	}
	return nil
}

func TestDeviceTLSForLinkSDKAndModernClients(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.TLSHosts = "iot.example.test" })
	p := s.CreateProduct("lamps", map[string]any{"dynamicRegistration": "auto"})
	d := s.CreateDevice(p.ProductKey, "lamp-1")
	for i, tc := range []struct {
		name      string
		client    func(*tlsDevice) *tls.Config
		wantSuite uint16
		wantRSA   bool
	}{
		{"Link SDK AES128-SHA", func(x *tlsDevice) *tls.Config {
			return linkSDKClient(t, s, tls.TLS_RSA_WITH_AES_128_CBC_SHA, "localhost", x)
		}, tls.TLS_RSA_WITH_AES_128_CBC_SHA, true},
		{"Link SDK AES256-SHA", func(x *tlsDevice) *tls.Config {
			return linkSDKClient(t, s, tls.TLS_RSA_WITH_AES_256_CBC_SHA, "localhost", x)
		}, tls.TLS_RSA_WITH_AES_256_CBC_SHA, true},
		{"Link SDK AES128-SHA256", func(x *tlsDevice) *tls.Config {
			return linkSDKClient(t, s, tls.TLS_RSA_WITH_AES_128_CBC_SHA256, "localhost", x)
		}, tls.TLS_RSA_WITH_AES_128_CBC_SHA256, true},
		{"Link SDK by a tls_hosts name (SNI)", func(x *tlsDevice) *tls.Config {
			return linkSDKClient(t, s, tls.TLS_RSA_WITH_AES_128_CBC_SHA, "iot.example.test", x)
		}, tls.TLS_RSA_WITH_AES_128_CBC_SHA, true},
		{"modern client", func(x *tlsDevice) *tls.Config { return modernClient(t, s, "localhost", x) },
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false},
		{"modern client by a tls_hosts name (SNI)", func(x *tlsDevice) *tls.Config { return modernClient(t, s, "iot.example.test", x) },
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, l := range []struct {
				name    string
				connect func(*tls.Config) error
			}{
				{"MQTT CONNECT", func(c *tls.Config) error { return tlsMQTTConnect(t, s, d, c) }},
				{"HTTPS registration", func(c *tls.Config) error { return registerHTTPS(t, s, p, fmt.Sprintf("reg-%d", i), c) }},
			} {
				seen := &tlsDevice{}
				if err := l.connect(tc.client(seen)); err != nil {
					t.Fatalf("%s: %v", l.name, err)
				}
				if got := uint16(seen.suite.Load()); got != tc.wantSuite || seen.rsa.Load() != tc.wantRSA || !seen.leafOK.Load() {
					t.Fatalf("%s: suite %s, RSA leaf %v (expected leaf type: %v); want %s, RSA %v", l.name, tls.CipherSuiteName(got), seen.rsa.Load(), seen.leafOK.Load(), tls.CipherSuiteName(tc.wantSuite), tc.wantRSA)
				}
			}
		})
	}
}

func TestDeviceTLSWithoutLegacyRSAKx(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.TLSLegacyRSAKx = false })
	p := s.CreateProduct("lamps", map[string]any{"dynamicRegistration": "auto"})
	d := s.CreateDevice(p.ProductKey, "lamp-1")
	for _, suite := range []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA256} {
		if err := tlsMQTTConnect(t, s, d, linkSDKClient(t, s, suite, "localhost", &tlsDevice{})); err == nil {
			t.Fatalf("MQTT over TLS accepted %s with tls_legacy_rsa_kx=false", tls.CipherSuiteName(suite))
		}
		if err := registerHTTPS(t, s, p, "reg-1", linkSDKClient(t, s, suite, "localhost", &tlsDevice{})); err == nil {
			t.Fatalf("HTTPS accepted %s with tls_legacy_rsa_kx=false", tls.CipherSuiteName(suite))
		}
	}
	seen := &tlsDevice{}
	if err := tlsMQTTConnect(t, s, d, modernClient(t, s, "localhost", seen)); err != nil || !seen.leafOK.Load() {
		t.Fatalf("modern client with tls_legacy_rsa_kx=false: %v (ECDSA leaf %v)", err, seen.leafOK.Load())
	}
}

// TestOpenSSLLinkSDKCipher: OpenSSL's client restricted to the static RSA
// suite AES128-SHA verifies corral's chain against ca.pem on both
// device-facing TLS listeners.
func TestOpenSSLLinkSDKCipher(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	s := apptest.Start(t, func(c *config.Config) { c.TLSHosts = "iot.example.test" })
	ca := filepath.Join(s.Config.DataDir, "tls", "ca.pem")
	for _, l := range []struct{ name, addr, host string }{
		{"MQTT over TLS", s.App.Broker().Addr("tls"), "localhost"},
		{"HTTPS", s.App.HTTPSAddr(), "localhost"},
		{"MQTT over TLS by a tls_hosts name", s.App.Broker().Addr("tls"), "iot.example.test"},
	} {
		t.Run(l.name, func(t *testing.T) {
			cmd := exec.Command(bin, "s_client", "-connect", l.addr, "-tls1_2", "-cipher", "AES128-SHA", "-servername", l.host,
				"-verify_hostname", l.host, "-CAfile", ca)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") || !strings.Contains(string(out), "Cipher is AES128-SHA") {
				t.Fatalf("openssl s_client: %v\n%s", err, out)
			}
		})
	}
}

// TestUserSuppliedCertificates: an operator's own pair keeps working; an
// ECDSA one alone is served with a warning that Link SDK devices cannot
// parse it, and an RSA pair beside it serves them.
func TestUserSuppliedCertificates(t *testing.T) {
	own := filepath.Join(t.TempDir(), "own")
	if _, err := credential.EnsureServerTLS(own, []string{"iot.example.test"}); err != nil {
		t.Fatal(err)
	}
	ecdsaPair := func(c *config.Config) {
		c.TLSCertFile, c.TLSKeyFile = filepath.Join(own, "server.pem"), filepath.Join(own, "server.key")
	}
	rsaPair := func(c *config.Config) {
		c.TLSRSACertFile, c.TLSRSAKeyFile = filepath.Join(own, "server-rsa.pem"), filepath.Join(own, "server-rsa.key")
	}
	rsaCA, bundle := x509.NewCertPool(), x509.NewCertPool()
	data, _ := os.ReadFile(filepath.Join(own, "ca-rsa.pem"))
	rsaCA.AppendCertsFromPEM(data)
	data, _ = os.ReadFile(filepath.Join(own, "ca.pem"))
	bundle.AppendCertsFromPEM(data)
	for _, tc := range []struct {
		name       string
		opts       []apptest.Option
		linkSDK    bool
		wantWarned bool
	}{
		{"ECDSA alone", []apptest.Option{ecdsaPair}, false, true},
		{"ECDSA and an RSA pair", []apptest.Option{ecdsaPair, rsaPair}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := apptest.Start(t, tc.opts...)
			if _, err := os.Stat(filepath.Join(s.Config.DataDir, "tls")); err == nil {
				t.Fatal("certificates generated although a pair is configured")
			}
			conf := &tls.Config{RootCAs: rsaCA, ServerName: "iot.example.test", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}}
			_, err := tlsHandshake(s.App.Broker().Addr("tls"), conf)
			if (err == nil) != tc.linkSDK {
				t.Fatalf("RSA-only handshake: %v, want success %v", err, tc.linkSDK)
			}
			warned := strings.Contains(string(s.Log.Bytes()), "no RSA server certificate")
			if warned != tc.wantWarned {
				t.Fatalf("warning logged %v, want %v", warned, tc.wantWarned)
			}
			if _, err := tlsHandshake(s.App.Broker().Addr("tls"), &tls.Config{RootCAs: bundle, ServerName: "iot.example.test"}); err != nil {
				t.Fatalf("modern client: %v", err)
			}
		})
	}
}

func TestRSAPairMustBeRSA(t *testing.T) {
	own := filepath.Join(t.TempDir(), "own")
	if _, err := credential.EnsureServerTLS(own, nil); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.HTTPAddr, cfg.HTTPSAddr, cfg.MQTTAddr, cfg.MQTTSAddr, cfg.WSAddr = "127.0.0.1:0", "127.0.0.1:0", "", "127.0.0.1:0", ""
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(own, "server.pem"), filepath.Join(own, "server.key")
	cfg.TLSRSACertFile, cfg.TLSRSAKeyFile = filepath.Join(own, "server.pem"), filepath.Join(own, "server.key")
	a, err := app.New(context.Background(), cfg, app.NewLogger(cfg, io.Discard))
	if err == nil {
		a.Shutdown(context.Background())
		t.Fatal("an ECDSA pair was accepted as tls_rsa_cert_file")
	}
}
