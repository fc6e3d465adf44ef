package gcpace

import (
	"context"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

func TestWant(t *testing.T) {
	const MB = 1 << 20
	for _, c := range []struct {
		name     string
		rate     float64
		live     uint64
		headroom int64
		base     int
		want     int
	}{
		{"idle", 0, 40 * MB, 1 << 30, 100, 100},
		{"nothing live yet", 30 * MB, 0, 1 << 30, 100, 100},
		{"slow enough for the default", 1 * MB, 40 * MB, 1 << 30, 100, 100},      // 30 MB in 30 s: below 100 %
		{"steady load within the headroom", 10 * MB, 40 * MB, 1 << 30, 100, 750}, // 300 MB in 30 s
		{"heavy load, capped by the headroom", 100 * MB, 40 * MB, 1 << 30, 100, 2560},
		{"a base above what the load asks", 10 * MB, 40 * MB, 1 << 30, 1000, 1000},
		{"a small headroom", 30 * MB, 40 * MB, 20 * MB, 100, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Want(c.rate, c.live, c.headroom, c.base); got != c.want {
				t.Errorf("Want(%g, %d, %d, %d) = %d, want %d", c.rate, c.live, c.headroom, c.base, got, c.want)
			}
		})
	}
}

// fakeRuntime allocates what the test says between ticks.
type fakeRuntime struct {
	alloc, live uint64
	percents    []int
	releases    int
}

func (f *fakeRuntime) Sample() (uint64, uint64) { return f.alloc, f.live }
func (f *fakeRuntime) Percent(p int)            { f.percents = append(f.percents, p) }
func (f *fakeRuntime) Release()                 { f.releases++ }

// pacedFake returns a pacer over a fake runtime with live bytes live and a
// step that allocates n bytes in a tick (250 ms) and ticks.
func pacedFake(live uint64) (f *fakeRuntime, p *Pacer, step func(n uint64)) {
	f = &fakeRuntime{live: live}
	p = New(Options{Headroom: 1 << 30}, f, 100)
	at := time.Unix(0, 0)
	p.prevAt = at
	return f, p, func(n uint64) {
		at = at.Add(250 * time.Millisecond)
		f.alloc += n
		p.tick(at)
	}
}

func TestTickSettlesBeforeMoving(t *testing.T) {
	const MB = 1 << 20
	f, _, step := pacedFake(40 * MB)
	ticks := func(n int, mb uint64) { // n ticks allocating mb MB each
		for range n {
			step(mb * MB)
		}
	}
	wantPercents := func(after string, n int) {
		t.Helper()
		if len(f.percents) != n {
			t.Fatalf("%s: percents %v, want %d changes", after, f.percents, n)
		}
	}
	ticks(3, 8) // a burst of 750 ms is not a load
	ticks(1, 0)
	wantPercents("a 750 ms burst", 0)
	ticks(4, 8)
	wantPercents("a steady 32 MB/s over 40 MB live for 1 s", 1)
	if f.percents[0] <= 100 {
		t.Fatalf("raised to %d, want above 100", f.percents[0])
	}
	ticks(1, 8)
	ticks(8, 0) // a pause of 2 s does not lower it
	ticks(1, 8)
	wantPercents("a pause", 1)
	ticks(12, 0)
	wantPercents("3 s without load", 2)
	if f.percents[1] != 100 || f.releases != 1 {
		t.Fatalf("after the load stopped: percents %v, releases %d; want back to 100, one release", f.percents, f.releases)
	}
}

// TestGrowingStateIsNotPaced: devices connecting by the thousand allocate
// as fast as a fleet's updates, but what they allocate stays.
func TestGrowingStateIsNotPaced(t *testing.T) {
	const MB = 1 << 20
	f, _, step := pacedFake(40 * MB)
	for i := range 200 { // 50 s of connections: live from 40 MB to 200 MB
		if i%2 == 1 { // a collection every other tick finds a sixth of it live
			f.live += 10 * MB / 6
		}
		step(5 * MB)
	}
	if len(f.percents) != 0 {
		t.Fatalf("a growing live heap was paced: %v", f.percents)
	}
	for range 4 {
		step(8 * MB)
	}
	if len(f.percents) != 1 {
		t.Fatalf("once the state stopped growing: percents %v, want one raise", f.percents)
	}
}

func TestRunDoesNothingWhenOff(t *testing.T) {
	for _, c := range []struct {
		name     string
		headroom int64
		base     int
	}{{"no headroom", 0, 100}, {"GOGC=off", 1 << 30, -1}} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeRuntime{live: 1 << 20}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			New(Options{Headroom: c.headroom, Tick: time.Millisecond}, f, c.base).Run(ctx)
			if len(f.percents) != 0 {
				t.Errorf("percents %v, want none", f.percents)
			}
		})
	}
}

// TestRunOnTheGoRuntime drives the real collector: a steady allocation
// raises its percent, the end of the load (and of Run) puts it back.
func TestRunOnTheGoRuntime(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	live := make([][]byte, 0, 64) // something live, so that percents are finite
	for range 64 {
		live = append(live, make([]byte, 64<<10))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		New(Options{Headroom: 256 << 20, Tick: 20 * time.Millisecond}, NewGoRuntime(), 100).Run(ctx)
	})
	stop := make(chan struct{})
	var sink []byte
	var load sync.WaitGroup
	load.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			sink = make([]byte, 32<<10) // ≈ 100s of MB a second
			time.Sleep(50 * time.Microsecond)
		}
	})
	if !waitFor(5*time.Second, func() bool { return Current() > 100 }) {
		t.Fatalf("under a steady allocation the percent stayed %d", Current())
	}
	close(stop)
	load.Wait()
	_ = sink
	if !waitFor(5*time.Second, func() bool { return Current() == 100 }) {
		t.Fatalf("with the load gone the percent stayed %d", Current())
	}
	_ = live
}

func waitFor(d time.Duration, ok func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return false
}

func TestParseMemTotal(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"MemTotal:       24683772 kB\nMemFree:        23435260 kB\n", 24683772 << 10},
		{"MemFree: 1 kB\n", 0},
		{"MemTotal: x kB\n", 0},
		{"MemTotal:\n", 0},
		{"", 0},
	} {
		if got := parseMemTotal(c.in); got != c.want {
			t.Errorf("parseMemTotal(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestDefaultHeadroom(t *testing.T) {
	h := DefaultHeadroom()
	if h <= 0 || h > MaxHeadroom {
		t.Errorf("DefaultHeadroom() = %d, want in (0, %d] on a machine with /proc/meminfo", h, MaxHeadroom)
	}
}
