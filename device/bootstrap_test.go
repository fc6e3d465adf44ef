package device_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// centreAndInstance starts sg-1 and a centre whose default instance it is.
func centreAndInstance(t *testing.T) (centre, sg *apptest.Server) {
	t.Helper()
	sg = apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	file := filepath.Join(t.TempDir(), "instances.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n    mqtt: %s\n", sg.App.Broker().Addr("tcp"))), 0o600)
	centre = apptest.Start(t, func(c *config.Config) {
		c.InstanceID, c.Region, c.DistributionFile, c.BootstrapDefaultInstance, c.BootstrapPlainHTTP = "centre", "cn-shanghai", file, "sg-1", true
	})
	return centre, sg
}

// TestBootstrapConnectsWhereTheCentreSays: the SDK bootstraps at the
// centre and connects to sg-1; a cached endpoint that refuses the device
// makes it bootstrap again; thing.bootstrap.notify is answered and the
// device bootstraps and reconnects.
func TestBootstrapConnectsWhereTheCentreSays(t *testing.T) {
	centre, sg := centreAndInstance(t)
	p := sg.CreateProduct("meters", nil)
	d := sg.CreateDevice(p.ProductKey, "meter-0001")
	tr := device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ep, err := device.Bootstrap(ctx, centre.URL, nil, tr)
	if err != nil || net.JoinHostPort(ep.Host, fmt.Sprint(ep.Port)) != sg.App.Broker().Addr("tcp") {
		t.Fatalf("bootstrap: %+v %v", ep, err)
	}

	// A stale cache (a port nobody listens on) is replaced by a bootstrap.
	cache := filepath.Join(t.TempDir(), "endpoint.json")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().(*net.TCPAddr)
	ln.Close()
	stale, _ := json.Marshal(device.Endpoint{Host: "127.0.0.1", Port: dead.Port})
	os.WriteFile(cache, stale, 0o600)

	moved := make(chan *device.Client, 1)
	dd, err := device.ConnectBootstrapped(ctx, device.Options{Triple: tr, ServerSubscribe: true, AutoReconnect: new(bool)},
		device.BootstrapOptions{Centre: centre.URL, Cache: cache, OnMoved: func(c *device.Client) { moved <- c }})
	if err != nil {
		t.Fatal(err)
	}
	defer dd.Close()
	if got := dd.Endpoint(); net.JoinHostPort(got.Host, fmt.Sprint(got.Port)) != sg.App.Broker().Addr("tcp") || !dd.Client().Connected() {
		t.Fatalf("connected to %+v", got)
	}
	var cached device.Endpoint
	b, _ := os.ReadFile(cache)
	if json.Unmarshal(b, &cached); cached != dd.Endpoint() {
		t.Fatalf("cache holds %s", b)
	}

	// The platform tells the device to bootstrap again.
	first := dd.Client()
	sg.Admin("POST", "/v1/publish?topic="+url.QueryEscape("/sys/"+d.ProductKey+"/"+d.DeviceName+"/thing/bootstrap/notify"),
		[]byte(`{"id":"42","version":"1.0","method":"thing.bootstrap.notify","params":{"cmd":0}}`), 204)
	select {
	case c := <-moved:
		if c == first || !c.Connected() || dd.Client() != c {
			t.Fatal("not reconnected with a new client")
		}
	case <-ctx.Done():
		t.Fatal("the device did not follow thing.bootstrap.notify")
	}
}

// TestBootstrapConfigPushV3: a device subscribing itself (no _ss) follows
// the v3 /thing/bootstrap/config/push to the endpoint it names.
func TestBootstrapConfigPushV3(t *testing.T) {
	centre, sg := centreAndInstance(t)
	p := sg.CreateProduct("meters", nil)
	d := sg.CreateDevice(p.ProductKey, "meter-0002")
	tr := device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	moved := make(chan *device.Client, 1)
	dd, err := device.ConnectBootstrapped(ctx, device.Options{Triple: tr, AutoReconnect: new(bool)},
		device.BootstrapOptions{Centre: centre.URL, OnMoved: func(c *device.Client) { moved <- c }})
	if err != nil {
		t.Fatal(err)
	}
	defer dd.Close()
	host, port, _ := net.SplitHostPort(sg.App.Broker().Addr("tcp"))
	push := fmt.Sprintf(`{"id":"7","version":"1.0","method":"thing.bootstrap.config.push","params":{"endpoint":{"mqtt":{"host":%q,"port":%s}}}}`, host, port)
	sg.Admin("POST", "/v1/publish?topic="+url.QueryEscape("/sys/"+d.ProductKey+"/"+d.DeviceName+"/thing/bootstrap/config/push"), []byte(push), 204)
	select {
	case c := <-moved:
		if !c.Connected() {
			t.Fatal("not connected after the push")
		}
	case <-ctx.Done():
		t.Fatal("the device did not follow the config push")
	}
}

// TestBootstrapReconnectsAfterLoss: a device whose session is closed by
// the platform (disabled, then enabled again) reconnects by itself,
// through its endpoint or a new bootstrap.
func TestBootstrapReconnectsAfterLoss(t *testing.T) {
	centre, sg := centreAndInstance(t)
	p := sg.CreateProduct("meters", nil)
	d := sg.CreateDevice(p.ProductKey, "meter-0003")
	tr := device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	moved := make(chan *device.Client, 4)
	dd, err := device.ConnectBootstrapped(ctx, device.Options{Triple: tr, ServerSubscribe: true},
		device.BootstrapOptions{Centre: centre.URL, OnMoved: func(c *device.Client) { moved <- c }})
	if err != nil {
		t.Fatal(err)
	}
	defer dd.Close()
	path := "/v1/products/" + d.ProductKey + "/devices/" + d.DeviceName
	sg.Admin("POST", path+":disable", nil, 200)
	time.Sleep(1500 * time.Millisecond) // refused while disabled: it keeps trying
	sg.Admin("POST", path+":enable", nil, 200)
	select {
	case c := <-moved:
		if !c.Connected() || dd.Client() != c {
			t.Fatal("not reconnected")
		}
	case <-ctx.Done():
		t.Fatal("the device did not reconnect")
	}
}

// FuzzParseBootstrapAnswer: any answer is an endpoint with a host and a
// port in range, or an error; never a panic.
func FuzzParseBootstrapAnswer(f *testing.F) {
	f.Add(200, []byte(`{"code":200,"data":{"resources":{"mqtt":{"host":"a.example","port":1883,"ip":"10.0.0.1"}}},"message":"success"}`))
	f.Add(200, []byte(`{"code":200,"data":{"resources":{"mqtt":{"host":"a","port":0}}}}`))
	f.Add(400, []byte(`{"code":400,"message":"request parameter error"}`))
	f.Add(200, []byte(`{"data":{"resources":{"mqtt":{"host":"a","port":1,"ip":"0123456789abcdef"}}}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		ep, err := device.ParseBootstrapAnswer(status, body)
		if err != nil {
			return
		}
		if status != 200 || ep.Host == "" || ep.Port < 1 || ep.Port > 65535 || len(ep.IP) >= 16 {
			t.Fatalf("%d %q → %+v", status, body, ep)
		}
	})
}
