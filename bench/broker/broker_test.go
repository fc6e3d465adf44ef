// Package broker benchmarks corral's MQTT side, with corral running as its
// own process: authenticated CONNECT rate against a registry of 100,000
// devices, message throughput (fan-in and point-to-point, QoS 0 and 1)
// side by side with Mosquitto at 127.0.0.1:1883 using the same clients,
// delivery latency at half the measured peak, and memory per idle
// authenticated connection, each beside Mosquitto.
package broker

import (
	"crypto/pbkdf2"
	crand "crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
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

// BenchmarkConnectRate: CORRAL_BENCH_C (32) concurrent raw clients
// CONNECT (MQTT 3.1.1, clean session, keepalive 60 s) and DISCONNECT,
// CORRAL_BENCH_N (20,000) times: to corral as its own process with a
// registry of CORRAL_BENCH_DEVICES (100,000) devices, each CONNECT a
// different device drawn at random without replacement (signature checked
// against the registry, so none takes over a live session of its own), and
// with the same client to Mosquitto at 127.0.0.1:1883 (anonymous, a new
// client id each), and to a private Mosquitto of the same binary
// authenticating against a password file of as many users
// ("mosquitto-auth": PBKDF2-SHA512 hashes as mosquitto_passwd writes
// them; each CONNECT a different user).
func BenchmarkConnectRate(b *testing.B) {
	size := knob.Int("CORRAL_BENCH_DEVICES", 100000)
	n := min(knob.Int("CORRAL_BENCH_N", 20000), size)
	c := knob.Int("CORRAL_BENCH_C", 32)
	for _, broker := range []string{"corral", "mosquitto", "mosquitto-auth"} {
		b.Run(broker, func(b *testing.B) {
			if broker == "mosquitto-auth" {
				auth := "allow_anonymous false\npassword_file " + passwordFile(b, size) + "\n"
				if os.Geteuid() == 0 {
					auth += "user root\n" // else it drops to user mosquitto, who cannot read the file in the test's directory
				}
				cmd, addr := serverproc.MosquittoConf(b, auth)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					order := rand.Perm(size)[:n]
					connectRate(b, addr, cmd.Process.Pid, n, c, func(j int) mqttload.Creds {
						u := fmt.Sprintf("user-%d", order[j])
						return mqttload.Creds{ClientID: u, Username: u, Password: "password-" + u}
					})
				}
				return
			}
			if broker == "corral" {
				proc := serverproc.Start(b, serverproc.Build(b))
				p := proc.Server.CreateProduct("bench", nil)
				devs := populate(b, proc.Server, p.ProductKey, size)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					order := rand.Perm(len(devs))[:n]
					connectRate(b, proc.Addrs["mqtt-tcp"], proc.Cmd.Process.Pid, n, c, func(j int) mqttload.Creds {
						d := devs[order[j]]
						return mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)
					})
				}
				return
			}
			addr := pahoload.Mosquitto(b).Addr
			for i := 0; i < b.N; i++ {
				connectRate(b, addr, 0, n, c, func(j int) mqttload.Creds {
					return mqttload.Creds{ClientID: fmt.Sprintf("brokerbench-c-%d-%d", i, j)}
				})
			}
		})
	}
}

// passwordFile writes a Mosquitto password file of n users, user-i with
// password password-user-i, each hashed as mosquitto_passwd does ($7$:
// PBKDF2-SHA512, 101 iterations, a 12-byte salt), and returns its path.
func passwordFile(b *testing.B, n int) string {
	b.Helper()
	var sb strings.Builder
	for i := range n {
		u := fmt.Sprintf("user-%d", i)
		salt := make([]byte, 12)
		crand.Read(salt)
		key, err := pbkdf2.Key(sha512.New, "password-"+u, salt, 101, sha512.Size)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&sb, "%s:$7$101$%s$%s\n", u, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key))
	}
	path := filepath.Join(b.TempDir(), "passwords")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// connectRate runs n CONNECT + DISCONNECT from c workers, the j-th with
