// Package serverproc runs a corral server as its own process for the
// benchmarks, so that the load generator's garbage collection and
// scheduling are neither charged to corral nor hidden from it, and so that
// two builds (say, before and after a change) can be measured by the same
// load generator in one sitting.
package serverproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
)

// Proc is a running server process: corral, or the bare engine.
type Proc struct {
	Cmd    *exec.Cmd
	Addrs  map[string]string // listener name from the log ("http", "mqtt-tcp", …) -> address
	Server *apptest.Server   // API client with the first admin key (nil unless corral)
}

// Build builds ../../cmd/corral (relative to the benchmark's package
// directory) into a temporary directory and returns the binary's path.
func Build(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "corral")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/corral").CombinedOutput(); err != nil {
		tb.Fatalf("building corral: %v %s", err, out)
	}
	return bin
}

// Start runs `bin serve` in a fresh data directory on free loopback ports
// with only the HTTP and MQTT TCP listeners on (unless extra flags say
// otherwise), waits until both listen, and stops the process when tb ends.
func Start(tb testing.TB, bin string, extra ...string) *Proc {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "data")
	args := append([]string{"serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--mqtts-addr", "", "--ws-addr", "", "--https-addr", "", "--api-rate-limit", "0", "--log-level", "info"}, extra...)
	p := Exec(tb, bin, args...)
	key, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		tb.Fatalf("reading the admin key: %v", err)
	}
	p.Server = apptest.Remote(tb, "http://"+p.Addrs["http"], strings.TrimSpace(string(key)))
	return p
}

// Exec runs bin with args, waits until it logs (JSON lines on stderr,
// msg "listening", as corral does) its "http" and "mqtt-tcp" listeners,
// and stops the process when tb ends. With CORRAL_BENCH_SERVER_STDERR set
// in the environment, the process's stderr is copied to that file (with
// GODEBUG=gctrace=1, say); with CORRAL_BENCH_SERVER_GOMAXPROCS, the
// process runs with that GOMAXPROCS, and CORRAL_BENCH_SERVER_ENV
// (space-separated NAME=value pairs: "GOGC=200 GODEBUG=gctrace=1") is
// added to its environment. Server is left nil: bin need not be
// corral (bench/internal/engineproc runs the bare engine this way).
func Exec(tb testing.TB, bin string, args ...string) *Proc {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	if n := os.Getenv("CORRAL_BENCH_SERVER_GOMAXPROCS"); n != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+n)
	}
	cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("CORRAL_BENCH_SERVER_ENV"))...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", bin, err)
	}
	p := &Proc{Cmd: cmd}
	tb.Cleanup(p.Stop)
	addrs := map[string]string{}
	found := make(chan error, 1)
	var copyTo *os.File
	if path := os.Getenv("CORRAL_BENCH_SERVER_STDERR"); path != "" {
		if copyTo, err = os.Create(path); err != nil {
			tb.Fatal(err)
		}
	}
	go func() {
		if copyTo != nil {
			defer copyTo.Close()
		}
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if copyTo != nil {
				copyTo.Write(append(sc.Bytes(), '\n'))
			}
			var m map[string]any
			if !sent && json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				addrs[m["listener"].(string)] = m["addr"].(string)
				if addrs["http"] != "" && addrs["mqtt-tcp"] != "" {
					sent = true
					found <- nil
				}
			}
		}
		if !sent {
			found <- fmt.Errorf("%s exited before listening", bin)
		}
	}()
	select {
	case err := <-found:
		if err != nil {
			tb.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		tb.Fatalf("%s did not start listening within 60 s", bin)
	}
	p.Addrs = addrs
	return p
}

