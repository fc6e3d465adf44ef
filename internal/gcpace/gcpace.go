// Package gcpace spaces the garbage collector's cycles out while the
// server allocates steadily, within a memory headroom, and gives the
// collector back its own setting (GOGC, 100 by default) and the memory
// back to the system when the load stops.
//
// Each cycle marks the whole live heap (for corral, mostly the state of
// every connected device) whatever garbage it frees, and for its length
// takes a quarter of the processors and slows the rest (write barriers,
// assists): on a small machine a burst of late answers. With the default
// setting a server holding 10,000 devices' state and answering 10,000
// shadow updates a second collects every 1.4 s; within a headroom of
// 1 GiB it collects about every 30 s instead, for the same work a cycle.
package gcpace

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// owner is held by the pacer that runs: the collector is the process's,
// so one pacer at a time sets it (others, in tests, do nothing).
var owner sync.Mutex

// Every is the interval between collections aimed at under load.
const Every = 30 * time.Second

// Options configure a Pacer.
type Options struct {
	// Headroom is the most heap the collector lets grow above the live
	// heap before it collects (bytes); 0: the pacer does nothing.
	Headroom int64
	// Tick is how often the allocation rate is sampled (default 250 ms).
	Tick time.Duration
}

// Runtime is what the pacer reads from and sets in the Go runtime;
// GoRuntime is the real one.
type Runtime interface {
	// Sample returns the bytes allocated on the heap since the process
	// started and the live heap the last collection found.
	Sample() (allocated, live uint64)
	// Percent sets the collector's GOGC percent.
	Percent(p int)
	// Release collects and returns free memory to the system at once.
	Release()
}

// Pacer raises the collector's percent under a steady allocation load and
// lowers it again as the load goes.
type Pacer struct {
	o    Options
	rt   Runtime
	base int // the percent set when the pacer started: what it returns to

	// What the ticks so far decided from.
	prevAlloc uint64
	prevAt    time.Time
	percent   int    // set now
	busy      int    // consecutive ticks that wanted more than percent, the live heap steady
	busyAlloc uint64 // the bytes allocated at the first of them
	busyLive  uint64 // and the live heap
	calm      int    // consecutive ticks that wanted less than half of percent

	raiseTicks, lowerTicks int // RaiseAfter and LowerAfter in ticks
}

// New returns a pacer over rt that returns to base; base is the percent
// GOGC (or debug.SetGCPercent) set, which the pacer never goes below.
func New(o Options, rt Runtime, base int) *Pacer {
	if o.Tick <= 0 {
		o.Tick = 250 * time.Millisecond
	}
	ticks := func(d time.Duration) int { return max(1, int((d+o.Tick-1)/o.Tick)) }
	return &Pacer{o: o, rt: rt, base: base, percent: base, raiseTicks: ticks(RaiseAfter), lowerTicks: ticks(LowerAfter)}
}

// A change of percent is made once wanted for this long in a row: a burst
// shorter than RaiseAfter does not raise it (a load that lasts gets its
// first seconds paced: a benchmark's, say); a pause in the load shorter
// than LowerAfter does not lower it.
const (
	RaiseAfter = time.Second
	LowerAfter = 3 * time.Second
)

// steadyLive is how much the live heap may grow over the ticks that raise
// the percent, as a share of itself and of what was allocated meanwhile:
// a load that builds up state (devices connecting by the thousand, each
// leaving its session behind) is not paced, only one that makes garbage
// (a fleet's updates).
const steadyLive = 0.1

// grows tells whether the live heap grew by more than steadyLive since
// the first tick of the streak.
func (p *Pacer) grows(alloc, live uint64) bool {
	if live <= p.busyLive {
		return false
	}
	d := float64(live - p.busyLive)
	return d > steadyLive*float64(p.busyLive) || d > steadyLive*float64(alloc-p.busyAlloc)
}