// creds(j), and reports connects/s and the CONNECT-to-CONNACK p50 and p99;
// with the server's pid (non-zero), also the server's CPU time a CONNECT +
// DISCONNECT, counted until it is quiet again (its deferred work
// included).
func connectRate(b *testing.B, addr string, pid, n, c int, creds func(j int) mqttload.Creds) {
	b.Helper()
	lat := make([]time.Duration, n)
	var cpu0 time.Duration
	if pid != 0 {
		cpu0 = serverproc.CPUTime(b, pid)
	}
	start := time.Now()
	failed := mqttload.Spread(n, c, func(j int) error {
		t0 := time.Now()
		conn, err := mqttload.Connect(addr, creds(j), 60)
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
	if pid != 0 {
		b.ReportMetric(float64((serverproc.Quiet(b, pid)-cpu0).Microseconds())/float64(n), "server-cpu-µs/connect")
	}
	p50, p99 := mqttload.Percentiles(lat)
	b.ReportMetric(float64(n)/el.Seconds(), "connects/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
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

// BenchmarkLatency measures point-to-point delivery latency on corral (its
// own process, the publisher an authenticated device, the subscriber an
// application) and on Mosquitto (anonymous) with the same paho clients:
// each run measures the broker's p2p peak as BenchmarkThroughput does
// (CORRAL_BENCH_P2P messages), then publishes CORRAL_BENCH_LAT_N (20,000)
// 100-byte messages open-loop at half of it and reports the p50 and p99
// from Publish to the subscriber's handler, and the messages lost.
func BenchmarkLatency(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_LAT_N", 20000)
	peakN := knob.Int("CORRAL_BENCH_P2P", 50000)
	bin := serverproc.Build(b)
	for _, qos := range []byte{0, 1} {
		for _, broker := range []string{"corral", "mosquitto"} {
			b.Run(fmt.Sprintf("p2p/qos%d/%s", qos, broker), func(b *testing.B) {
				var t pahoload.Target
				if broker == "corral" {
					t = corral(b, bin, 1)
				} else {
					t = pahoload.Mosquitto(b)
				}
				for i := 0; i < b.N; i++ {
					peak, _ := pahoload.Throughput(b, t, 1, peakN, qos)
					p50, p99, lost := pahoload.Latency(b, t, qos, peak/2, n)
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

// BenchmarkIdleConnectionMemory opens CORRAL_BENCH_CONNS (19,000: the
// machine's file limit is 20,000 a process) idle connections with the raw
// client (MQTT 3.1.1, clean session, keepalive 60 s, pinged every 30 s) to
// a fresh server process each run: corral (its own process, each
// connection a different device with a signed CONNECT) and a private
// Mosquitto of the machine's binary (anonymous; serverproc.Mosquitto). It
// reports the RSS growth per connection between two readings of that
// process alone: corral's after two of its garbage collections
// (serverproc.Proc.Settled) with heap, stacks and goroutines too,
// Mosquitto's (C) 5 s after the last connection. corral's RSS growth is
// split: nongo-bytes/conn is what Go does not manage (SQLite's page
// caches, filled by the devices' first CONNECTs). CORRAL_BENCH_WARM=1
// connects and disconnects every device once before the first reading,
// so that the figure is what an idle connection holds beyond what its
// device's first CONNECT leaves for the server's life, once the server's
// CPU has gone quiet (its queued presence work done).
func BenchmarkIdleConnectionMemory(b *testing.B) {
	conns := knob.Int("CORRAL_BENCH_CONNS", 19000)
	warm := knob.Int("CORRAL_BENCH_WARM", 0) == 1
	if lim := mqttload.RaiseFileLimit(uint64(conns) + 512); lim < uint64(conns)+512 {
		// Each side of every connection needs a descriptor in its process.
		conns = int(lim) - 512
		b.Logf("open-file limit %d: measuring %d connections", lim, conns)
	}
	bin := serverproc.Build(b)
	for _, broker := range []string{"corral", "mosquitto"} {
		b.Run(broker, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var (
					creds      func(j int) mqttload.Creds
					addr       string
					read       func() serverproc.Memory
					stopServer func()
				)
				if broker == "corral" {
					proc := serverproc.Start(b, bin)
					p := proc.Server.CreateProduct("idle", nil)
					devs := populate(b, proc.Server, p.ProductKey, conns)
					creds = func(j int) mqttload.Creds {
						d := devs[j]
						return mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)
					}
					addr, stopServer = proc.Addrs["mqtt-tcp"], proc.Stop
					read = func() serverproc.Memory { return proc.Settled(b, "") }
					if warm {
						// Every device once, so that what its first CONNECT
						// leaves for the server's life (registry pages in
						// SQLite's caches, its shadow's presence, cache
						// entries) is in the first reading.
						if failed := mqttload.Spread(conns, 32, func(j int) error {
							c, err := mqttload.Connect(addr, creds(j), 60)
							if err == nil {
								mqttload.Disconnect(c)
							}
							return err
						}); failed > 0 {
							b.Fatalf("warm-up: %d of %d connects failed", failed, conns)
						}
						// What the session starts and ends queued (shadow
						// presence, desired properties) is done before the
						// first reading.
						waitQuiet(b, proc.Cmd.Process.Pid)
					}
				} else {
					cmd, a := serverproc.Mosquitto(b)
					creds = func(j int) mqttload.Creds { return mqttload.Creds{ClientID: fmt.Sprintf("brokerbench-idle-%d", j)} }
					addr, stopServer = a, func() { cmd.Process.Kill(); cmd.Wait() }
					read = func() serverproc.Memory {
						time.Sleep(5 * time.Second)
						return serverproc.Memory{RSS: float64(serverproc.RSSOf(b, cmd.Process.Pid))}
					}
				}
				before := read()
				open := make([]net.Conn, conns)
				failed := mqttload.Spread(conns, 32, func(j int) error {
					c, err := mqttload.Connect(addr, creds(j), 60)
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
				after := read()
				stop()
				closeAll()
				stopServer()
				per := func(a, b float64) float64 { return (a - b) / float64(conns) }
				b.ReportMetric(float64(conns), "connections")
				b.ReportMetric(per(after.RSS, before.RSS), "rss-bytes/conn")
				if broker == "corral" {
					b.Logf("corral before: %+v", before)
					b.Logf("corral after:  %+v", after)
					b.ReportMetric(per(after.HeapInuse, before.HeapInuse), "heap-inuse-bytes/conn")
					b.ReportMetric(per(after.RSS-after.GoResident, before.RSS-before.GoResident), "nongo-bytes/conn")
					b.ReportMetric(per(after.Heap, before.Heap), "heap-bytes/conn")
					b.ReportMetric(per(after.FileRSS, before.FileRSS), "file-rss-bytes/conn")
					b.ReportMetric(per(after.HeapIdle, before.HeapIdle), "heap-idle-bytes/conn")
					b.ReportMetric(per(after.Stacks, before.Stacks), "stack-bytes/conn")
					b.ReportMetric(per(after.Goroutines, before.Goroutines), "goroutines/conn")
				}
				b.ReportMetric(after.RSS/(1<<20), "rss-MiB")
			}
		})
	}
}

// waitQuiet waits (up to 5 minutes) until process pid has used less than
// 5% of a core over 2 s: its queued work is done.
func waitQuiet(b *testing.B, pid int) {
	b.Helper()
	cpu := func() float64 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatalf("reading the server's CPU time: %v", err)
		}
		// utime and stime are fields 14 and 15, after the parenthesised name.
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		return (u + s) / 100 // clock ticks (USER_HZ, 100 on Linux)
	}
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		c0 := cpu()
		time.Sleep(2 * time.Second)
		if cpu()-c0 < 0.1 {
			return
		}
	}
	b.Fatal("the server did not go quiet within 5 minutes")
}