// Stop kills the process and waits for it; it is done when the test ends
// anyway, and a second call does nothing. When the server was asked for a
// CPU profile (CORRAL_CPU_PROFILE in the environment), it is first asked to
// shut down (SIGTERM), so that the profile is written, and killed only if
// it has not exited within 60 s (shutting 10,000 sessions down takes more
// than 10 s on a busy machine).
func (p *Proc) Stop() {
	if p.Cmd.ProcessState != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		p.Cmd.Wait()
		close(done)
	}()
	if os.Getenv("CORRAL_CPU_PROFILE") != "" && p.Cmd.Process.Signal(syscall.SIGTERM) == nil {
		select {
		case <-done:
			return
		case <-time.After(60 * time.Second):
		}
	}
	p.Cmd.Process.Kill()
	<-done
}

// RSS is the process's resident set size in bytes, from /proc/PID/status.
func (p *Proc) RSS(tb testing.TB) int64 {
	tb.Helper()
	return RSSOf(tb, p.Cmd.Process.Pid)
}

// RSSOf is the resident set size in bytes of any process (Mosquitto's,
// say), from /proc/PID/status.
func RSSOf(tb testing.TB, pid int) int64 {
	tb.Helper()
	return statusKB(tb, pid, "VmRSS:")
}

// statusKB reads one "Name: N kB" line of /proc/PID/status, in bytes.
func statusKB(tb testing.TB, pid int, name string) int64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == name && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb * 1024
		}
	}
	tb.Fatalf("no %s in /proc status", name)
	return 0
}

