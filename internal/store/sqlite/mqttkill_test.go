package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// killDBEnv names the database a re-executed test binary writes to until
// it is killed (see TestMQTTSurvivesKill).
const killDBEnv = "CORRAL_TEST_MQTT_KILL_DB"

const killWriters = 4

// TestMQTTSurvivesKill is the kill -9 promise of issue 13: a child process
// (this test binary, re-executed) writes messages for persistent
// subscribers from several goroutines, each Write one message to two
// subscribers and, every other time, the ack (deletion) of an earlier
// copy; it prints each Write's seq only after the Write returned, as the
// engine would PUBACK it. The parent kills it with SIGKILL mid-stream,
// reopens the database and finds exactly what the printed Writes left,
// in order, plus at most the one Write per goroutine that was under way.
func TestMQTTSurvivesKill(t *testing.T) {
	if path := os.Getenv(killDBEnv); path != "" {
		killChild(path) // never returns
	}
	// Three kill points: a few groups in, mid-stream, and a longer run.
	for _, after := range []int{30, 400, 3000} {
		t.Run(fmt.Sprintf("killed after %d", after), func(t *testing.T) { killAfter(t, after) })
	}
}

func killAfter(t *testing.T, after int) {
	path := filepath.Join(t.TempDir(), "kill.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMQTTSurvivesKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), killDBEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]uint64{} // writer -> last seq whose Write returned
	lines := bufio.NewScanner(out)
	n := 0
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	killed := false
	for lines.Scan() {
		g, seq, ok := parseAck(lines.Text())
		if !ok {
			continue
		}
		acked[g] = seq
		if n++; n == after {
			// Mid-stream: every writer is between Writes or inside one.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child stopped before it was killed (%d acks): %v", n, err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL", err)
	}

	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string][]uint64{}
	if err := s.MQTT().Load(context.Background(), func(l persist.Loaded) error {
		for _, m := range l.Messages {
			if string(m.Publish) != string(killPublish(l.Session.ClientID, m.Seq)) {
				return fmt.Errorf("%s/%d: bytes differ", l.Session.ClientID, m.Seq)
			}
			got[l.Session.ClientID] = append(got[l.Session.ClientID], m.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for g := range killWriters {
		last := acked[g]
		own := got[fmt.Sprintf("own-%d", g)]
		// Its copies in the shared queue, never acked: 1..k for the k
		// Writes that landed.
		var shared []uint64
		for _, seq := range got["shared"] {
			if int(seq>>32) == g {
				shared = append(shared, seq&(1<<32-1))
			}
		}
		k := uint64(len(shared))
		if k < last || k > last+1 {
			t.Errorf("writer %d: %d Writes stored after %d acknowledged", g, k, last)
		}
		for i, seq := range shared {
			if seq != uint64(i+1) {
				t.Fatalf("writer %d: shared copy %d has seq %d: lost or out of order", g, i, seq)
			}
		}
		if want := killExpected(k); !slices.Equal(own, want) {
			t.Errorf("writer %d: own queue %v after %d Writes, want %v (a batch was split, or an ack lost)", g, own, k, want)
		}
	}
	t.Logf("killed after %d acknowledged writes; stored: %d shared, per writer %v", n, len(got["shared"]), acked)
}

// killAcks says which earlier message Write seq deletes: every odd one,
// two Writes later.
func killAcks(seq uint64) (uint64, bool) { return seq - 2, seq >= 3 && seq%2 == 1 }

// killExpected is a writer's own queue after its first k Writes.
func killExpected(k uint64) []uint64 {
	var out []uint64
	for seq := uint64(1); seq <= k; seq++ {
		if seq%2 == 1 && seq+2 <= k {
			continue
		}
		out = append(out, seq)
	}
	return out
}

func parseAck(line string) (g int, seq uint64, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "acked" {
		return 0, 0, false
	}
	g, err1 := strconv.Atoi(f[1])
	seq, err2 := strconv.ParseUint(f[2], 10, 64)
	return g, seq, err1 == nil && err2 == nil
}

func killPublish(client string, seq uint64) []byte {
	return fmt.Appendf(nil, "\x32\x00\x05topic %s %d", client, seq)
}

// killChild writes until it is killed, printing "acked {writer} {seq}"
// after each Write returns.
func killChild(path string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "kill child:", err)
		os.Exit(3)
	}
	s, err := sqlite.Open(ctx, path, sqlite.Options{}) // synchronous=FULL, as served
	if err != nil {
		fail(err)
	}
	m := s.MQTT()
	for _, id := range []string{"shared", "own-0", "own-1", "own-2", "own-3"} {
		if err := m.PutSession(ctx, persist.Session{ClientID: id, Version: 5, ExpiryInterval: persist.NeverExpires, Created: time.Now()}); err != nil {
			fail(err)
		}
	}
	var mu sync.Mutex // one line at a time on stdout
	var wg sync.WaitGroup
	for g := range killWriters {
		wg.Go(func() {
			own := fmt.Sprintf("own-%d", g)
			for seq := uint64(1); ; seq++ {
				sharedSeq := uint64(g)<<32 | seq
				b := persist.Batch{Enqueue: []persist.Message{
					{ClientID: own, Seq: seq, Publish: killPublish(own, seq)},
					{ClientID: "shared", Seq: sharedSeq, Publish: killPublish("shared", sharedSeq)},
				}}
				if old, ok := killAcks(seq); ok {
					b.Transitions = []persist.Transition{{ClientID: own, Seq: old, State: persist.Done}}
				}
				if err := m.Write(ctx, b); err != nil {
					fail(err)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "acked %d %d\n", g, seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
