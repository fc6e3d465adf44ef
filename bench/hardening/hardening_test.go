// Package hardening measures what corral's security hardening costs on the
// two hot paths it touches: authenticated MQTT CONNECT and HTTP dynamic
// registration. The same load generator drives two builds in one sitting,
// each as its own server process: the build from the tree under test
// ("current") and, when CORRAL_BENCH_BASELINE names one, a binary built from
// the commit before the change ("baseline").
//
//	git worktree add /tmp/base <commit> && (cd /tmp/base && go build -o /tmp/corral-base ./cmd/corral)
//	CORRAL_BENCH_BASELINE=/tmp/corral-base go test ./bench/hardening/ -run '^$' -bench . -benchtime 1x -count 3
package hardening

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/bench/internal/serverproc"
)

// builds returns the binaries to measure, baseline first when given.
func builds(b *testing.B) [][2]string {
	out := [][2]string{}
	if base := os.Getenv("CORRAL_BENCH_BASELINE"); base != "" {
		out = append(out, [2]string{"baseline", base})
	}
	return append(out, [2]string{"current", serverproc.Build(b)})
}

// Both builds get the same settings: rate limits off (one address makes
// all the load) and plain-HTTP registration on (the baseline serves it by
// default; the hardened build only when asked, as a lab setting).
var flags = []string{"--registration-rate-per-ip", "0", "--registration-rate-per-product", "0", "--dynreg-plain-http=true"}

type device struct{ ProductKey, DeviceName, DeviceSecret string }

// BenchmarkConnect: 32 clients CONNECT (signature checked against a
// registry of CORRAL_BENCH_DEVICES devices, keepalive 60 s) and DISCONNECT;
// every device connects once, in random order, so no CONNECT takes over a
// live session.
func BenchmarkConnect(b *testing.B) {
	size := knob.Int("CORRAL_BENCH_DEVICES", 20000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	for _, bld := range builds(b) {
		b.Run(bld[0], func(b *testing.B) {
			p := serverproc.Start(b, bld[1], flags...)
			prod := p.Server.CreateProduct("bench", nil)
			var devs []device
			for done := 0; done < size; done += 10000 {
				var batch struct{ Devices []device }
				p.Server.Admin("POST", "/v1/products/"+prod.ProductKey+"/devices:batch", map[string]any{"count": min(10000, size-done)}, 201).JSON(b, &batch)
				devs = append(devs, batch.Devices...)
			}
			addr := p.Addrs["mqtt-tcp"]
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				order := rand.Perm(len(devs))
				lat := make([]time.Duration, len(devs))
				start := time.Now()
				failed := mqttload.Spread(len(devs), c, func(j int) error {
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
					b.Fatalf("%d of %d connects failed", failed, len(devs))
				}
				p50, p99 := mqttload.Percentiles(lat)
				b.ReportMetric(float64(len(devs))/el.Seconds(), "connects/s")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
		})
	}
}

func sign(secret, dn, pk, random string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("deviceName" + dn + "productKey" + pk + "random" + random))
	return hex.EncodeToString(m.Sum(nil))
}

// BenchmarkRegister: 32 clients register CORRAL_BENCH_N new devices over
// HTTP dynamic registration (auto mode, SQLite synchronous=FULL), after
// 2,000 to warm up.
func BenchmarkRegister(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_N", 10000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	for _, bld := range builds(b) {
		b.Run(bld[0], func(b *testing.B) {
			p := serverproc.Start(b, bld[1], flags...)
			prod := p.Server.CreateProduct("bench", map[string]any{"dynamicRegistration": "auto"})
			url := p.Server.URL + "/auth/register/device"
			tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			run := func(prefix string, n int) (float64, time.Duration, time.Duration) {
				lat := make([]time.Duration, n)
				start := time.Now()
				failed := mqttload.Spread(n, c, func(i int) error {
					dn, random := fmt.Sprintf("%s-%08d", prefix, i), fmt.Sprintf("r%d", i)
					form := "productKey=" + prod.ProductKey + "&deviceName=" + dn + "&random=" + random + "&signMethod=hmacsha256&sign=" + sign(prod.ProductSecret, dn, prod.ProductKey, random)
					t0 := time.Now()
					resp, err := client.Post(url, "application/x-www-form-urlencoded", strings.NewReader(form))
					if err != nil {
						return err
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					lat[i] = time.Since(t0)
					if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"code":200`) {
						return fmt.Errorf("registration answered %d", resp.StatusCode)
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
			run("warm", 2000)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rate, p50, p99 := run(fmt.Sprintf("reg%d", i), n)
				b.ReportMetric(rate, "reg/s")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
		})
	}
}
