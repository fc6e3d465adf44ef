package provision

import (
	"crypto/hmac"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// BenchmarkDynRegHTTPS measures registration as devices do it: over HTTPS,
// a fresh TLS connection for every device, from CORRAL_BENCH_C source
// addresses (127.0.0.2 and on, each a worker: a fleet, not one client), with
// corral's default rate limits on. Beside corral, in the same run and with
// the same certificate: a bare Go handler doing the same HMAC check (the
// ceiling of the HTTP and TLS stack) and one that also does a bare durable
// SQLite insert per registration (synchronous=FULL, one transaction each).
func BenchmarkDynRegHTTPS(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_N", 5000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	s := apptest.Start(b, func(cfg *config.Config) {
		cfg.SQLiteSynchronous = syncMode()
		cfg.LogLevel = "error"
		d := config.Default() // the shipped limits, which apptest turns off
		cfg.RegistrationRatePerIP, cfg.RegistrationRatePerPK = d.RegistrationRatePerIP, d.RegistrationRatePerPK
	})
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.Config.DataDir, "tls", "server.pem"), filepath.Join(s.Config.DataDir, "tls", "server.key"))
	if err != nil {
		b.Fatal(err)
	}
	p := s.CreateProduct("bench", map[string]any{"dynamicRegistration": "auto"})
	run := func(b *testing.B, base, pk, secret string) {
		for i := 0; i < b.N; i++ {
			rate, p50, p99 := loadTLS(b, base+"/auth/register/device", pk, secret, fmt.Sprintf("r%d-%d", i, time.Now().UnixNano()), n, c)
			b.ReportMetric(rate, "reg/s")
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		}
	}
	bare := func(insert func(dn string) error) *http.Server {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
			f, _ := url.ParseQuery(string(body))
			if !hmac.Equal([]byte(sign(p.ProductSecret, f.Get("deviceName"), f.Get("productKey"), f.Get("random"))), []byte(f.Get("sign"))) {
				w.WriteHeader(401)
				return
			}
			if insert != nil {
				if err := insert(f.Get("deviceName")); err != nil {
					w.WriteHeader(500)
					return
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"code": 200, "data": map[string]string{"productKey": p.ProductKey, "deviceName": f.Get("deviceName"), "deviceSecret": "s"}, "message": "success"})
		})}
		go srv.ServeTLS(ln, "", "")
		b.Cleanup(func() { srv.Close() })
		srv.Addr = ln.Addr().String()
		return srv
	}
	b.Run("bare-handler", func(b *testing.B) {
		run(b, "https://"+bare(nil).Addr, p.ProductKey, p.ProductSecret)
	})
	b.Run("bare-sqlite-insert", func(b *testing.B) {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "bare.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(`CREATE TABLE devices (pk TEXT, dn TEXT, secret TEXT, PRIMARY KEY (pk, dn)) WITHOUT ROWID`); err != nil {
			b.Fatal(err)
		}
		srv := bare(func(dn string) error {
			_, err := db.Exec(`INSERT INTO devices (pk, dn, secret) VALUES (?, ?, ?)`, p.ProductKey, dn, "0123456789abcdef0123456789abcdef")
			return err
		})
		run(b, "https://"+srv.Addr, p.ProductKey, p.ProductSecret)
	})
	b.Run("corral", func(b *testing.B) {
		run(b, "https://"+s.App.HTTPSAddr(), p.ProductKey, p.ProductSecret)
	})
}

// loadTLS registers n new devices from c workers, each on its own source
// address and with a new TLS connection per registration, and returns the
// rate and latency percentiles.
func loadTLS(b *testing.B, target, pk, secret, prefix string, n, c int) (float64, time.Duration, time.Duration) {
	b.Helper()
	clients := make([]*http.Client, c)
	for w := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(w/250), byte(2+w%250))}, Timeout: 10 * time.Second}
		clients[w] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	lat := make([]time.Duration, n)
	start := time.Now()
	failed := mqttload.Spread(n, c, func(i int) error {
		dn, random := fmt.Sprintf("%s-%07d", prefix, i), fmt.Sprintf("x%d", i)
		form := "productKey=" + pk + "&deviceName=" + dn + "&random=" + random + "&signMethod=hmacsha256&sign=" + sign(secret, dn, pk, random)
		t0 := time.Now()
		resp, err := clients[i%c].Post(target, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lat[i] = time.Since(t0)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"code":200`) {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	el := time.Since(start)
	if failed > 0 {
		b.Fatalf("%d of %d registrations failed", failed, n)
	}
	p50, p99 := mqttload.Percentiles(lat)
	return float64(n) / el.Seconds(), p50, p99
}
