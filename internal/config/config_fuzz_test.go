package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzLoad layers an arbitrary YAML file and one arbitrary environment
// variable over the defaults. A refusal wraps ErrInvalid, names where the
// bad value came from, and never repeats a secret; an accepted
// configuration validates, and written back as YAML loads to itself.
func FuzzLoad(f *testing.F) {
	for _, s := range []struct {
		file    string
		key     uint8
		env     string
		comment string
	}{
		{"data_dir: /from-file\nhttp_addr: \":7000\"\nlog_level: debug\nshutdown_timeout: 3s\n", 1, ":7100", "the layering test"},
		{"mqtt_max_queued: 1048576\nmqtt_max_inflight: 65535\napi_rate_limit: 0.5\ndynreg_plain_http: false\n", 0, "", "limits"},
		{"tls_cert_file: /c.pem\n", 0, "", "cert without key"},
		{"kek: 0000000000000000000000000000000000000000000000000000000000000000\n", 3, "lots", "bad number"},
		{"nope: 1\n", 0, "", "unknown key"},
		{"data_dir: [\n", 0, "", "bad yaml"},
		{"shutdown_timeout: soon\n", 0, "", "bad duration"},
		{"---\n---\n", 5, "8080", "two documents, bad address"},
		{"log_format: \"\\xff\"\n", 0, "", "invalid UTF-8"},
		{"", 7, "1e309", "float overflow"},
	} {
		f.Add([]byte(s.file), s.key, s.env)
	}
	var keys []string
	var def Config = Default()
	for _, fl := range fields(&def) {
		keys = append(keys, fl.key)
	}
	dir := f.TempDir()
	const kek, hook = "kek-secret-do-not-print-0123456789", "hook-secret-do-not-print-0123456789"
	f.Fuzz(func(t *testing.T, file []byte, key uint8, val string) {
		path := filepath.Join(dir, fmt.Sprintf("%d.yaml", os.Getpid()))
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		k := keys[int(key)%len(keys)]
		env := map[string]string{"CORRAL_CONFIG": path, "CORRAL_KEK": kek, "CORRAL_WEBHOOK_SECRET": hook, EnvName(k): val}
		c, err := Load(nil, func(name string) string { return env[name] })
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not wrap ErrInvalid", err)
			}
			msg := err.Error()
			if strings.Contains(msg, kek) || strings.Contains(msg, hook) {
				t.Fatalf("error %q carries a secret", msg)
			}
			named := strings.HasPrefix(msg, "config file ") || strings.HasPrefix(msg, "CORRAL_")
			for _, k := range keys {
				named = named || strings.HasPrefix(msg, k+":")
			}
			if !named {
				t.Fatalf("error %q names no key", msg)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded a configuration that does not validate: %v", err)
		}
		if val != "" && env[EnvName(k)] == val && k != "kek" && k != "webhook_secret" {
			// The environment overrides the file.
			for _, fl := range fields(&c) {
				if fl.key == k && fl.v.Kind().String() == "string" && fl.v.String() != strings.TrimSpace(val) {
					t.Fatalf("%s = %q, the environment said %q", k, fl.v.String(), val)
				}
			}
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("writing back: %v", err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		c2, err := Load(nil, func(name string) string {
			if name == "CORRAL_CONFIG" {
				return path
			}
			return ""
		})
		if err != nil || c2 != c {
			t.Fatalf("written back as\n%s\nloads to %+v, %v\nwant %+v", out, c2, err, c)
		}
	})
}
