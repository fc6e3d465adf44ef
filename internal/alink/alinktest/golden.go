// Package alinktest holds test helpers for Alink wire payloads: golden
// files that pin the exact bytes corral sends.
package alinktest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files with the payloads the tests produce")

// Golden compares got with testdata/{name}.golden (the exact payload, then
// one newline); -update rewrites the file.
func Golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	want := append(append([]byte{}, got...), '\n')
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", path, want, b)
	}
}
