package serverproc_test

import (
	"testing"

	"github.com/corral-iot/corral/bench/internal/engineproc"
	"github.com/corral-iot/corral/bench/internal/serverproc"
)

// TestExecSettledStop runs the bare engine through Exec (as engineproc
// does), takes a settled reading with forced collections, reads its RSS,
// and stops it twice.
func TestExecSettledStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	p := engineproc.Start(t, engineproc.Build(t))
	if p.Addrs["mqtt-tcp"] == "" || p.Addrs["http"] == "" {
		t.Fatalf("listeners: %v", p.Addrs)
	}
	m := p.Settled(t, engineproc.GCPath)
	if m.RSS <= 0 || m.Heap <= 0 || m.Stacks <= 0 || m.Goroutines < 1 {
		t.Fatalf("settled reading %+v: want every figure positive", m)
	}
	if rss := serverproc.RSSOf(t, p.Cmd.Process.Pid); rss <= 0 {
		t.Fatalf("RSSOf = %d", rss)
	}
	p.Stop()
	p.Stop()
	if p.Cmd.ProcessState == nil {
		t.Fatal("the process was not waited for")
	}
}
