// Package broker benchmarks corral's MQTT side: authenticated CONNECT rate
// against a registry of 100,000 devices, message throughput (fan-in and
// point-to-point, QoS 0 and 1) side by side with Mosquitto at
// 127.0.0.1:1883 using the same load tool, and memory per idle
// authenticated connection measured on a separate server process.
package broker

import (
	"fmt"
	"github.com/corral-iot/corral/bench/internal/knob"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/bench/internal/mqttload"
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
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < c; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					j := next.Add(1) - 1
					if j >= int64(n) {
						return
					}
					d := devs[order[j]]
					t0 := time.Now()
					conn, err := mqttload.Connect(addr, mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 60)
					if err != nil {
						failed.Add(1)
						continue
					}
					lat[j] = time.Since(t0)
					mqttload.Disconnect(conn)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		if f := failed.Load(); f > 0 {
			b.Fatalf("%d of %d connects failed", f, n)
		}
		p50, p99 := mqttload.Percentiles(lat)
		b.ReportMetric(float64(n)/el.Seconds(), "connects/s")
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	}
}

// target is a broker under test with its clients' credentials.
type target struct {
	addr string
	pub  func(i int) (clientID, user, pass, topic string)
	sub  func() (clientID, user, pass, filter string)
}

func mosquitto(b *testing.B) target {
	c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second)
	if err != nil {
		b.Skip("Mosquitto is not listening on 127.0.0.1:1883")
	}
	c.Close()
	return target{addr: "127.0.0.1:1883",
		pub: func(i int) (string, string, string, string) {
			return fmt.Sprintf("bench-pub-%d", i), "", "", fmt.Sprintf("/a1BenchProdX/dev-%d/user/telemetry", i)
		},
		sub: func() (string, string, string, string) {
			return "bench-sub", "", "", "/a1BenchProdX/+/user/telemetry"
		}}
}

func corral(b *testing.B, pubs int) target {
	s := apptest.Start(b, func(c *config.Config) {
		c.SQLiteSynchronous = "FULL"
		c.LogLevel = "error"
		c.MQTTMaxQueued = int64(knob.Int("CORRAL_BENCH_QUEUE", int(c.MQTTMaxQueued)))
	})
	p := s.CreateProduct("bench", nil)
	devs := populate(b, s, p.ProductKey, pubs)
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	return target{addr: s.App.Broker().Addr("tcp"),
		pub: func(i int) (string, string, string, string) {
			d := devs[i]
			cr := mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)
			return cr.ClientID, cr.Username, cr.Password, "/" + d.ProductKey + "/" + d.DeviceName + "/user/telemetry"
		},
		sub: func() (string, string, string, string) {
			return "bench-sub", kid, secret, "/" + p.ProductKey + "/+/user/telemetry"
		}}
}

func client(b *testing.B, addr, id, user, pass string) paho.Client {
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetOrderMatters(false).SetAutoReconnect(false).
		SetMaxResumePubInFlight(1000).SetWriteTimeout(10 * time.Second)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c
}

