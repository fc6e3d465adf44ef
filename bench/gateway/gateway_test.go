// Package gateway benchmarks gateways: a gateway bringing 2,000
// sub-devices online (topology adds of 30, batch logins of 50),
// thing.topo.get of 2,000, and messages relayed for sub-devices against the
// same messages from a direct device, in the same run.
package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/sink"
	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

type world struct {
	s      *apptest.Server
	gw     device.Triple
	direct device.Triple
	subs   []device.Triple
}

func setup(b *testing.B, n int) world {
	s := apptest.Start(b, func(c *config.Config) { c.SQLiteSynchronous = "FULL"; c.LogLevel = "error" })
	gp := s.CreateProduct("hub", map[string]any{"nodeType": "gateway"})
	sp := s.CreateProduct("sensor", map[string]any{"nodeType": "subdevice"})
	dp := s.CreateProduct("direct", nil)
	g := s.CreateDevice(gp.ProductKey, "hub-01")
	d := s.CreateDevice(dp.ProductKey, "direct-01")
	w := world{s: s, gw: device.Triple{ProductKey: g.ProductKey, DeviceName: g.DeviceName, DeviceSecret: g.DeviceSecret},
		direct: device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}}
	var batch struct{ Devices []apptest.Device }
	s.Admin("POST", "/v1/products/"+sp.ProductKey+"/devices:batch", map[string]any{"count": n}, 201).JSON(b, &batch)
	for _, x := range batch.Devices {
		w.subs = append(w.subs, device.Triple{ProductKey: x.ProductKey, DeviceName: x.DeviceName, DeviceSecret: x.DeviceSecret})
	}
	return w
}

func (w world) gateway(b *testing.B) *device.Gateway {
	g, err := device.NewGateway(context.Background(), device.GatewayOptions{
		Options:   device.Options{Broker: "tcp://" + w.s.App.Broker().Addr("tcp"), Triple: w.gw},
		StateFile: filepath.Join(b.TempDir(), "gw.json"),
	})
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// BenchmarkGatewayOnline2000 brings 2,000 sub-devices online through one
// gateway: thing.topo.add 30 a call, then combine.batch_login 50 a call
// (the target is under 2 s), and times thing.topo.get of all 2,000 (under
// 50 ms).
func BenchmarkGatewayOnline2000(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_SUBS", 2000)
	for i := 0; i < b.N; i++ {
		w := setup(b, n)
		g := w.gateway(b)
		start := time.Now()
		if err := g.SubDeviceOnlineBatch(context.Background(), w.subs); err != nil {
			b.Fatal(err)
		}
		online := time.Since(start)
		var gets []time.Duration
		for j := 0; j < 21; j++ {
			t0 := time.Now()
			subs, err := g.TopoGet(context.Background())
			if err != nil || len(subs) != n {
				b.Fatalf("topo.get: %d %v", len(subs), err)
			}
			gets = append(gets, time.Since(t0))
		}
		sort.Slice(gets, func(i, j int) bool { return gets[i] < gets[j] })
		b.ReportMetric(online.Seconds()*1000, "online-ms")
		b.ReportMetric(float64(gets[len(gets)/2].Microseconds())/1000, "topo.get-ms")
		g.Close()
	}
}

// BenchmarkRelay publishes the same messages (QoS 1, 100 bytes) from a
// direct device and, through the gateway, for its logged-in sub-devices,
// to one application subscriber, and reports both rates and their ratio.
func BenchmarkRelay(b *testing.B) {
	msgs := knob.Int("CORRAL_BENCH_MSGS", 20000)
	w := setup(b, 100)
	g := w.gateway(b)
	defer g.Close()
	if err := g.SubDeviceOnlineBatch(context.Background(), w.subs); err != nil {
		b.Fatal(err)
	}
	direct, err := device.Connect(context.Background(), device.Options{Broker: "tcp://" + w.s.App.Broker().Addr("tcp"), Triple: w.direct})
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	kid, secret, _ := strings.Cut(w.s.AdminKey, ".")
	var got atomic.Pointer[sink.Counter] // the current run's
	app := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + w.s.App.Broker().Addr("tcp")).SetClientID("sink").
		SetUsername(kid).SetPassword(secret).SetOrderMatters(false))
	if tok := app.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer app.Disconnect(0)
	count := func(paho.Client, paho.Message) {
		if c := got.Load(); c != nil {
			c.Add()
		}
	}
	for _, f := range []string{"/sys/" + w.direct.ProductKey + "/+/thing/event/property/post", "/sys/" + w.subs[0].ProductKey + "/+/thing/event/property/post"} {
		if tok := app.Subscribe(f, 1, count); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
	}
	payload := []byte(fmt.Sprintf(`{"id":"1","params":{"t":%s}}`, strings.Repeat("1", 70)))
	// run publishes msgs messages and returns the delivered rate (timed to
	// the last delivery: the wait ends when all have arrived or none has
	// for a second) and the share lost; the broker drops what a slow
	// subscriber's pending-write queue cannot hold, so loss is reported.
	run := func(pub func(i int) error) (float64, float64) {
		c := sink.New(int64(msgs))
		got.Store(c)
		for i := 0; i < msgs; i++ {
			if err := pub(i); err != nil {
				b.Fatal(err)
			}
		}
		n, el := c.Wait(time.Second)
		if n == 0 {
			b.Fatal("no message delivered")
		}
		return float64(n) / el.Seconds(), 1 - float64(n)/float64(msgs)
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		d, dLoss := run(func(int) error {
			return direct.Publish(ctx, "/sys/"+w.direct.ProductKey+"/"+w.direct.DeviceName+"/thing/event/property/post", 1, payload)
		})
		r, rLoss := run(func(j int) error {
			return g.PublishFor(ctx, w.subs[j%len(w.subs)].Key(), "thing/event/property/post", 1, payload)
		})
		b.ReportMetric(d, "direct-msg/s")
		b.ReportMetric(r, "relayed-msg/s")
		b.ReportMetric(r/d, "relay/direct")
		b.ReportMetric((dLoss+rLoss)*50, "loss-%")
	}
}
