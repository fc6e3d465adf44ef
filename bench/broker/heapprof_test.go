package broker

import (
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// BenchmarkIdleHeapProfile writes in-process heap profiles (every
// allocation sampled) before and after CORRAL_BENCH_CONNS (5,000) idle
// device connections to CORRAL_BENCH_HEAPPROFILE.{before,after}, for
// `go tool pprof -base before after`: what an idle connection keeps live
// on the heap, by allocation site.
func BenchmarkIdleHeapProfile(b *testing.B) {
	path := os.Getenv("CORRAL_BENCH_HEAPPROFILE")
	if path == "" {
		b.Skip("set CORRAL_BENCH_HEAPPROFILE")
	}
	conns := knob.Int("CORRAL_BENCH_CONNS", 5000)
	mqttload.RaiseFileLimit(uint64(2*conns) + 512)
	runtime.MemProfileRate = 1
	for range b.N {
		s := apptest.Start(b, func(c *config.Config) { c.LogLevel = "error" })
		p := s.CreateProduct("idle", nil)
		devs := populate(b, s, p.ProductKey, conns)
		addr := s.App.Broker().Addr("tcp")
		if os.Getenv("CORRAL_BENCH_WARM") == "1" {
			mqttload.Spread(conns, 32, func(j int) error {
				d := devs[j]
				c, err := mqttload.Connect(addr, mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 60)
				if err == nil {
					mqttload.Disconnect(c)
				}
				return err
			})
		}
		profile := func(name string) {
			time.Sleep(5 * time.Second)
			runtime.GC()
			runtime.GC()
			f, err := os.Create(path + "." + name)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
		}
		profile("before")
		open := make([]net.Conn, conns)
		if failed := mqttload.Spread(conns, 32, func(j int) error {
			d := devs[j]
			c, err := mqttload.Connect(addr, mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 60)
			open[j] = c
			return err
		}); failed > 0 {
			b.Fatalf("%d connections failed", failed)
		}
		profile("after")
		for _, c := range open {
			if c != nil {
				c.Close()
			}
		}
		s.Stop()
	}
}
