package device_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
)

// thingDevice connects a device of a product carrying the thing package's
// test model.
func thingDevice(t *testing.T, o device.Options) (*apptest.Server, *device.Client) {
	t.Helper()
	s := apptest.Start(t)
	p := s.CreateProduct("thermo", nil)
	model, err := os.ReadFile("../internal/thing/testdata/model.json")
	if err != nil {
		t.Fatal(err)
	}
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/tsl", string(model), 200)
	d := s.CreateDevice(p.ProductKey, "thermo-01")
	o.Broker = "tcp://" + s.App.Broker().Addr("tcp")
	o.Triple = device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}
	c, err := device.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return s, c
}

// TestCallPostsAndReportsRefusals: PostProperties waits for the
// platform's post_reply; a value outside the model comes back as an
// ErrPlatform error with the platform's code, and is not stored.
func TestCallPostsAndReportsRefusals(t *testing.T) {
	s, c := thingDevice(t, device.Options{})
	pk := c.ProductKey()
	ctx := context.Background()
	if err := c.PostProperties(ctx, map[string]any{"Temperature": 21.5}); err != nil {
		t.Fatalf("a good post: %v", err)
	}
	err := c.PostProperties(ctx, map[string]any{"Temperature": 500})
	if !errors.Is(err, device.ErrPlatform) {
		t.Fatalf("a post outside the model: %v; want ErrPlatform", err)
	}
	if err := c.PostEvent(ctx, "Overheat", map[string]any{"Temperature": 99}); err != nil {
		t.Fatalf("an event of the model: %v", err)
	}
	var props struct {
		Properties []struct {
			Identifier string
			Value      json.RawMessage
		}
	}
	s.Admin("GET", "/v1/products/"+pk+"/devices/thermo-01/properties", nil, 200).JSON(t, &props)
	if len(props.Properties) != 1 || props.Properties[0].Identifier != "Temperature" || string(props.Properties[0].Value) != "21.5" {
		t.Fatalf("stored properties %+v; want the good post's Temperature 21.5 alone", props.Properties)
	}
}

// TestServerSubscribeDevice: a device connecting as stock Link SDK builds
// do (_ss=1) sends no SUBSCRIBE, yet its calls get their replies, its tags
// and thing model round-trip, and a desired value set while it was away
// arrives as a property set when it connects.
func TestServerSubscribeDevice(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("thermo", nil)
	model, err := os.ReadFile("../internal/thing/testdata/model.json")
	if err != nil {
		t.Fatal(err)
	}
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/tsl", string(model), 200)
	d := s.CreateDevice(p.ProductKey, "thermo-01")
	// Commanded while offline.
	s.Admin("PUT", "/v1/products/"+p.ProductKey+"/devices/thermo-01/desired-properties", map[string]any{"values": map[string]any{"TargetTemp": 23}}, 200)

	sets := make(chan device.Message, 4)
	o := device.Options{Broker: "tcp://" + s.App.Broker().Addr("tcp"), ServerSubscribe: true,
		Triple:   device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret},
		Handlers: map[string]device.Handler{"/sys/" + d.ProductKey + "/" + d.DeviceName + "/thing/service/property/set": func(m device.Message) { sets <- m }}}
	c, err := device.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	select {
	case m := <-sets:
		var req struct {
			Params map[string]float64
		}
		json.Unmarshal(m.Payload, &req)
		if req.Params["TargetTemp"] != 23 {
			t.Fatalf("the property set on connect: %s", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the desired value set while offline never arrived")
	}
	ctx := context.Background()
	if err := c.PostProperties(ctx, map[string]any{"Temperature": 20.5}); err != nil {
		t.Fatalf("a post without SUBSCRIBE: %v", err)
	}
	if err := c.UpdateTags(ctx, map[string]string{"site": "lab"}); err != nil {
		t.Fatalf("tags: %v", err)
	}
	var dev struct{ Attributes map[string]string }
	s.Admin("GET", "/v1/products/"+d.ProductKey+"/devices/"+d.DeviceName, nil, 200).JSON(t, &dev)
	if dev.Attributes["site"] != "lab" {
		t.Fatalf("attributes after UpdateTags: %v", dev.Attributes)
	}
	if err := c.DeleteTags(ctx, "site"); err != nil {
		t.Fatalf("delete tags: %v", err)
	}
	tsl, err := c.ThingModel(ctx)
	if err != nil || !strings.Contains(string(tsl), "TargetTemp") {
		t.Fatalf("thing model: %v %.80s", err, tsl)
	}
	if at, err := c.ServerTime(ctx); err != nil || time.Since(at).Abs() > 2*time.Second {
		t.Fatalf("server time: %v %v", at, err)
	}
}

// TestDesiredConfigAndBatch: the SDK reads and clears desired values,
// fetches the product's configuration file over HTTPS and checks its
// SHA-256, hears config pushes, and posts timed batches.
func TestDesiredConfigAndBatch(t *testing.T) {
	s, c := thingDevice(t, device.Options{})
	pk, ctx := c.ProductKey(), context.Background()
	s.Admin("PUT", "/v1/products/"+pk+"/devices/thermo-01/desired-properties", map[string]any{"values": map[string]any{"TargetTemp": 21}}, 200)
	got, err := c.Desired(ctx, "TargetTemp")
	if err != nil || got["TargetTemp"].Version != 1 || string(got["TargetTemp"].Value) != "21" {
		t.Fatalf("Desired: %+v %v", got, err)
	}
	if err := c.DeleteDesired(ctx, map[string]int64{"TargetTemp": 1}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Desired(ctx); len(got) != 0 {
		t.Fatalf("after DeleteDesired: %+v", got)
	}
	if err := c.PostBatch(ctx, map[string][]device.TimedValue{"Temperature": {{Value: 20.5, Time: 1700000000000}, {Value: 21.5, Time: 1700000001000}}}); err != nil {
		t.Fatalf("PostBatch: %v", err)
	}
	// Configuration: announced, downloaded over HTTPS, checked.
	pushed := make(chan device.ConfigFile, 1)
	if err := c.OnConfigPush(ctx, func(f device.ConfigFile) { pushed <- f }); err != nil {
		t.Fatal(err)
	}
	s.Admin("PUT", "/v1/products/"+pk+"/config", map[string]any{"content": "interval=60"}, 200)
	roots, err := os.ReadFile(filepath.Join(s.Config.DataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	f, body, err := c.Config(ctx, hc)
	if err != nil || string(body) != "interval=60" || f.Size != 11 {
		t.Fatalf("Config: %+v %q %v", f, body, err)
	}
	f.Sign = strings.Repeat("0", 64)
	if _, err := c.Download(ctx, hc, f); !errors.Is(err, device.ErrConfigSign) {
		t.Fatalf("a file that does not match its sign: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var dev struct{ Status string }
		s.Admin("GET", "/v1/products/"+pk+"/devices/thermo-01", nil, 200).JSON(t, &dev)
		if dev.Status == "online" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never online")
		}
	}
	s.Admin("POST", "/v1/products/"+pk+"/config:push", nil, 200)
	select {
	case p := <-pushed:
		if body, err := c.Download(ctx, hc, p); err != nil || string(body) != "interval=60" {
			t.Fatalf("the pushed file: %q %v", body, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no thing.config.push")
	}
}
