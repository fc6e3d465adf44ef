// Package engine benchmarks corral's MQTT engine bare (internal/mqtt/engine
// with AllowAll hooks, no corral: bench/internal/engineproc) as its own
// process, next to Mosquitto at 127.0.0.1:1883 in the same run with the same
// clients: idle memory per connection, CONNECT rate, message throughput and
// delivery latency. These are the engine's ceiling; bench/broker measures
// corral on whichever broker it embeds.
package engine

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/engineproc"
	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/bench/internal/pahoload"
	"github.com/corral-iot/corral/bench/internal/serverproc"
)

// brokers are the two servers every benchmark here compares.
var brokers = []string{"engine", "mosquitto"}

// addrOf starts the engine (once per benchmark: see start) or checks that
// Mosquitto listens.
func addrOf(b *testing.B, broker string, eng func() *serverproc.Proc) string {
	if broker == "engine" {
		return eng().Addrs["mqtt-tcp"]
	}
	return pahoload.Mosquitto(b).Addr
}

// start builds and starts the engine on first use and returns it after.
func start(b *testing.B) func() *serverproc.Proc {
	var p *serverproc.Proc
	return func() *serverproc.Proc {
		if p == nil {
			p = engineproc.Start(b, engineproc.Build(b))
		}
		return p
	}
}

// BenchmarkIdleConnectionMemory opens CORRAL_BENCH_CONNS (19,000: the
// machine's file limit is 20,000 a process) idle MQTT 3.1.1 connections
// (clean session, keepalive 60 s, pinged every 30 s) with the raw client to
// a fresh server process each run, the engine's or Mosquitto's (see
// serverproc.Mosquitto), and reports the RSS growth per connection between two
// readings of that process alone. The engine's readings follow two forced
// collections and report heap, stacks and goroutines too; Mosquitto, in C,
// is read 5 s after the last connection. CORRAL_BENCH_HEAPPROFILE=path
// saves the engine's heap profile with the connections open.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	conns := knob.Int("CORRAL_BENCH_CONNS", 19000)
	if lim := mqttload.RaiseFileLimit(uint64(conns) + 512); lim < uint64(conns)+512 {
		conns = int(lim) - 512
		b.Logf("open-file limit %d: measuring %d connections", lim, conns)
	}
	bin := engineproc.Build(b)
	for _, broker := range brokers {
		b.Run(broker, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var (
					before, after serverproc.Memory
					addr          string
					read          func() serverproc.Memory
					stopServer    func()
					profile       = func() {}
				)
				if broker == "engine" {
					p := engineproc.Start(b, bin)
					addr, stopServer = p.Addrs["mqtt-tcp"], p.Stop
					read = func() serverproc.Memory { return p.Settled(b, engineproc.GCPath) }
					if path := os.Getenv("CORRAL_BENCH_HEAPPROFILE"); path != "" && i == 0 {
						profile = func() { saveProfile(b, p, "heap", path) }
					}
				} else {
					cmd, a := serverproc.Mosquitto(b)
					addr = a
					stopServer = func() { cmd.Process.Kill(); cmd.Wait() }
					read = func() serverproc.Memory {
						time.Sleep(5 * time.Second)
						return serverproc.Memory{RSS: float64(serverproc.RSSOf(b, cmd.Process.Pid))}
					}
				}
				before = read()
				open := make([]net.Conn, conns)
				failed := mqttload.Spread(conns, 32, func(j int) error {
					c, err := mqttload.Connect(addr, mqttload.Creds{ClientID: fmt.Sprintf("enginebench-idle-%d", j)}, 60)
					open[j] = c
					return err
				})
				closeAll := func() {
					for _, c := range open {
						if c != nil {
							c.Close()
						}
					}
				}
				if failed > 0 {
					closeAll()
					b.Fatalf("%d of %d connections failed", failed, conns)
				}
				stop := mqttload.KeepAlive(open, 30*time.Second)
				after = read()
				profile()
				stop()
				closeAll()
				stopServer()
				per := func(a, b float64) float64 { return (a - b) / float64(conns) }
				b.ReportMetric(float64(conns), "connections")
				b.ReportMetric(per(after.RSS, before.RSS), "rss-bytes/conn")
				if broker == "engine" {
					b.ReportMetric(per(after.Heap, before.Heap), "heap-bytes/conn")
					b.ReportMetric(per(after.Stacks, before.Stacks), "stack-bytes/conn")
					b.ReportMetric(per(after.Goroutines, before.Goroutines), "goroutines/conn")
				}
				b.ReportMetric(after.RSS/(1<<20), "rss-MiB")
			}
		})
	}
}

