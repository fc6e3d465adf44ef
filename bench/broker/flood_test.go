package broker

import (
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// BenchmarkFailedLoginFlood: CORRAL_BENCH_N (20,000) CONNECTs with a bad
// signature from 127.0.0.1 (CORRAL_BENCH_C, 32, at a time), all for the
// device that meanwhile connects, over and over, with its good signature
// from 127.0.0.2. Reports the legitimate CONNECT's p50/p99, the flood's
// rate and how its attempts were answered, and the audit rows the flood
// left (one per reason a minute is the target) with the server's
// default login back-off.
func BenchmarkFailedLoginFlood(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_N", 20000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	def := config.Default()
	s := apptest.Start(b, func(c *config.Config) {
		c.SQLiteSynchronous = "FULL"
		c.LogLevel = "error"
		c.MQTTAuthFailuresPerIP = def.MQTTAuthFailuresPerIP
		c.MQTTAuthFailuresPerDevice = def.MQTTAuthFailuresPerDevice
	})
	p := s.CreateProduct("flood", nil)
	d := s.CreateDevice(p.ProductKey, "victim")
	good := mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)
	bad := good
	bad.Password = strings.Repeat("0", 64)
	addr := s.App.Broker().Addr("tcp")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var next, refused, busy, closed atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		start := time.Now()
		for w := 0; w < c; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					conn, err := mqttload.ConnectFrom(addr, "127.0.0.1", bad, 60)
					var re *mqttload.RefusedError
					switch {
					case err == nil:
						conn.Close()
						b.Error("a bad signature was accepted")
						return
					case errors.As(err, &re) && re.Code == 5:
						refused.Add(1)
					case errors.As(err, &re) && re.Code == 3:
						busy.Add(1)
					case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(err.Error(), "reset"):
						closed.Add(1) // at accept: over mqtt_max_pending_per_ip
					default:
						b.Errorf("flood CONNECT: %v", err)
						return
					}
				}
			}()
		}
		var lat []time.Duration
		legit := make(chan error, 1)
		go func() {
			defer close(legit)
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				conn, err := mqttload.ConnectFrom(addr, "127.0.0.2", good, 60)
				if err != nil {
					legit <- err
					return
				}
				lat = append(lat, time.Since(t0))
				mqttload.Disconnect(conn)
			}
		}()
		wg.Wait()
		el := time.Since(start)
		close(stop)
		if err := <-legit; err != nil {
			b.Fatalf("the legitimate device failed to connect during the flood: %v", err)
		}
		// The audit rows the flood left, once the aggregate is flushed.
		answered := refused.Load() + busy.Load()
		var rows, counted int
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			rows, counted = floodAudit(b, s, "127.0.0.1")
			if int64(counted) >= answered {
				break
			}
		}
		p50, p99 := mqttload.Percentiles(lat)
		b.ReportMetric(float64(p50.Microseconds())/1000, "legit-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "legit-p99-ms")
		b.ReportMetric(float64(len(lat)), "legit-connects")
		b.ReportMetric(float64(n)/el.Seconds(), "flood-connects/s")
		b.ReportMetric(float64(refused.Load()), "refused-checked")
		b.ReportMetric(float64(busy.Load()), "refused-busy")
		b.ReportMetric(float64(closed.Load()), "closed-at-accept")
		b.ReportMetric(float64(rows), "audit-rows")
		b.ReportMetric(float64(counted), "audit-count")
		b.ReportMetric(el.Minutes(), "minutes")
	}
}

// floodAudit returns the mqtt.connect audit rows from source and the
// attempts they count.
func floodAudit(b *testing.B, s *apptest.Server, source string) (rows, counted int) {
	var page struct {
		Entries []struct {
			Source string `json:"source"`
			Count  int    `json:"count"`
		} `json:"entries"`
	}
	s.Admin("GET", "/v1/audit?action=mqtt.connect&limit=100", nil, 200).JSON(b, &page)
	for _, e := range page.Entries {
		if e.Source == source {
			rows++
			counted += e.Count
		}
	}
	return rows, counted
}
