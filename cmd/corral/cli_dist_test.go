package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

func TestCLIDistInstancesAndRecords(t *testing.T) {
	s := apptest.Start(t)
	cred := filepath.Join(t.TempDir(), "sg.key")
	os.WriteFile(cred, []byte("k_1.very-secret\n"), 0o600)
	out := must(t, s, "dist", "instance", "add", "sg-1", "--region", "ap-southeast-1", "--mqtts", "sg.example:8883", "--backup-ip", "203.0.113.9",
		"--api-url", "https://sg.example:8443", "--credential-file", cred)
	if !strings.Contains(out, "sg-1") || !strings.Contains(out, "true") || strings.Contains(out, "very-secret") {
		t.Fatalf("add: %s", out)
	}
	if out := must(t, s, "dist", "instance", "list"); !strings.Contains(out, "sg-1") || !strings.Contains(out, "this corral") {
		t.Fatalf("list: %s", out)
	}
	if out := must(t, s, "dist", "instance", "get", "sg-1", "--json"); !strings.Contains(out, `"hasCredential": true`) || strings.Contains(out, "very-secret") {
		t.Fatalf("get: %s", out)
	}
	if out, err := run(t, s, "dist", "instance", "add", "bad", "--region", "ap-southeast-1"); err == nil {
		t.Fatalf("an instance without endpoints: %s", out)
	}
	p := s.CreateProduct("meters", nil)
	if out := must(t, s, "dist", "record", "set", p.ProductKey, "meter-0001", "--instance", "sg-1"); !strings.Contains(out, "sg-1 (ap-southeast-1)") {
		t.Fatalf("record set: %s", out)
	}
	if out := must(t, s, "dist", "record", "get", p.ProductKey, "meter-0001"); !strings.Contains(out, "sg-1") {
		t.Fatalf("record get: %s", out)
	}
	if out, err := run(t, s, "dist", "instance", "delete", "sg-1"); err == nil {
		t.Fatalf("deleting a named instance: %s", out)
	}
	must(t, s, "dist", "record", "delete", p.ProductKey, "meter-0001")
	must(t, s, "dist", "instance", "delete", "sg-1")
}
