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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/bench/internal/serverproc"
	"github.com/corral-iot/corral/bench/internal/sink"
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

// corral starts bin as its own process, like Mosquitto an external
// server, with pubs devices for the publishers; the subscriber is an
// application with the admin API key.
func corral(b *testing.B, bin string, pubs int) target {
	queue := knob.Int("CORRAL_BENCH_QUEUE", int(config.Default().MQTTMaxQueued))
	proc := serverproc.Start(b, bin, "--sqlite-synchronous", "FULL", "--mqtt-max-queued", strconv.Itoa(queue))
	s := proc.Server
	// Publishers report on their custom topic class user/telemetry.
	p := s.CreateProduct("bench", map[string]any{"topicClasses": []map[string]string{{"suffix": "telemetry", "operation": "pub"}}})
	devs := populate(b, s, p.ProductKey, pubs)
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	return target{addr: proc.Addrs["mqtt-tcp"],
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
// subscriber and returns the delivered rate (timed to the last delivery)
// and how many of the messages published were never delivered. A shared
// window (CORRAL_BENCH_WINDOW, 1,000) bounds the messages published but
// not yet delivered (end-to-end flow control), so the figure is the rate
// both brokers sustain rather than how fast they drop: when deliveries
// stall for a second the outstanding messages are written off, once for
// all publishers, and publishing goes on. A window larger than corral's
// per-client queue (mqtt_max_queued, CORRAL_BENCH_QUEUE) lets the
// subscriber's queue overflow, and corral drops what does not fit; the
// loss is reported for both brokers.
func throughput(b *testing.B, t target, pubs, per int, qos byte) (rate float64, lost int64) {
	window := int64(knob.Int("CORRAL_BENCH_WINDOW", 1000))
	total := int64(pubs * per)
	sid, su, sp, filter := t.sub()
	sub := client(b, t.addr, sid, su, sp)
	defer sub.Disconnect(0)
	var got atomic.Pointer[sink.Counter] // nil until publishing starts
	count := func(paho.Client, paho.Message) {
		if c := got.Load(); c != nil {
			c.Add()
		}
	}
	if tok := sub.Subscribe(filter, qos, count); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	clients := make([]paho.Client, pubs)
	topics := make([]string, pubs)
	for i := range clients {
		id, u, p, topic := t.pub(i)
		clients[i], topics[i] = client(b, t.addr, id, u, p), topic
	}
	defer func() {
		for _, c := range clients {
			c.Disconnect(0)
		}
	}()
	payload := []byte(strings.Repeat("x", 100))
	delivered := sink.New(total)
	got.Store(delivered)
	var sent, writtenOff atomic.Int64
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func(c paho.Client, topic string) {
			defer wg.Done()
			var last paho.Token
			for j := 0; j < per; j++ {
				waited := time.Now()
				for {
					off := writtenOff.Load()
					if sent.Load()-delivered.N()-off < window {
						break
					}
					if time.Since(waited) > time.Second {
						writtenOff.CompareAndSwap(off, sent.Load()-delivered.N())
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
	n, el := delivered.Wait(time.Second)
	if el <= 0 {
		return 0, total
	}
	return float64(n) / el.Seconds(), max(0, total-n)
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
					var t target
					if broker == "corral" {
						t = corral(b, bin, pat.pubs)
					} else {
						t = mosquitto(b)
					}
					for i := 0; i < b.N; i++ {
						rate, lost := throughput(b, t, pat.pubs, pat.per, qos)
						b.ReportMetric(rate, "msg/s")
						b.ReportMetric(float64(lost), "lost")
						b.ReportMetric(float64(lost)*100/float64(pat.pubs*pat.per), "loss-%")
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

// memory is what the server process holds, read from outside it.
type memory struct {
	rss, heap, stacks, goroutines float64
}

// settled waits for the server's second garbage collection from now (the
// first may have begun earlier, and sync.Pool victims outlive one; an
// idle Go process collects at least every two minutes) and returns its RSS
// (from /proc) and, from the Go collector on /metrics, its heap in live
// and not yet swept objects (go_memstats_heap_alloc_bytes: the live heap
// once that collection's sweep is done), goroutine stacks in use
// (go_memstats_stack_inuse_bytes) and goroutines.
func settled(b *testing.B, p *serverproc.Proc) memory {
	b.Helper()
	time.Sleep(3 * time.Second) // presence writes and events of the last connections
	gcs := p.Metrics(b)["go_gc_duration_seconds_count"]
	deadline := time.Now().Add(5 * time.Minute)
	for p.Metrics(b)["go_gc_duration_seconds_count"] < gcs+2 {
		if time.Now().After(deadline) {
			b.Fatal("the server did not collect garbage twice in 5 minutes")
		}
		time.Sleep(time.Second)
	}
	time.Sleep(2 * time.Second) // the background sweep frees the dead objects
	m := p.Metrics(b)
	return memory{rss: float64(p.RSS(b)), heap: m["go_memstats_heap_alloc_bytes"],
		stacks: m["go_memstats_stack_inuse_bytes"], goroutines: m["go_goroutines"]}
}

// BenchmarkIdleConnectionMemory opens 20,000 authenticated idle
// connections (keepalive 60 s, pinged every 30 s) to a corral server
// running as its own process and reports, between two GC-settled readings
// of that process alone, its RSS, heap and stack growth per connection.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	conns := knob.Int("CORRAL_BENCH_CONNS", 20000)
	if lim := raiseFileLimit(uint64(conns) + 512); lim < uint64(conns)+512 {
		// Each side of every connection needs a descriptor in its process.
		conns = int(lim) - 512
		b.Logf("open-file limit %d: measuring %d connections", lim, conns)
	}
	proc := serverproc.Start(b, serverproc.Build(b))
	p := proc.Server.CreateProduct("idle", nil)
	devs := populate(b, proc.Server, p.ProductKey, conns)
	addr := proc.Addrs["mqtt-tcp"]
	for i := 0; i < b.N; i++ {
		before := settled(b, proc)
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
		after := settled(b, proc)
		stop()
		per := func(a, b float64) float64 { return (a - b) / float64(conns) }
		b.ReportMetric(float64(conns), "connections")
		b.ReportMetric(per(after.rss, before.rss), "rss-bytes/conn")
		b.ReportMetric(per(after.heap, before.heap), "heap-bytes/conn")
		b.ReportMetric(per(after.stacks, before.stacks), "stack-bytes/conn")
		b.ReportMetric(per(after.goroutines, before.goroutines), "goroutines/conn")
		b.ReportMetric(after.rss/(1<<20), "rss-MiB")
		for _, c := range open {
			c.Close()
		}
	}
}
