package device_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

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
