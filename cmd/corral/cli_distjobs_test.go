package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

func TestCLIDistJobs(t *testing.T) {
	sg := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	file := filepath.Join(t.TempDir(), "instances.yaml")
	yaml := fmt.Sprintf("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n",
		sg.App.Broker().Addr("tcp"), sg.URL, sg.AdminKey)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region, c.DistributionFile = "centre", "cn-shanghai", file })
	p := s.CreateProduct("meters", nil)
	for i := range 5 {
		s.CreateDevice(p.ProductKey, fmt.Sprintf("meter-%04d", i))
	}
	csv := filepath.Join(t.TempDir(), "devices.csv")
	os.WriteFile(csv, []byte("deviceName\nmeter-0000\nmeter-0001\nmeter-0002\n"), 0o600)
	if out := must(t, s, "dist", "job", "create", p.ProductKey, "--csv", csv, "--instance", "sg-1", "--dry-run"); strings.Count(out, "sg-1") != 3 {
		t.Fatalf("dry run: %s", out)
	}
	if out := must(t, s, "dist", "job", "list"); strings.Contains(out, "job-") {
		t.Fatalf("a dry run created a job: %s", out)
	}
	out := must(t, s, "dist", "job", "create", p.ProductKey, "--csv", csv, "--instance", "sg-1", "--wait")
	if !strings.Contains(out, "100%") || !strings.Contains(out, "done") || !strings.Contains(out, "[####") {
		t.Fatalf("create --wait: %s", out)
	}
	id := out[strings.Index(out, "job-"):]
	id = id[:strings.IndexAny(id, " \t")]
	if out := must(t, s, "dist", "job", "details", id); strings.Count(out, "200") != 3 {
		t.Fatalf("details: %s", out)
	}
	if out := must(t, s, "dist", "job", "get", id, "--json"); !strings.Contains(out, `"moved": 3`) {
		t.Fatalf("get: %s", out)
	}
	if out, err := run(t, s, "dist", "job", "abort", id); err == nil {
		t.Fatalf("abort of a finished job: %s", out)
	}
	if out, err := run(t, s, "dist", "job", "create", p.ProductKey, "--devices", "meter-0003,ghost", "--instance", "sg-1"); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("an unregistered device: %v %s", err, out)
	}
	must(t, s, "dist", "job", "delete", id)
	if out := must(t, s, "dist", "job", "list"); strings.Contains(out, id) {
		t.Fatalf("deleted job listed: %s", out)
	}
}

func TestCLIDistGrant(t *testing.T) {
	s := apptest.Start(t)
	out := must(t, s, "dist", "grant", "code")
	if !strings.Contains(out, "AUTHCODE") || !strings.Contains(out, "default") {
		t.Fatalf("grant code: %s", out)
	}
	if out := must(t, s, "dist", "grant", "list", "--json"); !strings.Contains(out, `"grants": []`) {
		t.Fatalf("grant list: %s", out)
	}
	if out, err := run(t, s, "dist", "grant", "revoke", strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "404") && !strings.Contains(err.Error(), "not found") {
		t.Fatalf("revoking an unknown grant: %v %s", err, out)
	}
}
