package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/distribution/jobs"
)

// TestNotifier: an online device running the SDK is sent
// thing.bootstrap.notify, answers, is forced off and bootstraps again; a
// device that does not answer is forced off after the timeout; an
// offline one is skipped.
func TestNotifier(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region, c.BootstrapPlainHTTP = "centre", "cn-shanghai", true })
	b := s.App.Broker()
	n := jobs.NewNotifier(b, 3*time.Second)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p := s.CreateProduct("meters", nil)
	ctx := context.Background()

	follower := s.CreateDevice(p.ProductKey, "follows")
	moved := make(chan *device.Client, 1)
	dd, err := device.ConnectBootstrapped(ctx, device.Options{Triple: device.Triple{ProductKey: p.ProductKey, DeviceName: "follows", DeviceSecret: follower.DeviceSecret}},
		device.BootstrapOptions{Centre: "http://" + s.App.HTTPAddr(), OnMoved: func(c *device.Client) { moved <- c }})
	if err != nil {
		t.Fatal(err)
	}
	defer dd.Close()
	if addr, ok := n.Address(p.ProductKey, "follows"); !ok || !addr.IsLoopback() {
		t.Fatalf("Address = %v, %v", addr, ok)
	}
	start := time.Now()
	if err := n.Notify(ctx, p.ProductKey, "follows"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Notify took %v: the reply was not seen", took)
	}
	select {
	case <-moved: // forced off, bootstrapped again, reconnected
	case <-time.After(10 * time.Second):
		t.Fatal("the device did not reconnect after the notify")
	}

	silent := s.CreateDevice(p.ProductKey, "silent")
	no := false
	c, err := device.Connect(ctx, device.Options{Broker: "tcp://" + b.Addr("tcp"), AutoReconnect: &no,
		Triple: device.Triple{ProductKey: p.ProductKey, DeviceName: "silent", DeviceSecret: silent.DeviceSecret}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short := jobs.NewNotifier(b, 200*time.Millisecond)
	if err := short.Start(); err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if err := short.Notify(ctx, p.ProductKey, "silent"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Online(p.ProductKey, "silent") {
		if time.Now().After(deadline) {
			t.Fatal("a silent device was not forced off")
		}
		time.Sleep(10 * time.Millisecond)
	}

	start = time.Now()
	if err := n.Notify(ctx, p.ProductKey, "never-connected"); err != nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("an offline device: %v after %v", err, time.Since(start))
	}
}