// Run samples every tick until ctx ends, then returns the collector to
// its base percent. It does nothing with no headroom or a collector
// switched off (GOGC=off).
func (p *Pacer) Run(ctx context.Context) {
	if p.o.Headroom <= 0 || p.base < 0 || !owner.TryLock() {
		return
	}
	defer owner.Unlock()
	t := time.NewTicker(p.o.Tick)
	defer t.Stop()
	p.prevAlloc, _ = p.rt.Sample()
	p.prevAt = time.Now()
	for {
		select {
		case <-ctx.Done():
			if p.percent != p.base {
				p.rt.Percent(p.base)
			}
			return
		case now := <-t.C:
			p.tick(now)
		}
	}
}

// tick samples once and moves the percent when the load has asked for it
// long enough.
func (p *Pacer) tick(now time.Time) {
	alloc, live := p.rt.Sample()
	dt := now.Sub(p.prevAt).Seconds()
	if dt <= 0 || alloc < p.prevAlloc {
		return
	}
	rate := float64(alloc-p.prevAlloc) / dt
	p.prevAlloc, p.prevAt = alloc, now
	want := Want(rate, live, p.o.Headroom, p.base)
	switch {
	case want > p.percent:
		p.calm = 0
		if p.busy == 0 || p.grows(alloc, live) {
			p.busy, p.busyAlloc, p.busyLive = 0, alloc, live // the state grows: start over
		}
		if p.busy++; p.busy >= p.raiseTicks {
			p.set(want)
		}
	case want < p.percent/2 || (want == p.base && p.percent != p.base):
		p.busy = 0
		if p.calm++; p.calm >= p.lowerTicks {
			back := want == p.base
			p.set(want)
			if back {
				p.rt.Release() // the headroom given back now, not at the scavenger's pace
			}
		}
	default:
		p.busy, p.calm = 0, 0
	}
}

func (p *Pacer) set(percent int) {
	p.busy, p.calm = 0, 0
	if percent != p.percent {
		p.percent = percent
		p.rt.Percent(percent)
	}
}

// Want is the percent that has a heap growing rate bytes a second above
// live collected about every Every, within headroom bytes above live, and
// never below base: base itself when base would already collect less
// often than that.
func Want(rate float64, live uint64, headroom int64, base int) int {
	if live == 0 || rate <= 0 {
		return base
	}
	grow := min(rate*Every.Seconds(), float64(headroom))
	pct := int(grow * 100 / float64(live))
	if pct <= base {
		return base
	}
	return pct
}

// GoRuntime is the process's own runtime.
type GoRuntime struct {
	samples []metrics.Sample
}

// NewGoRuntime returns the process's runtime as a Runtime.
func NewGoRuntime() *GoRuntime {
	return &GoRuntime{samples: []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}}
}

// Sample implements Runtime.
func (g *GoRuntime) Sample() (allocated, live uint64) {
	metrics.Read(g.samples)
	return g.samples[0].Value.Uint64(), g.samples[1].Value.Uint64()
}

// Percent implements Runtime.
func (g *GoRuntime) Percent(p int) { debug.SetGCPercent(p) }

// Release implements Runtime.
func (g *GoRuntime) Release() { debug.FreeOSMemory() }

// Current is the collector's percent now (GOGC; -1 when off).
func Current() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// MaxHeadroom caps DefaultHeadroom.
const MaxHeadroom = 1 << 30

// DefaultHeadroom is a quarter of the memory the process may use (its
// cgroup's limit, else the machine's), at most MaxHeadroom; 0 when
// neither can be read.
func DefaultHeadroom() int64 {
	mem := memoryLimit()
	if mem <= 0 {
		return 0
	}
	return min(mem/4, MaxHeadroom)
}

// memoryLimit is the cgroup (v2, then v1) memory limit, else MemTotal.
func memoryLimit() int64 {
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		total = parseMemTotal(string(b))
	}
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			return n // "max" or v1's huge "unlimited" leave the machine's
		}
	}
	return total
}

// parseMemTotal reads /proc/meminfo's "MemTotal: N kB" in bytes (0 if absent).
func parseMemTotal(meminfo string) int64 {
	for line := range strings.Lines(meminfo) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || n < 0 {
				return 0
			}
			return n << 10
		}
	}
	return 0
}
