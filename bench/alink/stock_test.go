// Package alink benchmarks what stock Link SDK devices see (issue 10): a
// device with _ss=1 that sends no SUBSCRIBE, from CONNECT to its first
// property set, beside the same device subscribing explicitly (the
// ceiling), interleaved in the same run.
package alink

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

const model = `{"properties":[{"identifier":"TargetTemp","name":"Target","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}],"events":[],"services":[]}`

func sign(secret, content string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(content))
	return hex.EncodeToString(m.Sum(nil))
}

// firstSet connects d (with _ss=1, or _ss=0 and an explicit SUBSCRIBE),
// asks corral for a property set through the REST API once the CONNECT
// (and SUBSCRIBE) is answered, and returns the time from CONNECT to the
// set's arrival.
func firstSet(b *testing.B, s *apptest.Server, d apptest.Device, explicit bool) time.Duration {
	id := d.ProductKey + "." + d.DeviceName
	ts := fmt.Sprint(time.Now().UnixMilli())
	flags := "_ss=1,gw=0,ext=0"
	if explicit {
		flags = "_ss=0,gw=0,ext=0"
	}
	topic := "/sys/" + d.ProductKey + "/" + d.DeviceName + "/thing/service/property/set"
	got := make(chan struct{}, 1)
	handler := func(_ paho.Client, m paho.Message) {
		if m.Topic() == topic {
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).
		SetClientID(id + "|securemode=3,signmethod=hmacsha256,timestamp=" + ts + "," + flags + "|").
		SetUsername(d.DeviceName + "&" + d.ProductKey).
		SetPassword(sign(d.DeviceSecret, "clientId"+id+"deviceName"+d.DeviceName+"productKey"+d.ProductKey+"timestamp"+ts)).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).SetDefaultPublishHandler(handler)
	c := paho.NewClient(o)
	start := time.Now()
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("CONNECT: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if explicit {
		if tok := c.Subscribe(topic, 0, handler); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("SUBSCRIBE: %v", tok.Error())
		}
	}
	s.Admin("PUT", "/v1/products/"+d.ProductKey+"/devices/"+d.DeviceName+"/properties", map[string]any{"params": map[string]any{"TargetTemp": 1}}, 200)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		b.Fatalf("%s: no property set", d.DeviceName)
	}
	return time.Since(start)
}

func quantile(ds []time.Duration, q float64) float64 {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
}

// BenchmarkStockFirstPropertySet: CONNECT → first property set for
// CORRAL_BENCH_DEVICES devices (1,000), alternately stock (_ss=1, no
// SUBSCRIBE) and explicit (SUBSCRIBE, then the set), one at a time;
// reports median and p99 of each in ms.
func BenchmarkStockFirstPropertySet(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_DEVICES", 1000)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := apptest.Start(b, func(c *config.Config) { c.LogLevel = "error" })
		p := s.CreateProduct("stock", nil)
		s.Admin("PUT", "/v1/products/"+p.ProductKey+"/tsl", model, 200)
		var batch struct{ Devices []apptest.Device }
		s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"count": n}, 201).JSON(b, &batch)
		b.StartTimer()
		var stock, explicit []time.Duration
		for j, d := range batch.Devices {
			if j%2 == 0 {
				stock = append(stock, firstSet(b, s, d, false))
			} else {
				explicit = append(explicit, firstSet(b, s, d, true))
			}
		}
		b.StopTimer()
		b.ReportMetric(quantile(stock, 0.5), "stock-p50-ms")
		b.ReportMetric(quantile(stock, 0.99), "stock-p99-ms")
		b.ReportMetric(quantile(explicit, 0.5), "subscribe-p50-ms")
		b.ReportMetric(quantile(explicit, 0.99), "subscribe-p99-ms")
		s.Stop()
	}
}
