package broker

import "sync/atomic"

// authPool runs CONNECT authentications on a few goroutines kept for
// them. Authentication reads the store, whose SQLite code grows goroutine
// stacks deep; on a new goroutine per CONNECT that growth (several stack
// copies) came back every time. A kept goroutine grows once (and again
// after the GC shrank it while idle). When none is idle, a new goroutine
// runs the call, so a slow authentication never makes another wait; it
// stays as a kept one if fewer than authWorkers are.
type authPool struct {
	jobs chan func() // unbuffered: a send succeeds only to an idle kept goroutine
	quit chan struct{}
	kept atomic.Int32
}

// authWorkers is how many goroutines authPool keeps at most.
const authWorkers = 8

func newAuthPool() *authPool {
	return &authPool{jobs: make(chan func()), quit: make(chan struct{})}
}

// stop ends the kept goroutines once idle; later calls run each on its
// own goroutine.
func (p *authPool) stop() { close(p.quit) }

// run runs f on an idle kept goroutine, else on a new one.
func (p *authPool) run(f func()) {
	select {
	case p.jobs <- f:
	default:
		go p.work(f)
	}
}

// work runs f, then waits for more as a kept goroutine if there is room.
func (p *authPool) work(f func()) {
	f()
	if p.kept.Add(1) > authWorkers {
		p.kept.Add(-1)
		return
	}
	defer p.kept.Add(-1)
	for {
		select {
		case f := <-p.jobs:
			f()
		case <-p.quit:
			return
		}
	}
}
