// Command gateway is a runnable example gateway: it connects to corral
// with its own triple, brings a few simulated sub-devices online through
// the device SDK's Gateway helper (which keeps the persisted local
// topology and pending-delete lists), and posts their readings.
//
//	go run ./examples/gateway --broker tcp://localhost:1883 \
//	  --gateway PK:DN:SECRET --sub PK:DN:SECRET --sub PK:DN:SECRET
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/corral-iot/corral/device"
)

type triples []device.Triple

func (t *triples) String() string { return fmt.Sprint(len(*t)) }

func (t *triples) Set(s string) error {
	tr, err := parseTriple(s)
	if err == nil {
		*t = append(*t, tr)
	}
	return err
}

func parseTriple(s string) (device.Triple, error) {
	p := strings.SplitN(s, ":", 3)
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
		return device.Triple{}, fmt.Errorf("want ProductKey:DeviceName:DeviceSecret, got %q", s)
	}
	return device.Triple{ProductKey: p[0], DeviceName: p[1], DeviceSecret: p[2]}, nil
}

func main() {
	broker := flag.String("broker", "tcp://localhost:1883", "corral MQTT URL")
	gw := flag.String("gateway", "", "the gateway's ProductKey:DeviceName:DeviceSecret")
	state := flag.String("state", "gateway-state.json", "file keeping the local topology and pending deletes")
	every := flag.Duration("every", 5*time.Second, "how often each sub-device posts a reading")
	var subs triples
	flag.Var(&subs, "sub", "a simulated sub-device, ProductKey:DeviceName:DeviceSecret (repeatable)")
	flag.Parse()
	gt, err := parseTriple(*gw)
	if err != nil {
		log.Fatalf("--gateway: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	g, err := device.NewGateway(ctx, device.GatewayOptions{
		Options:   device.Options{Broker: *broker, Triple: gt},
		StateFile: *state,
		OnSubDeleted: func(k device.SubKey) {
			log.Printf("platform deleted %s/%s: removing it from the local network", k.ProductKey, k.DeviceName)
		},
		OnSubMessage: func(k device.SubKey, m device.Message) {
			log.Printf("to %s: %s %s", k.DeviceName, m.Topic, m.Payload)
		},
		OnSynced: func(err error) { log.Printf("resynced after reconnect: err=%v", err) },
	})
	if err != nil {
		log.Fatalf("gateway: %v", err)
	}
	defer g.Close()
	if err := g.SubDeviceOnlineBatch(ctx, subs); err != nil {
		log.Fatalf("bringing sub-devices online: %v", err)
	}
	log.Printf("gateway %s online with %d sub-devices; local topology %v", gt.DeviceName, len(subs), g.Local())
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, s := range subs {
				if !g.LoggedIn(s.Key()) {
					continue
				}
				body, _ := json.Marshal(map[string]any{"id": fmt.Sprint(time.Now().UnixMilli()), "version": "1.0",
					"params": map[string]any{"temperature": 18 + rand.Float64()*6}, "method": "thing.event.property.post"})
				if err := g.PublishFor(ctx, s.Key(), "thing/event/property/post", 0, body); err != nil {
					log.Printf("%s: %v", s.DeviceName, err)
				}
			}
		}
	}
}
