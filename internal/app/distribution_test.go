package app_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/app"
	"github.com/corral-iot/corral/internal/config"
)

// TestDistributionSettingsRefused: a bad distribution_file, geoip_db or
// default instance stops the start with an error naming the setting.
func TestDistributionSettingsRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n"), 0o600)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("instancez: []\n"), 0o600)
	for _, tt := range []struct {
		name string
		edit func(c *config.Config)
		want string
	}{
		{"an instance without endpoints", func(c *config.Config) { c.DistributionFile = bad }, "instances[0]"},
		{"an unknown key", func(c *config.Config) { c.DistributionFile = unknown }, "instancez"},
		{"a missing file", func(c *config.Config) { c.DistributionFile = filepath.Join(dir, "none.yaml") }, "distribution_file"},
		{"a default instance nobody knows", func(c *config.Config) { c.BootstrapDefaultInstance = "nowhere" }, "bootstrap_default_instance"},
		{"a centre instance nobody knows", func(c *config.Config) { c.DistributionCentreInstance = "nowhere" }, "distribution_centre_instance"},
		{"a GeoIP database that is not one", func(c *config.Config) { c.GeoIPDB = bad }, "geoip_db"},
		{"a bad instance id", func(c *config.Config) { c.InstanceID = "Not_An_Id" }, "instance_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = filepath.Join(t.TempDir(), "data")
			cfg.HTTPAddr, cfg.HTTPSAddr, cfg.MQTTAddr, cfg.MQTTSAddr, cfg.WSAddr = "127.0.0.1:0", "", "127.0.0.1:0", "", ""
			cfg.SQLiteSynchronous = "NORMAL"
			tt.edit(&cfg)
			a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				a.Shutdown(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %s", err, tt.want)
			}
		})
	}
}
