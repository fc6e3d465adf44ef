package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRSS: the figure this command prints is read from /proc.
func TestRSS(t *testing.T) {
	if kb := rssKB(); kb <= 0 {
		t.Fatalf("rssKB() = %d", kb)
	}
}
