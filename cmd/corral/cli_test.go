package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

// run executes the CLI against a live server and returns its output.
func run(t *testing.T, s *apptest.Server, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--server", s.URL, "--data-dir", s.Config.DataDir}, args...))
	err := root.Execute()
	return out.String(), err
}

func must(t *testing.T, s *apptest.Server, args ...string) string {
	t.Helper()
	out, err := run(t, s, args...)
	if err != nil {
		t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestCLIProductAndDeviceLifecycle(t *testing.T) {
	s := apptest.Start(t)
	var p struct{ ProductKey, ProductSecret string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "thermostat", "--json")), &p)
	if p.ProductKey == "" || p.ProductSecret == "" {
		t.Fatal("product create --json lacks the key or secret")
	}
	if out := must(t, s, "product", "list"); !strings.Contains(out, p.ProductKey) || !strings.Contains(out, "thermostat") {
		t.Fatalf("product list: %s", out)
	}
	if out := must(t, s, "device", "create", p.ProductKey, "therm-01", "--attr", "site=north"); !strings.Contains(out, "therm-01") {
		t.Fatalf("device create: %s", out)
	}
	csv := filepath.Join(t.TempDir(), "names.csv")
	os.WriteFile(csv, []byte("deviceName\nbatch-0001\nbatch-0002\nbatch-0003\n"), 0o600)
	triples := filepath.Join(t.TempDir(), "triples.csv")
	must(t, s, "device", "batch", p.ProductKey, "--file", csv, "--out", triples)
	if st, err := os.Stat(triples); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("triples file: %v %v", st, err)
	}
	data, _ := os.ReadFile(triples)
	if strings.Count(string(data), "\n") != 4 {
		t.Fatalf("triples: %s", data)
	}
	out := must(t, s, "device", "list", p.ProductKey, "--prefix", "batch-")
	if strings.Count(out, "batch-") != 3 || strings.Contains(out, "therm-01") {
		t.Fatalf("filtered list: %s", out)
	}
	var listed struct{ Devices []map[string]any }
	json.Unmarshal([]byte(must(t, s, "device", "list", p.ProductKey, "--json")), &listed)
	if len(listed.Devices) != 4 {
		t.Fatalf("--json list: %d", len(listed.Devices))
	}
	for _, d := range listed.Devices {
		if _, ok := d["deviceSecret"]; ok {
			t.Fatal("a listing shows a secret")
		}
	}
	must(t, s, "device", "disable", p.ProductKey, "therm-01")
	if out := must(t, s, "device", "get", p.ProductKey, "therm-01"); !strings.Contains(out, "disabled") {
		t.Fatalf("get after disable: %s", out)
	}
	must(t, s, "device", "enable", p.ProductKey, "therm-01")
	if out := must(t, s, "device", "get", p.ProductKey, "therm-01"); !strings.Contains(out, p.ProductKey+".therm-01") {
		t.Fatalf("get shows no default thing name: %s", out)
	}
	if out := must(t, s, "device", "rename", p.ProductKey, "therm-01", "north-therm"); !strings.Contains(out, "north-therm") {
		t.Fatalf("rename: %s", out)
	}
	if out := must(t, s, "device", "create", p.ProductKey, "therm-02", "--thing-name", "south-therm", "--json"); !strings.Contains(out, `"thingName": "south-therm"`) {
		t.Fatalf("create --thing-name: %s", out)
	}
	if out, err := run(t, s, "device", "rename", p.ProductKey, "therm-02", "north-therm"); err == nil {
		t.Fatalf("a taken thing name: %s", out)
	}
	if out := must(t, s, "device", "secret", p.ProductKey, "therm-01"); len(out) < 32 {
		t.Fatalf("secret: %s", out)
	}
	must(t, s, "device", "delete", p.ProductKey, "therm-01")
	if _, err := run(t, s, "device", "get", p.ProductKey, "therm-01"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("get after delete: %v", err)
	}
	if out := must(t, s, "audit", "--action", "device.secret.read"); !strings.Contains(out, "therm-01") {
		t.Fatalf("audit: %s", out)
	}
	must(t, s, "product", "delete", p.ProductKey)
}

func TestCLIAPIKeyRoles(t *testing.T) {
	s := apptest.Start(t)
	var k struct{ ID string }
	json.Unmarshal([]byte(must(t, s, "apikey", "create", "--name", "ci", "--role", "operator", "--json")), &k)
	if out := must(t, s, "apikey", "set-role", k.ID, "--role", "readonly"); !strings.Contains(out, "readonly") {
		t.Fatalf("set-role: %s", out)
	}
	admin, _, _ := strings.Cut(s.AdminKey, ".")
	if out, err := run(t, s, "apikey", "set-role", admin, "--role", "operator"); err == nil {
		t.Fatalf("demoted the last admin key: %s", out)
	}
}

func TestCLIRejectsAWrongKey(t *testing.T) {
	s := apptest.Start(t)
	_, err := run(t, s, "--api-key", "ckNOPE.wrong", "product", "list")
	if err == nil || !strings.Contains(err.Error(), "unauthenticated") {
		t.Fatalf("err = %v", err)
	}
}

func TestCLIRegisterActsAsADevice(t *testing.T) {
	s := apptest.Start(t)
	var p struct{ ProductKey, ProductSecret string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "meter", "--dynamic-registration", "auto", "--json")), &p)
	out := must(t, s, "register", "--product-key", p.ProductKey, "--product-secret", p.ProductSecret, "--device-name", "SN-0001")
	if !strings.Contains(out, "SN-0001") {
		t.Fatalf("register: %s", out)
	}
	if _, err := run(t, s, "register", "--product-key", p.ProductKey, "--product-secret", "wrong", "--device-name", "SN-0002"); err == nil {
		t.Fatal("a wrong product secret registered")
	}
	if out := must(t, s, "ca", "verify"); !strings.Contains(out, "Registration code:") {
		t.Fatalf("ca verify: %s", out)
	}
	must(t, s, "ca", "list")
	must(t, s, "cert", "list", "--status", "pending")
}