// Metrics scrapes the server's /metrics and returns its unlabelled samples
// (go_goroutines, go_memstats_heap_alloc_bytes, …) by name.
func (p *Proc) Metrics(tb testing.TB) map[string]float64 {
	tb.Helper()
	resp, err := http.Get("http://" + p.Addrs["http"] + "/metrics")
	if err != nil {
		tb.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	if resp.StatusCode != 200 || sc.Err() != nil || len(out) == 0 {
		tb.Fatalf("scraping /metrics: status %d, %v", resp.StatusCode, sc.Err())
	}
	return out
}

// Memory is what a server process holds, read from outside it.
type Memory struct {
	RSS, Heap, Stacks, Goroutines float64
	// GoResident is what the Go runtime holds from the OS and has not
	// returned (go_memstats_sys_bytes − go_memstats_heap_released_bytes):
	// RSS beyond it is memory Go does not manage, such as SQLite's page
	// caches in modernc's allocator (an upper bound on Go's share, since
	// part of sys is reserved and never touched).
	GoResident float64
	// FileRSS is the part of RSS backed by files (RssFile in /proc: the
	// binary's text and the database pages SQLite reads through mmap).
	FileRSS float64
	// HeapIdle is heap memory the Go runtime holds with no object in it
	// and has not returned to the OS (heap_idle − heap_released).
	HeapIdle float64
	// HeapInuse is the heap's spans holding objects (heap_inuse_bytes):
	// beyond Heap, the free slots in them.
	HeapInuse float64
}

// Settled waits for the server's second garbage collection from now (the
// first may have begun earlier, and sync.Pool victims outlive one; an
// idle Go process collects at least every two minutes), then for the
// runtime's scavenger to stop returning free heap, and returns its RSS
// (from /proc) and, from the Go collector on /metrics, its heap in live
// and not yet swept objects (go_memstats_heap_alloc_bytes: the live heap
// once that collection's sweep is done), goroutine stacks in use
// (go_memstats_stack_inuse_bytes) and goroutines. A non-empty gcPath (the
// bare engine's "/debug/gc") is requested to run those collections now
// rather than waiting for them.
func (p *Proc) Settled(tb testing.TB, gcPath string) Memory {
	tb.Helper()
	time.Sleep(3 * time.Second) // presence writes and events of the last connections
	gcs := p.Metrics(tb)["go_gc_duration_seconds_count"]
	if gcPath != "" {
		for range 2 {
			resp, err := http.Post("http://"+p.Addrs["http"]+gcPath, "", nil)
			if err != nil {
				tb.Fatalf("asking for a collection: %v", err)
			}
			resp.Body.Close()
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for p.Metrics(tb)["go_gc_duration_seconds_count"] < gcs+2 {
		if time.Now().After(deadline) {
			tb.Fatal("the server did not collect garbage twice in 5 minutes")
		}
		time.Sleep(time.Second)
	}
	time.Sleep(2 * time.Second) // the background sweep frees the dead objects
	// The runtime's scavenger returns the free heap beyond its goal to the
	// OS over the next seconds (a collection just before may have freed a
	// burst's garbage): the reading is taken once that is done, when the
	// free heap held has not fallen by more than 1 % (or 1 MiB) in 5 s.
	m := p.Metrics(tb)
	for idle := heapIdle(m); time.Now().Before(deadline); {
		time.Sleep(5 * time.Second)
		m = p.Metrics(tb)
		now := heapIdle(m)
		if idle-now < max(idle/100, 1<<20) {
			break
		}
		idle = now
	}
	return Memory{RSS: float64(p.RSS(tb)), Heap: m["go_memstats_heap_alloc_bytes"],
		Stacks: m["go_memstats_stack_inuse_bytes"], Goroutines: m["go_goroutines"],
		GoResident: m["go_memstats_sys_bytes"] - m["go_memstats_heap_released_bytes"],
		FileRSS:    float64(statusKB(tb, p.Cmd.Process.Pid, "RssFile:")),
		HeapIdle:   heapIdle(m),
		HeapInuse:  m["go_memstats_heap_inuse_bytes"]}
}

// heapIdle is the free heap the runtime holds and has not returned to the
// OS, from /metrics' samples.
func heapIdle(m map[string]float64) float64 {
	return m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"]
}

// CPUTime is the CPU time (user + system) process pid has used so far.
func CPUTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command (in parentheses, which may hold spaces):
	// state is the 3rd field; utime and stime are the 14th and 15th.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// Quiet waits until process pid has used under a tenth of a core for
// half a second (its background work, such as the presence writes of
// sessions just connected, is done), at most a minute, and returns its CPU
// time then.
func Quiet(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	const step = 250 * time.Millisecond
	deadline := time.Now().Add(time.Minute)
	prev, calm := CPUTime(tb, pid), 0
	for calm < 2 && time.Now().Before(deadline) {
		time.Sleep(step)
		cur := CPUTime(tb, pid)
		if cur-prev < step/10 {
			calm++
		} else {
			calm = 0
		}
		prev = cur
	}
	if calm < 2 {
		tb.Logf("process %d still busy after a minute", pid)
	}
	return prev
}

// GoStats is what corral's Go runtime counted so far, from its /metrics.
type GoStats struct {
	AllocBytes  float64 // bytes allocated on the heap (go_memstats_alloc_bytes_total)
	Mallocs     float64 // heap objects allocated (go_memstats_mallocs_total)
	Collections float64 // completed collections (go_gc_duration_seconds_count)
}

// Sub is what was counted between o and g.
func (g GoStats) Sub(o GoStats) GoStats {
	return GoStats{g.AllocBytes - o.AllocBytes, g.Mallocs - o.Mallocs, g.Collections - o.Collections}
}

// GoStats reads the server's runtime counters from its /metrics.
func (p *Proc) GoStats(tb testing.TB) GoStats {
	tb.Helper()
	resp, err := http.Get("http://" + p.Addrs["http"] + "/metrics")
	if err != nil {
		tb.Fatalf("reading /metrics: %v", err)
	}
	defer resp.Body.Close()
	var g GoStats
	want := map[string]*float64{
		"go_memstats_alloc_bytes_total": &g.AllocBytes,
		"go_memstats_mallocs_total":     &g.Mallocs,
		"go_gc_duration_seconds_count":  &g.Collections,
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if dst := want[name]; ok && dst != nil {
			if v, err := strconv.ParseFloat(value, 64); err == nil {
				*dst = v
				delete(want, name)
			}
		}
	}
	if err := sc.Err(); err != nil || resp.StatusCode != http.StatusOK || len(want) > 0 {
		tb.Fatalf("/metrics: status %d, %v, missing %v", resp.StatusCode, err, want)
	}
	return g
}
