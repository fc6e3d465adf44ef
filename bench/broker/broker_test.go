// Package broker benchmarks corral's MQTT side, with corral running as its
// own process: authenticated CONNECT rate against a registry of 100,000
// devices, message throughput (fan-in and point-to-point, QoS 0 and 1)
// side by side with Mosquitto at 127.0.0.1:1883 using the same clients,
// and memory per idle authenticated connection.
package broker

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/bench/internal/pahoload"
	"github.com/corral-iot/corral/bench/internal/serverproc"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

type dev struct{ ProductKey, DeviceName, DeviceSecret string }

// populate creates n devices through the API and returns their triples.
func populate(b *testing.B, s *apptest.Server, pk string, n int) []dev {
	b.Helper()
	var out []dev
	for done := 0; done < n; done += 10000 {
		var batch struct{ Devices []dev }
		s.Admin("POST", "/v1/products/"+pk+"/devices:batch", map[string]any{"count": min(10000, n-done)}, 201).JSON(b, &batch)
		out = append(out, batch.Devices...)
	}
	return out
}

// BenchmarkConnectRate: concurrent clients CONNECT (signature checked
// against the registry, keepalive 60 s) and DISCONNECT, to a corral server
// running as its own process with a registry of 100,000 devices; each
// CONNECT is a different device, drawn at random without replacement, so
// none takes over a live session of its own.
func BenchmarkConnectRate(b *testing.B) {
	size := knob.Int("CORRAL_BENCH_DEVICES", 100000)
	n := min(knob.Int("CORRAL_BENCH_N", 20000), size)
	c := knob.Int("CORRAL_BENCH_C", 32)
	proc := serverproc.Start(b, serverproc.Build(b))
	s := proc.Server
	p := s.CreateProduct("bench", nil)
	devs := populate(b, s, p.ProductKey, size)
	addr := proc.Addrs["mqtt-tcp"]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := rand.Perm(len(devs))[:n]
		lat := make([]time.Duration, n)
		start := time.Now()
		failed := mqttload.Spread(n, c, func(j int) error {
			d := devs[order[j]]
			t0 := time.Now()
			conn, err := mqttload.Connect(addr, mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 60)
			if err != nil {
				return err
			}
			lat[j] = time.Since(t0)
			mqttload.Disconnect(conn)
			return nil
		})
		el := time.Since(start)
		if failed > 0 {
			b.Fatalf("%d of %d connects failed", failed, n)
		}
		p50, p99 := mqttload.Percentiles(lat)
		b.ReportMetric(float64(n)/el.Seconds(), "connects/s")
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	}
}

// corral starts bin as its own process, like Mosquitto an external
// server, with pubs devices for the publishers; the subscriber is an
// application with the admin API key.
func corral(b *testing.B, bin string, pubs int) pahoload.Target {
	queue := knob.Int("CORRAL_BENCH_QUEUE", int(config.Default().MQTTMaxQueued))
	proc := serverproc.Start(b, bin, "--sqlite-synchronous", "FULL", "--mqtt-max-queued", strconv.Itoa(queue))
	s := proc.Server
	// Publishers report on their custom topic class user/telemetry.
	p := s.CreateProduct("bench", map[string]any{"topicClasses": []map[string]string{{"suffix": "telemetry", "operation": "pub"}}})
	devs := populate(b, s, p.ProductKey, pubs)
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	return pahoload.Target{Addr: proc.Addrs["mqtt-tcp"],
		Pub: func(i int) (string, string, string, string) {
			d := devs[i]
			cr := mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)
			return cr.ClientID, cr.Username, cr.Password, "/" + d.ProductKey + "/" + d.DeviceName + "/user/telemetry"
		},
		Sub: func() (string, string, string, string) {
			return "bench-sub", kid, secret, "/" + p.ProductKey + "/+/user/telemetry"
		}}
}

// BenchmarkThroughput measures fan-in (100 publishers, one subscriber) and
// point-to-point (one to one), QoS 0 and 1, 100-byte payloads, on corral
// (its own process, devices authenticated) and on Mosquitto (anonymous, as
// configured here) with the same paho clients in the same run; every row
// reports the messages lost.
func BenchmarkThroughput(b *testing.B) {
	bin := serverproc.Build(b)
	for _, pat := range []struct {
		name      string
		pubs, per int
	}{{"fanin", 100, knob.Int("CORRAL_BENCH_PER", 500)}, {"p2p", 1, knob.Int("CORRAL_BENCH_P2P", 50000)}} {
		for _, qos := range []byte{0, 1} {
			for _, broker := range []string{"corral", "mosquitto"} {
				b.Run(fmt.Sprintf("%s/qos%d/%s", pat.name, qos, broker), func(b *testing.B) {
					var t pahoload.Target
					if broker == "corral" {
						t = corral(b, bin, pat.pubs)
					} else {
						t = pahoload.Mosquitto(b)
					}
					for i := 0; i < b.N; i++ {
						rate, lost := pahoload.Throughput(b, t, pat.pubs, pat.per, qos)
						b.ReportMetric(rate, "msg/s")
						b.ReportMetric(float64(lost), "lost")
						b.ReportMetric(float64(lost)*100/float64(pat.pubs*pat.per), "loss-%")
					}
				})
			}
		}
	}
}

// BenchmarkIdleConnectionMemory opens 20,000 authenticated idle
// connections (keepalive 60 s, pinged every 30 s) to a corral server
// running as its own process and reports, between two GC-settled readings
// of that process alone, its RSS, heap and stack growth per connection.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	conns := knob.Int("CORRAL_BENCH_CONNS", 20000)
	if lim := mqttload.RaiseFileLimit(uint64(conns) + 512); lim < uint64(conns)+512 {
		// Each side of every connection needs a descriptor in its process.
		conns = int(lim) - 512
		b.Logf("open-file limit %d: measuring %d connections", lim, conns)
	}
	proc := serverproc.Start(b, serverproc.Build(b))
	p := proc.Server.CreateProduct("idle", nil)
	devs := populate(b, proc.Server, p.ProductKey, conns)
	addr := proc.Addrs["mqtt-tcp"]
	for i := 0; i < b.N; i++ {
		before := proc.Settled(b, "")
		open := make([]net.Conn, conns)
		failed := mqttload.Spread(conns, 32, func(j int) error {
			d := devs[j]
			c, err := mqttload.Connect(addr, mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 60)
			open[j] = c
			return err
		})
		if failed > 0 {
			b.Fatalf("%d of %d connections failed", failed, conns)
		}
		stop := mqttload.KeepAlive(open, 30*time.Second)
		after := proc.Settled(b, "")
		stop()
		per := func(a, b float64) float64 { return (a - b) / float64(conns) }
		b.ReportMetric(float64(conns), "connections")
		b.ReportMetric(per(after.RSS, before.RSS), "rss-bytes/conn")
		b.ReportMetric(per(after.Heap, before.Heap), "heap-bytes/conn")
		b.ReportMetric(per(after.Stacks, before.Stacks), "stack-bytes/conn")
		b.ReportMetric(per(after.Goroutines, before.Goroutines), "goroutines/conn")
		b.ReportMetric(after.RSS/(1<<20), "rss-MiB")
		for _, c := range open {
			c.Close()
		}
	}
}