// saveProfile writes the engine's pprof profile name to path.
func saveProfile(b *testing.B, p *serverproc.Proc, name, path string) {
	b.Helper()
	resp, err := http.Get("http://" + p.Addrs["http"] + "/debug/pprof/" + name)
	if err != nil {
		b.Fatalf("fetching the %s profile: %v", name, err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("saving the %s profile: status %d, %v", name, resp.StatusCode, err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConnectRate: 32 concurrent raw clients CONNECT (MQTT 3.1.1,
// clean session, keepalive 60 s, no credentials, each a new client id) and
// DISCONNECT, CORRAL_BENCH_N (20,000) times, to the engine and to Mosquitto.
func BenchmarkConnectRate(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_N", 20000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	eng := start(b)
	for _, broker := range brokers {
		b.Run(broker, func(b *testing.B) {
			addr := addrOf(b, broker, eng)
			for i := 0; i < b.N; i++ {
				lat := make([]time.Duration, n)
				t0 := time.Now()
				failed := mqttload.Spread(n, c, func(j int) error {
					s := time.Now()
					conn, err := mqttload.Connect(addr, mqttload.Creds{ClientID: fmt.Sprintf("enginebench-c-%d-%d", i, j)}, 60)
					if err != nil {
						return err
					}
					lat[j] = time.Since(s)
					mqttload.Disconnect(conn)
					return nil
				})
				el := time.Since(t0)
				if failed > 0 {
					b.Fatalf("%d of %d connects failed", failed, n)
				}
				p50, p99 := mqttload.Percentiles(lat)
				b.ReportMetric(float64(n)/el.Seconds(), "connects/s")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// engineDrops, on the engine, reads its drop counter now and returns a
// function reporting (as engine-drops) how many messages it has dropped
// since: the share of a row's loss that its bounded queues account for.
func engineDrops(b *testing.B, broker string, eng func() *serverproc.Proc) func() {
	if broker != "engine" {
		return func() {}
	}
	before := eng().Metrics(b)["engine_dropped_total"]
	return func() { b.ReportMetric(eng().Metrics(b)["engine_dropped_total"]-before, "engine-drops") }
}

// patterns are bench/broker's: fan-in (100 publishers, one subscriber) and
// point-to-point (one to one).
func patterns() []struct {
	name      string
	pubs, per int
} {
	return []struct {
		name      string
		pubs, per int
	}{{"fanin", 100, knob.Int("CORRAL_BENCH_PER", 500)}, {"p2p", 1, knob.Int("CORRAL_BENCH_P2P", 50000)}}
}

// BenchmarkThroughput is bench/broker's throughput (paho clients, 100-byte
// payloads, window CORRAL_BENCH_WINDOW, timed to the last delivery, messages
// lost on every row) on the bare engine and on Mosquitto, both anonymous.
func BenchmarkThroughput(b *testing.B) {
	eng := start(b)
	for _, pat := range patterns() {
		for _, qos := range []byte{0, 1} {
			for _, broker := range brokers {
				b.Run(fmt.Sprintf("%s/qos%d/%s", pat.name, qos, broker), func(b *testing.B) {
					t := pahoload.Anonymous(addrOf(b, broker, eng))
					for i := 0; i < b.N; i++ {
						drops := engineDrops(b, broker, eng)
						rate, lost := pahoload.Throughput(b, t, pat.pubs, pat.per, qos)
						drops()
						b.ReportMetric(rate, "msg/s")
						b.ReportMetric(float64(lost), "lost")
						b.ReportMetric(float64(lost)*100/float64(pat.pubs*pat.per), "loss-%")
					}
				})
			}
		}
	}
}

// BenchmarkLatency measures each broker's point-to-point peak (as
// BenchmarkThroughput, CORRAL_BENCH_P2P messages) and then publishes
// CORRAL_BENCH_LAT_N (20,000) messages at half that rate, reporting the
// delivery latency's p50 and p99 (publish call to the subscriber's
// handler, both paho clients in this process) and the messages lost.
func BenchmarkLatency(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_LAT_N", 20000)
	peakN := knob.Int("CORRAL_BENCH_P2P", 50000)
	eng := start(b)
	for _, qos := range []byte{0, 1} {
		for _, broker := range brokers {
			b.Run(fmt.Sprintf("p2p/qos%d/%s", qos, broker), func(b *testing.B) {
				t := pahoload.Anonymous(addrOf(b, broker, eng))
				for i := 0; i < b.N; i++ {
					peak, _ := pahoload.Throughput(b, t, 1, peakN, qos)
					drops := engineDrops(b, broker, eng)
					p50, p99, lost := pahoload.Latency(b, t, qos, peak/2, n)
					drops()
					b.ReportMetric(peak, "peak-msg/s")
					b.ReportMetric(peak/2, "rate-msg/s")
					b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
					b.ReportMetric(float64(lost), "lost")
				}
			})
		}
	}
}
