package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

func TestShadowCLI(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	s.CreateDevice(p.ProductKey, "therm-01")
	pk := p.ProductKey

	out := must(t, s, "shadow", "update", pk, "therm-01", "--desired", `{"target":21.5}`, "--client-token", "c1")
	if !strings.Contains(out, `"target": 21.5`) || !strings.Contains(out, `"version": 1`) || !strings.Contains(out, `"clientToken": "c1"`) {
		t.Fatalf("update: %s", out)
	}
	must(t, s, "shadow", "update", pk, "therm-01", "--reported", `{"target":20}`, "--version", "1")
	if _, err := run(t, s, "shadow", "update", pk, "therm-01", "--reported", `{"target":20}`, "--version", "1"); err == nil || !strings.Contains(err.Error(), "Version conflict") {
		t.Fatalf("stale version: %v", err)
	}
	var doc struct {
		State struct {
			Delta map[string]any `json:"delta"`
		} `json:"state"`
		Version int64 `json:"version"`
	}
	json.Unmarshal([]byte(must(t, s, "shadow", "get", pk, "therm-01")), &doc)
	if doc.Version != 2 || doc.State.Delta["target"] != 21.5 {
		t.Fatalf("get: %+v", doc)
	}
	if out := must(t, s, "shadow", "get", pk, "therm-01", "--since", "1"); !strings.Contains(out, `"fromVersion": 1`) {
		t.Fatalf("get --since: %s", out)
	}
	must(t, s, "shadow", "update", pk, "therm-01", "--name", "config", "--reported", `{"mode":"eco"}`)
	if out := must(t, s, "shadow", "list", pk, "therm-01"); !strings.Contains(out, "config") {
		t.Fatalf("list: %s", out)
	}
	if out := must(t, s, "shadow", "history", pk, "therm-01"); strings.Count(out, "\n") != 3 {
		t.Fatalf("history: %s", out)
	}
	if out := must(t, s, "shadow", "history", pk, "therm-01", "--name", "config"); !strings.Contains(out, "eco") {
		t.Fatalf("named history: %s", out)
	}
	if out := must(t, s, "shadow", "settings", pk, "--history", "3", "--presence=false"); !strings.Contains(out, "false") || !strings.Contains(out, "\t3") && !strings.Contains(out, " 3") {
		t.Fatalf("settings: %s", out)
	}
	if out := must(t, s, "shadow", "delete", pk, "therm-01", "--name", "config"); !strings.Contains(out, "version 1") {
		t.Fatalf("delete: %s", out)
	}
	if _, err := run(t, s, "shadow", "get", pk, "therm-01", "--name", "config"); err == nil || !strings.Contains(err.Error(), "No shadow exists with name: config") {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := run(t, s, "shadow", "update", pk, "therm-01", "--desired", `{bad`); err == nil {
		t.Fatal("bad JSON accepted")
	}
}
