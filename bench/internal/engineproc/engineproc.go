// Package engineproc runs corral's MQTT engine bare (AllowAll hooks, no
// corral: the engined command) as its own process for the benchmarks, as
// bench/internal/serverproc runs corral, so its figures are the engine's
// ceiling measured the same way.
package engineproc

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/corral-iot/corral/bench/internal/serverproc"
)

// GCPath asks the engine process for a garbage collection (for
// serverproc.Proc.Settled).
const GCPath = "/debug/gc"

// Build builds the engined command into a temporary directory and returns
// the binary's path.
func Build(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "engined")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/corral-iot/corral/bench/internal/engineproc/engined").CombinedOutput(); err != nil {
		tb.Fatalf("building engined: %v %s", err, out)
	}
	return bin
}

// Start runs bin on free loopback ports and stops it when tb ends; its
// Addrs are "mqtt-tcp" and "http" (metrics, pprof, GCPath).
func Start(tb testing.TB, bin string) *serverproc.Proc {
	tb.Helper()
	return serverproc.Exec(tb, bin, "-mqtt-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0")
}
