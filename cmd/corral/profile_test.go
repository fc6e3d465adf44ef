package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartCPUProfile: the cpu_profile setting writes a profile once
// stopped, and a path that cannot be created is an error before the
// server starts.
func TestStartCPUProfile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		path    string
		wantErr bool
	}{
		{"writable", filepath.Join(dir, "cpu.prof"), false},
		{"missing directory", filepath.Join(dir, "no", "such", "cpu.prof"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stop, err := startCPUProfile(c.path)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			stop()
			if fi, err := os.Stat(c.path); err != nil || fi.Size() == 0 {
				t.Fatalf("profile not written: %v", err)
			}
		})
	}
}
