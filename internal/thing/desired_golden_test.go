package thing

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink/alinktest"
	"github.com/corral-iot/corral/internal/registry"
)

// desiredWorld is a DesiredRegistry and ConfigRegistry over fixed values.
type desiredWorld struct {
	vals []registry.DesiredValue
	cfg  *registry.ProductConfig
}

func (d *desiredWorld) LookupDesired(context.Context, string, string) ([]registry.DesiredValue, error) {
	return d.vals, nil
}

func (d *desiredWorld) DeviceDeleteDesired(_ context.Context, _, _ string, versions map[string]int64, _ bool) ([]string, error) {
	return nil, nil
}

func (d *desiredWorld) MarkDesiredDelivered(context.Context, string, string, map[string]int64) error {
	return nil
}

func (d *desiredWorld) LookupProductConfig(context.Context, string) (registry.ProductConfig, error) {
	if d.cfg == nil {
		return registry.ProductConfig{}, registry.ErrNotFound
	}
	return *d.cfg, nil
}

// TestDesiredAndConfigGolden pins the desired-value and remote
// configuration payloads: desired.get and delete replies (and a bad
// request's), the property set that delivers desired values, the
// thing.config.get reply (with a file and without) and thing.config.push.
func TestDesiredAndConfigGolden(t *testing.T) {
	at := time.UnixMilli(1700000000000).UTC()
	dw := &desiredWorld{vals: []registry.DesiredValue{
		{Identifier: "FanLevel", Value: json.RawMessage(`2`), Version: 1, Time: at, Delivered: 1},
		{Identifier: "TargetTemp", Value: json.RawMessage(`22.5`), Version: 3, Time: at},
	}}
	sys := "/sys/" + fzPK + "/" + fzDN + "/"
	for _, tt := range []struct {
		name, rest, payload string
	}{
		{"desired_get_reply", "thing/property/desired/get", `{"id":"11","version":"1.0","params":["TargetTemp","Nope"],"method":"thing.property.desired.get"}`},
		{"desired_get_reply_all", "thing/property/desired/get", `{"id":"12","params":[]}`},
		{"desired_get_reply_bad_params", "thing/property/desired/get", `{"id":"13","params":{"a":1}}`},
		{"desired_delete_reply", "thing/property/desired/delete", `{"id":"14","params":{"TargetTemp":{"version":3}}}`},
		{"desired_delete_reply_bad_version", "thing/property/desired/delete", `{"id":"15","params":{"TargetTemp":{"version":-1}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fzWorld{}
			d := NewDesired(w, dw, nil)
			if tt.rest == "thing/property/desired/get" {
				d.onGet(sys+tt.rest, []byte(tt.payload))
			} else {
				d.onDelete(sys+tt.rest, []byte(tt.payload))
			}
			if len(w.published) != 1 || w.published[0].topic != sys+tt.rest+"_reply" {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
		})
	}
	t.Run("desired_property_set", func(t *testing.T) {
		w := &fzWorld{}
		d := NewDesired(w, dw, nil)
		d.ids.Store(1699999999999)
		d.Push(context.Background(), fzPK, fzDN)
		if len(w.published) != 1 || w.published[0].topic != sys+"thing/service/property/set" {
			t.Fatalf("published %+v", w.published)
		}
		alinktest.Golden(t, "desired_property_set", w.published[0].payload) // TargetTemp only: FanLevel was delivered
	})
	cfg := &registry.ProductConfig{ConfigID: "0123456789abcdef0123456789abcdef", Size: 11, Sign: "c1ff3ee4a3e8a2d5d4d1c0b4d2bd2d0c5e7a4c8b0b1f1a8e9d6c3b2a1f0e9d8c", SignMethod: "Sha256", CreatedAt: at}
	now := func() time.Time { return at }
	newConfigs := func(w *fzWorld, c *registry.ProductConfig) *Configs {
		return NewConfigs(ConfigOptions{Broker: w, Registry: &desiredWorld{cfg: c}, BaseURL: func() string { return "https://iot.example.com:8443" },
			Key: []byte("golden"), Now: now})
	}
	for _, tt := range []struct {
		name string
		cfg  *registry.ProductConfig
	}{{"config_get_reply", cfg}, {"config_get_reply_none", nil}} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fzWorld{}
			newConfigs(w, tt.cfg).onGet(sys+"thing/config/get", []byte(`{"id":"21","version":"1.0","params":{"configScope":"product","getType":"file"},"method":"thing.config.get"}`))
			if len(w.published) != 1 || w.published[0].topic != sys+"thing/config/get_reply" {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
		})
	}
	t.Run("config_push", func(t *testing.T) {
		w := &fzWorld{}
		if n, err := newConfigs(w, cfg).Push(context.Background(), fzPK, []string{fzDN}); err != nil || n != 1 {
			t.Fatalf("push: %d %v", n, err)
		}
		if len(w.published) != 1 || w.published[0].topic != sys+"thing/config/push" {
			t.Fatalf("published %+v", w.published)
		}
		alinktest.Golden(t, "config_push", w.published[0].payload)
	})
}
