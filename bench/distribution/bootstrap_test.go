// Package distribution benchmarks the bootstrap endpoint: answers per
// second from one source with the per-source rate limit off and on, with a
// proximity policy deciding (a CIDR table that does not match, then the
// GeoIP database's country), beside a bare Go handler writing the same
// answer (the ceiling) in the same run.
package distribution

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

const answer = `{"code":200,"data":{"resources":{"mqtt":{"host":"sg.iot.example.com","port":1883}}},"message":"success"}`

// result is a load's tally: time taken, latencies, 200 and 429 counts.
type result struct {
	el          time.Duration
	lat         []time.Duration
	ok, limited int64
}

func (r *result) add(o result) {
	r.el += o.el
	r.lat = append(r.lat, o.lat...)
	r.ok += o.ok
	r.limited += o.limited
}

func (r *result) perSec() float64 { return float64(len(r.lat)) / r.el.Seconds() }

// pct is the p-th percentile latency.
func (r *result) pct(p int) time.Duration {
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	return r.lat[len(r.lat)*p/100]
}

// load sends n bootstraps (devices from first) with c clients from one
// source (127.0.0.1).
func load(b *testing.B, base, pk string, first, n, c int) (r result) {
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				form := url.Values{"productKey": {pk}, "deviceName": {fmt.Sprintf("dev%06d", (first+i)%1000)}, "resources": {"mqtt"}}.Encode()
				t0 := time.Now()
				resp, err := client.Post(base+"/auth/bootstrap", "application/x-www-form-urlencoded;charset=utf-8", strings.NewReader(form))
				if err != nil {
					b.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				switch resp.StatusCode {
				case 200:
					if string(body) != answer { // sg-1: the GeoIP country chose it
						b.Errorf("answer %s", body)
					}
					atomic.AddInt64(&r.ok, 1)
				case 429:
					atomic.AddInt64(&r.limited, 1)
				default:
					b.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	r.el, r.lat = time.Since(start), lat
	return r
}

// geoDB writes a MaxMind-format database placing 127.0.0.0/8 in Singapore
// (AS) and returns its path.
func geoDB(b *testing.B) string {
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", IncludeReservedNetworks: true, RecordSize: 24})
	if err != nil {
		b.Fatal(err)
	}
	_, n, _ := net.ParseCIDR("127.0.0.0/8")
	if err := w.Insert(n, mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("SG")},
		"continent": mmdbtype.Map{"code": mmdbtype.String("AS")}}); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "geo.mmdb")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := w.WriteTo(f); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkBootstrapOneSource: `go test ./bench/distribution/ -run '^$' -bench BootstrapOneSource -benchtime 1x -count 3`.
func BenchmarkBootstrapOneSource(b *testing.B) {
	const n, c, rounds = 5000, 4, 10
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		io.WriteString(w, answer)
	}))
	defer bare.Close()
	geo := geoDB(b)
	for _, tt := range []struct {
		name string
		rate float64
	}{{"limit=off", 0}, {"limit=on(20/s)", 20}} {
		b.Run(tt.name, func(b *testing.B) {
			s := apptest.Start(b, func(cfg *config.Config) {
				cfg.BootstrapPlainHTTP, cfg.BootstrapRatePerIP, cfg.InstanceID, cfg.Region = true, tt.rate, "centre", "cn-shanghai"
				cfg.GeoIPDB = geo
			})
			s.Admin("POST", "/v1/instances", map[string]any{"instanceId": "sg-1", "region": "ap-southeast-1", "mqtt": "sg.iot.example.com:1883"}, 201)
			s.Admin("POST", "/v1/distribution/policies", map[string]any{"policyId": "near", "fallback": "cn-shanghai",
				"regions": []map[string]any{{"region": "cn-shanghai", "instances": []map[string]any{{"instanceId": "centre"}}},
					{"region": "ap-southeast-1", "instances": []map[string]any{{"instanceId": "sg-1"}}}},
				// The CIDR table is scanned and misses; the GeoIP country decides.
				"cidrs":     []map[string]string{{"cidr": "10.0.0.0/8", "region": "cn-shanghai"}, {"cidr": "192.0.2.0/24", "region": "ap-southeast-1"}},
				"countries": map[string]string{"SG": "ap-southeast-1", "CN": "cn-shanghai"}}, 201)
			p := s.CreateProduct("meters", nil)
			for i := range 1000 {
				s.Admin("PUT", fmt.Sprintf("/v1/products/%s/devices/dev%06d/provisioning", p.ProductKey, i), map[string]any{"policyId": "near"}, 200)
			}
			for range b.N {
				// Bare and corral take turns, rounds rounds of n/rounds
				// each, so the other load on a shared machine falls on both.
				var bareR, r result
				for i := range rounds {
					bareR.add(load(b, bare.URL, p.ProductKey, i*n/rounds, n/rounds, c))
					r.add(load(b, s.URL, p.ProductKey, i*n/rounds, n/rounds, c))
				}
				rate, p99 := r.perSec(), r.pct(99)
				b.ReportMetric(rate, "answers/s")
				b.ReportMetric(rate/bareR.perSec(), "ratio-to-bare")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
				b.Logf("%s: %.0f answers/s (%d 200, %d 429), p50 %v p99 %v; bare handler %.0f/s p99 %v",
					tt.name, rate, r.ok, r.limited, r.pct(50), p99, bareR.perSec(), bareR.pct(99))
			}
		})
	}
}
