// Package registry benchmarks the foundation: batch-creating 100,000
// devices through the REST API, and looking one device up by
// ProductKey+DeviceName (the path every MQTT CONNECT takes) at 10k, 100k
// and 1M devices, with the SQLite drivers considered: modernc.org/sqlite
// (pure Go, what corral ships) and github.com/mattn/go-sqlite3 (cgo).
package registry

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the cgo driver, for comparison only

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// BenchmarkBatchCreate100k creates 100,000 devices through the API in 10
// calls of 10,000 names (target: under 5 s).
func BenchmarkBatchCreate100k(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		b.Run("sync-"+mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s := apptest.Start(b, func(c *config.Config) { c.SQLiteSynchronous = mode; c.LogLevel = "error" })
				p := s.CreateProduct("bench", nil)
				names := make([][]string, 10)
				for j := range names {
					names[j] = make([]string, 10000)
					for k := range names[j] {
						names[j][k] = fmt.Sprintf("dev-%d-%05d", j, k)
					}
				}
				start := time.Now()
				for _, batch := range names {
					s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"deviceNames": batch}, 201)
				}
				el := time.Since(start)
				b.ReportMetric(el.Seconds(), "s/100k")
				b.ReportMetric(100000/el.Seconds(), "devices/s")
				s.Stop()
			}
		})
	}
}

type fixture struct {
	svc   *registry.Service
	store *sqlite.Store
	pk    string
	names []string
}

// open builds a registry over a store with the given driver, populated
// with n devices (cached per driver and size for the run).
func open(b *testing.B, driver string, n int) fixture {
	b.Helper()
	dir := b.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "bench.db"), sqlite.Options{Driver: driver, Synchronous: "OFF"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	box, _ := credential.NewBox(key)
	svc := registry.New(registry.Options{Store: st, Box: box})
	admin, err := svc.Bootstrap(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	p := registry.Principal{AccountID: admin.AccountID, Role: registry.RoleAdmin, KeyID: admin.ID}
	prod, err := svc.CreateProduct(context.Background(), p, registry.ProductInput{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	f := fixture{svc: svc, store: st, pk: prod.ProductKey}
	for done := 0; done < n; done += 10000 {
		names := make([]string, min(10000, n-done))
		for i := range names {
			names[i] = fmt.Sprintf("dev-%08d", done+i)
		}
		if _, err := svc.CreateDevices(context.Background(), p, prod.ProductKey, registry.BatchInput{DeviceNames: names}); err != nil {
			b.Fatal(err)
		}
		f.names = append(f.names, names...)
	}
	return f
}

// BenchmarkLookup looks devices up at random from CORRAL_BENCH_C
// goroutines at once (8; MQTT CONNECTs arrive concurrently), through the
// registry (store read and opening the sealed secret), per driver and
// registry size; it reports the median and p99 of single look-ups and the
// look-ups a second.
func BenchmarkLookup(b *testing.B) {
	sizes := []int{10000, 100000}
	if os.Getenv("CORRAL_BENCH_1M") != "" {
		sizes = append(sizes, 1000000)
	}
	// RunParallel starts parallelism × GOMAXPROCS goroutines.
	par := (knob.Int("CORRAL_BENCH_C", 8) + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	for _, driver := range []string{"sqlite", "sqlite3"} {
		name := map[string]string{"sqlite": "modernc", "sqlite3": "mattn-cgo"}[driver]
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				f := open(b, driver, n)
				ctx := context.Background()
				var mu sync.Mutex
				lat := make([]time.Duration, 0, b.N)
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var own []time.Duration
					for pb.Next() {
						dn := f.names[mrand.IntN(len(f.names))]
						t0 := time.Now()
						if _, err := f.svc.LookupDeviceAuth(ctx, f.pk, dn); err != nil {
							b.Error(err)
							return
						}
						own = append(own, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, own...)
					mu.Unlock()
				})
				b.StopTimer()
				p50, p99 := mqttload.Percentiles(lat)
				b.ReportMetric(float64(p50.Nanoseconds())/1000, "p50-µs")
				b.ReportMetric(float64(p99.Nanoseconds())/1000, "p99-µs")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
				b.ReportMetric(float64(par*runtime.GOMAXPROCS(0)), "goroutines")
			})
		}
	}
}
