// Package provision benchmarks corral's registration paths: HTTP dynamic
// registration in auto mode against a bare Go HTTP handler doing the same
// HMAC check (the ceiling), at several registry sizes, and registration
// followed by MQTT CONNECT end to end.
package provision

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/knob"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtttest"
)

func sign(secret, dn, pk, random string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("deviceName" + dn + "productKey" + pk + "random" + random))
	return hex.EncodeToString(m.Sum(nil))
}

// syncMode is SQLite's synchronous setting for the run: FULL (the
// default, durable across power loss) unless CORRAL_BENCH_SYNC says otherwise.
func syncMode() string {
	if v := os.Getenv("CORRAL_BENCH_SYNC"); v != "" {
		return v
	}
	return "FULL"
}

// load registers n devices with c concurrent clients and returns the rate
// and latency percentiles.
func load(b *testing.B, url, pk, secret, prefix string, n, c int) (perSec float64, p50, p99 time.Duration) {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				dn := fmt.Sprintf("%s-%08d", prefix, i)
				form := "productKey=" + pk + "&deviceName=" + dn + "&random=r1&signMethod=hmacsha256&sign=" + sign(secret, dn, pk, "r1")
				t0 := time.Now()
				resp, err := client.Post(url, "application/x-www-form-urlencoded", strings.NewReader(form))
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"code":200`) {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d registrations failed", f, n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(n) / el.Seconds(), lat[n/2], lat[n*99/100]
}

// populate bulk-creates size devices through the API (10,000 a call).
func populate(b *testing.B, s *apptest.Server, pk string, size int) {
	b.Helper()
	for done := 0; done < size; done += 10000 {
		s.Admin("POST", "/v1/products/"+pk+"/devices:batch", map[string]any{"count": min(10000, size-done)}, 201)
	}
}

// BenchmarkDynRegHTTP measures POST /auth/register/device in auto mode with
// new device names at registry sizes 10k, 100k (and 1M with
// CORRAL_BENCH_1M=1), next to a bare handler doing the same HMAC check.
func BenchmarkDynRegHTTP(b *testing.B) {
	sizes := []int{10000, 100000}
	if os.Getenv("CORRAL_BENCH_1M") != "" {
		sizes = append(sizes, 1000000)
	}
	n := knob.Int("CORRAL_BENCH_N", 20000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	b.Run("bare-handler", func(b *testing.B) {
		secret, pk := "0123456789abcdef", "a1BenchProd"
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
			f, _ := url.ParseQuery(string(body))
			want := sign(secret, f.Get("deviceName"), f.Get("productKey"), f.Get("random"))
			if !hmac.Equal([]byte(want), []byte(f.Get("sign"))) {
				w.WriteHeader(401)
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"code": 200, "data": map[string]string{"productKey": pk, "deviceName": f.Get("deviceName"), "deviceSecret": "s"}, "message": "success"})
		}))
		defer srv.Close()
		for i := 0; i < b.N; i++ {
			rate, p50, p99 := load(b, srv.URL, pk, secret, fmt.Sprintf("bare%d", i), n, c)
			b.ReportMetric(rate, "reg/s")
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		}
	})
	for _, size := range sizes {
		b.Run(fmt.Sprintf("corral-registry-%d", size), func(b *testing.B) {
			s := apptest.Start(b, func(c *config.Config) {
				c.SQLiteSynchronous = syncMode()
				c.LogLevel = "error"
				// Registration's own cost, over plain HTTP like the bare
				// handler it is compared with (production serves it on TLS only).
				c.DynRegPlainHTTP = true
			})
			p := s.CreateProduct("bench", map[string]any{"dynamicRegistration": "auto"})
			populate(b, s, p.ProductKey, size)
			url := s.URL + "/auth/register/device"
			// Warm up: the first commits after a bulk load also checkpoint
			// the load's write-ahead log; measure the steady state.
			load(b, url, p.ProductKey, p.ProductSecret, "warm", 3000, c)
			if f := os.Getenv("CORRAL_BENCH_CPUPROFILE"); f != "" {
				out, err := os.Create(fmt.Sprintf("%s.%d", f, size))
				if err != nil {
					b.Fatal(err)
				}
				pprof.StartCPUProfile(out)
				defer pprof.StopCPUProfile()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rate, p50, p99 := load(b, url, p.ProductKey, p.ProductSecret, fmt.Sprintf("reg%d", i), n, c)
				b.ReportMetric(rate, "reg/s")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// BenchmarkRegisterThenConnect measures one device's path end to end:
// HTTP registration, then MQTT CONNECT with the secret it got.
func BenchmarkRegisterThenConnect(b *testing.B) {
	// Plain HTTP as in the figures recorded before registration moved to
	// TLS only: the lab setting, so the path's own cost is what is measured.
	s := apptest.Start(b, func(c *config.Config) { c.SQLiteSynchronous = "FULL"; c.LogLevel = "error"; c.DynRegPlainHTTP = true })
	p := s.CreateProduct("bench", map[string]any{"dynamicRegistration": "auto"})
	mqtt := s.App.Broker().Addr("tcp")
	n := knob.Int("CORRAL_BENCH_N", 500)
	for i := 0; i < b.N; i++ {
		lat := make([]time.Duration, n)
		for j := 0; j < n; j++ {
			dn := fmt.Sprintf("e2e-%d-%06d", i, j)
			t0 := time.Now()
			form := "productKey=" + p.ProductKey + "&deviceName=" + dn + "&random=r&signMethod=hmacsha256&sign=" + sign(p.ProductSecret, dn, p.ProductKey, "r")
			resp, err := http.Post(s.URL+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(form))
			if err != nil {
				b.Fatal(err)
			}
			var r struct {
				Code int
				Data struct{ DeviceSecret string }
			}
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if r.Code != 200 {
				b.Fatalf("registration code %d", r.Code)
			}
			if err := connect(mqtt, p.ProductKey, dn, r.Data.DeviceSecret); err != nil {
				b.Fatal(err)
			}
			lat[j] = time.Since(t0)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
	}
}

// connect does a raw MQTT 3.1.1 CONNECT with the Alibaba signature,
// waits for an accepting CONNACK and disconnects.
func connect(addr, pk, dn, secret string) error {
	c, err := mqtttest.Dial(addr, "", mqtttest.Connect{Creds: mqtttest.DeviceCreds(pk, dn, secret), KeepAlive: 30})
	if err != nil {
		return err
	}
	mqtttest.Disconnect(c)
	return nil
}