// throughput runs pubs publishers sending per messages each to one
// subscriber. A shared window (CORRAL_BENCH_WINDOW, 1,000) bounds the
// messages published but not yet delivered (end-to-end flow control), so
// the figure is the rate both brokers sustain rather than how fast they
// drop: a stall of a second counts the window as lost and goes on. A
// window larger than corral's per-client queue (mqtt_max_queued,
// CORRAL_BENCH_QUEUE) lets the subscriber's queue overflow, and corral
// drops what does not fit where Mosquitto queues it.
func throughput(b *testing.B, t target, pubs, per int, qos byte) (rate, loss float64) {
	window := int64(knob.Int("CORRAL_BENCH_WINDOW", 1000))
	var got, sent, last atomic.Int64
	sid, su, sp, filter := t.sub()
	sub := client(b, t.addr, sid, su, sp)
	defer sub.Disconnect(0)
	if tok := sub.Subscribe(filter, qos, func(paho.Client, paho.Message) { got.Add(1); last.Store(time.Now().UnixNano()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	clients := make([]paho.Client, pubs)
	topics := make([]string, pubs)
	for i := range clients {
		id, u, p, topic := t.pub(i)
		clients[i], topics[i] = client(b, t.addr, id, u, p), topic
	}
	payload := []byte(strings.Repeat("x", 100))
	total := int64(pubs * per)
	var lost atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func(c paho.Client, topic string) {
			defer wg.Done()
			var last paho.Token
			for j := 0; j < per; j++ {
				waited := time.Now()
				for sent.Load()-got.Load()-lost.Load() >= window {
					if time.Since(waited) > time.Second {
						lost.Add(sent.Load() - got.Load() - lost.Load())
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				sent.Add(1)
				last = c.Publish(topic, qos, false, payload)
			}
			last.WaitTimeout(30 * time.Second)
		}(c, topics[i])
	}
	wg.Wait()
	for got.Load() < total {
		n := got.Load()
		time.Sleep(500 * time.Millisecond)
		if got.Load() == n {
			break
		}
	}
	for _, c := range clients {
		c.Disconnect(0)
	}
	el := time.Duration(last.Load() - start.UnixNano())
	if el <= 0 {
		return 0, 1
	}
	return float64(got.Load()) / el.Seconds(), 1 - float64(got.Load())/float64(total)
}

// BenchmarkThroughput measures fan-in (100 publishers, one subscriber) and
// point-to-point (one to one), QoS 0 and 1, 100-byte payloads, on corral
// and on Mosquitto with the same tool in the same run.
func BenchmarkThroughput(b *testing.B) {
	for _, pat := range []struct {
		name      string
		pubs, per int
	}{{"fanin", 100, knob.Int("CORRAL_BENCH_PER", 500)}, {"p2p", 1, knob.Int("CORRAL_BENCH_P2P", 50000)}} {
		for _, qos := range []byte{0, 1} {
			for _, broker := range []string{"corral", "mosquitto"} {
				b.Run(fmt.Sprintf("%s/qos%d/%s", pat.name, qos, broker), func(b *testing.B) {
					var t target
					if broker == "corral" {
						t = corral(b, pat.pubs)
					} else {
						t = mosquitto(b)
					}
					for i := 0; i < b.N; i++ {
						rate, loss := throughput(b, t, pat.pubs, pat.per, qos)
						b.ReportMetric(rate, "msg/s")
						b.ReportMetric(loss*100, "loss-%")
					}
				})
			}
		}
	}
}

// raiseFileLimit raises the open-file limit toward n (the server process
// inherits it) and returns the limit in force: a hard limit this process
// may not raise caps it.
func raiseFileLimit(n uint64) uint64 {
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if rl.Cur >= n {
		return rl.Cur
	}
	want := rl
	want.Cur, want.Max = n, max(n, rl.Max)
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return n
	}
	rl.Cur = rl.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

func rssKB(pid int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

// BenchmarkIdleConnectionMemory opens 20,000 authenticated idle
// connections to a corral server running as its own process and reports
// its RSS growth per connection.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	conns := knob.Int("CORRAL_BENCH_CONNS", 20000)
	if lim := raiseFileLimit(uint64(conns) + 512); lim < uint64(conns)+512 {
		// Each side of every connection needs a descriptor in its process.
		conns = int(lim) - 512
		b.Logf("open-file limit %d: measuring %d connections", lim, conns)
	}
	proc := serverproc.Start(b, serverproc.Build(b))
	cmd, addrs, s := proc.Cmd, proc.Addrs, proc.Server
	p := s.CreateProduct("idle", nil)
	devs := populate(b, s, p.ProductKey, conns)
	time.Sleep(2 * time.Second)
	before := rssKB(cmd.Process.Pid)
	open := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := next.Add(1) - 1
				if j >= int64(conns) {
					return
				}
				d := devs[j]
				c, err := mqttload.Connect(addrs["mqtt-tcp"], mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 0)
				if err != nil {
					b.Errorf("connection %d: %v", j, err)
					return
				}
				mu.Lock()
				open = append(open, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	time.Sleep(3 * time.Second) // let presence writes and buffers settle
	after := rssKB(cmd.Process.Pid)
	b.ReportMetric(float64(len(open)), "connections")
	b.ReportMetric(float64((after-before)*1024)/float64(len(open)), "bytes/conn")
	b.ReportMetric(float64(after)/1024, "rss-MiB")
}

// BenchmarkIdleConnectionBreakdown explains the RSS figure above: it holds
// idle authenticated connections to an in-process server (both ends in one
// process, so at most half the open-file limit) and reports, after a
// forced GC, what each costs in goroutine stacks and live heap.
func BenchmarkIdleConnectionBreakdown(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_CONNS", 9000)
	s := apptest.Start(b, func(c *config.Config) { c.LogLevel = "error" })
	p := s.CreateProduct("idle", nil)
	devs := populate(b, s, p.ProductKey, n)
	addr := s.App.Broker().Addr("tcp")
	settled := func() runtime.MemStats {
		time.Sleep(2 * time.Second) // presence writes and events
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m
	}
	for i := 0; i < b.N; i++ {
		before, g0 := settled(), runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for _, d := range devs {
			c, err := mqttload.Connect(addr, mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 0)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		after, g := settled(), runtime.NumGoroutine()
		per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / float64(n) }
		b.ReportMetric(float64(g-g0)/float64(n), "goroutines/conn")
		b.ReportMetric(per(after.StackInuse, before.StackInuse), "stack-bytes/conn")
		b.ReportMetric(per(after.HeapInuse, before.HeapInuse), "heap-bytes/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}
