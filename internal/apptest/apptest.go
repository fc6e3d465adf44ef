// Package apptest starts a full corral server on :0 ports in a temporary
// data directory, for end-to-end tests and benchmarks.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/app"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/credential"
)

// Server is a running corral server.
type Server struct {
	App      *app.App
	Config   config.Config
	URL      string // base URL of the HTTP listener, e.g. http://127.0.0.1:41234
	AdminKey string // bearer token of the first admin key
	Client   *http.Client
	Log      *LogCapture // everything the server logged (at cfg.LogLevel)
	tb       testing.TB
	stop     func()
}

// Option changes the configuration before the server starts.
type Option func(*config.Config)

// AllowWebhooksTo opens CIDRs (comma-separated) to webhooks, which reach
// only public addresses by default: tests whose hooks are httptest
// servers on 127.0.0.1 pass "127.0.0.0/8".
func AllowWebhooksTo(cidrs string) Option {
	return func(c *config.Config) { c.WebhookAllowCIDRs = cidrs }
}

// Start starts a server on free ports in tb's temporary directory and
// stops it when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(tb.TempDir(), "data")
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HTTPSAddr = "127.0.0.1:0"
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.MQTTSAddr = "127.0.0.1:0"
	cfg.WSAddr = "127.0.0.1:0"
	cfg.SQLiteSynchronous = "NORMAL"
	cfg.APIRateLimit = 0
	cfg.RegistrationRatePerIP = 0
	cfg.RegistrationRatePerPK = 0
	// Like the rate limits, login back-off is off unless a test turns it
	// on: tests make refused CONNECTs from 127.0.0.1 in quick succession.
	cfg.MQTTAuthFailuresPerIP = 0
	cfg.MQTTAuthFailuresPerDevice = 0
	cfg.LogLevel = "warn"
	if lvl := os.Getenv("CORRAL_TEST_LOG"); lvl == "debug" || lvl == "info" {
		cfg.LogLevel = lvl
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.TLSCertFile == "" && cfg.TLSHosts == "" {
		seedTLS(tb, cfg.DataDir)
	}
	return StartWith(tb, cfg)
}

// tlsTemplate is one set of generated TLS files (both chains) shared by
// the servers of a test process: generating two RSA-2048 keys for every
// server would cost each test a noticeable fraction of a second. Servers
// with tls_hosts or their own certificate generate as corral does.
var tlsTemplate = sync.OnceValues(func() (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "corral-apptest-tls")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := credential.EnsureServerTLS(dir, nil); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if files[e.Name()], err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
			return nil, err
		}
	}
	return files, nil
})

// seedTLS writes the shared generated TLS files into dataDir/tls.
func seedTLS(tb testing.TB, dataDir string) {
	tb.Helper()
	files, err := tlsTemplate()
	if err != nil {
		tb.Fatalf("generating TLS files: %v", err)
	}
	dir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

// StartWith starts a server with exactly this configuration.
func StartWith(tb testing.TB, cfg config.Config) *Server {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	capture := &LogCapture{}
	var logw io.Writer = capture
	if os.Getenv("CORRAL_TEST_LOG") != "" {
		logw = io.MultiWriter(capture, os.Stderr)
	}
	a, err := app.New(ctx, cfg, app.NewLogger(cfg, logw))
	if err != nil {
		cancel()
		tb.Fatalf("starting corral: %v", err)
	}
	if err := a.Start(ctx); err != nil {
		cancel()
		a.Shutdown(context.Background())
		tb.Fatalf("starting corral: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(cfg.DataDir, app.AdminKeyFile))
	if err != nil {
		tb.Fatalf("reading admin key: %v", err)
	}
	s := &Server{App: a, Config: cfg, URL: "http://" + a.HTTPAddr(), AdminKey: strings.TrimSpace(string(key)),
		Client: &http.Client{Timeout: 60 * time.Second}, Log: capture, tb: tb}
	s.stop = func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		a.Shutdown(sctx)
		cancel()
	}
	tb.Cleanup(s.Stop)
	return s
}

// Remote returns a Server handle for a corral server already running
// elsewhere (say, as its own process in a benchmark); Stop does nothing.
func Remote(tb testing.TB, url, adminKey string) *Server {
	return &Server{URL: url, AdminKey: adminKey, Client: &http.Client{Timeout: 60 * time.Second}, tb: tb, stop: func() {}}
}

// LogCapture holds what a server logged, for tests that check what may
// not be logged and how much is. It keeps the first 16 MiB and counts
// everything.
type LogCapture struct {
	mu    sync.Mutex
	buf   []byte
	total int64
}

const logCaptureMax = 16 << 20

// Write implements io.Writer.
func (c *LogCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(len(p))
	if room := logCaptureMax - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Bytes returns a copy of what was kept.
func (c *LogCapture) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...)
}

// Len returns how many bytes were logged in all.
func (c *LogCapture) Len() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Stop shuts the server down (idempotent).
func (s *Server) Stop() { s.stop() }

// Response is an API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// Do sends a request with the given bearer token ("" for none). A body
// that is not []byte or string is sent as JSON.
func (s *Server) Do(token, method, path string, body any) Response {
	s.tb.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		s.tb.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		s.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.tb.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// Admin sends a request with the admin key and fails the test unless the
// status is want.
func (s *Server) Admin(method, path string, body any, want int) Response {
	s.tb.Helper()
	r := s.Do(s.AdminKey, method, path, body)
	if r.Status != want {
		s.tb.Fatalf("%s %s = %d %s, want %d", method, path, r.Status, r.Body, want)
	}
	return r
}

// Product is the answer of product creation.
type Product struct {
	ProductKey    string `json:"productKey"`
	ProductSecret string `json:"productSecret"`
}

// CreateProduct creates a product with the admin key; extra fields are
// merged into the body. Unless extra gives topicClasses, the product has
// one catch-all class ("#", both ways), so tests about other things may
// use any /user/ topic; tests of topic classes give their own (a product
// made through the API without them gets Alibaba's three defaults).
func (s *Server) CreateProduct(name string, extra map[string]any) Product {
	s.tb.Helper()
	body := map[string]any{"name": name, "topicClasses": []map[string]string{{"suffix": "#", "operation": "all"}}}
	for k, v := range extra {
		body[k] = v
	}
	var p Product
	s.Admin("POST", "/v1/products", body, 201).JSON(s.tb, &p)
	return p
}

// Device is a device triple.
type Device struct {
	ProductKey   string `json:"productKey"`
	DeviceName   string `json:"deviceName"`
	DeviceSecret string `json:"deviceSecret"`
	IotID        string `json:"iotId"`
}

// CreateDevice creates a device with the admin key.
func (s *Server) CreateDevice(pk, dn string) Device {
	s.tb.Helper()
	var d Device
	s.Admin("POST", fmt.Sprintf("/v1/products/%s/devices", pk), map[string]any{"deviceName": dn}, 201).JSON(s.tb, &d)
	return d
}

// ConnectMQTT sends a paho client's CONNECT and waits for the CONNACK. It
// fails the test if none arrives within 5 s (paho reports no error for a
// wait that timed out, so a missing CONNACK would pass for an accepted
// one) and returns the broker's refusal, or nil when accepted.
func ConnectMQTT(tb testing.TB, c paho.Client) error {
	tb.Helper()
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		tb.Fatal("MQTT CONNECT: no CONNACK within 5 s")
	}
	return tok.Error()
}
