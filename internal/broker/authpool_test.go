package broker

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"
)

// goid is the running goroutine's id, from its stack header.
func goid() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	return string(f[1])
}

// TestAuthPool: calls one after another run on kept goroutines, not a
// new one each; with every kept goroutine busy a call still runs at once;
// stopped, calls still run; the kept goroutines end (TestMain checks for
// leaks).
func TestAuthPool(t *testing.T) {
	p := newAuthPool()
	seen := map[string]bool{}
	for range 50 {
		done := make(chan string)
		p.run(func() { done <- goid() })
		seen[<-done] = true
		time.Sleep(time.Millisecond) // the goroutine is back waiting
	}
	if len(seen) > 25 {
		t.Fatalf("50 calls one after another ran on %d goroutines", len(seen))
	}
	if k := p.kept.Load(); k < 1 || k > authWorkers {
		t.Fatalf("%d goroutines kept, want 1 to %d", k, authWorkers)
	}

	release := make(chan struct{})
	var busy sync.WaitGroup
	for range authWorkers + 1 {
		busy.Add(1)
		ran := make(chan struct{})
		p.run(func() { close(ran); <-release; busy.Done() })
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatal("a call waited for a busy pool")
		}
	}
	close(release)
	busy.Wait()

	p.stop()
	done := make(chan struct{})
	p.run(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a call after stop did not run")
	}
}
