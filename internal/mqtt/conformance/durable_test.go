package conformance_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
)

// TestDurableMosquitto runs the restart cases against a Mosquitto of its
// own (persistence in a temporary directory, a free port), restarted
// gracefully: Mosquitto writes its sessions at shutdown, not at each
// message, so a kill -9 loses them, which TestDurableCasesCanFail uses.
func TestDurableMosquitto(t *testing.T) {
	runOwnMosquitto(t, syscall.SIGTERM)
}

// TestDurableKilled is run by TestDurableCasesCanFail in a child process:
// the restart cases against a Mosquitto restarted by kill -9.
func TestDurableKilled(t *testing.T) {
	if os.Getenv("CONFORMANCE_DURABLE_KILL") == "" {
		t.Skip("run by TestDurableCasesCanFail")
	}
	runOwnMosquitto(t, syscall.SIGKILL)
}

// TestDurableCasesCanFail: every restart case fails against a broker that
// loses its state in the restart.
func TestDurableCasesCanFail(t *testing.T) {
	if _, err := exec.LookPath("mosquitto"); err != nil || testing.Short() {
		t.Skip("no mosquitto binary, or -short")
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableKilled$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "CONFORMANCE_DURABLE_KILL=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the restart cases passed against a broker killed with -9:\n%s", out)
	}
	for _, name := range conformance.CaseNames() {
		if strings.Contains(name, "/durable/") && !strings.Contains(string(out), "--- FAIL: TestDurableKilled/"+name+" ") {
			t.Errorf("%s did not fail against a broker killed with -9:\n%s", name, out)
		}
	}
}

// runOwnMosquitto starts a Mosquitto of the test's own and runs the
// restart cases, restarting it by sig.
func runOwnMosquitto(t *testing.T, sig syscall.Signal) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no mosquitto binary, which .ci/run uses: %v", err)
		}
		t.Skipf("no mosquitto binary: %v", err)
	}
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nlog_dest file %s/mosquitto.log\n", port, dir, dir)
	if os.Getuid() == 0 {
		cfg += "user root\n" // keep access to the temporary directory
	}
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var cmd *exec.Cmd
	start := func(ctx context.Context) error {
		cmd = exec.Command(bin, "-c", conf)
		if err := cmd.Start(); err != nil {
			return err
		}
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("mosquitto not listening on %s: %w", addr, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	stop := func() {
		if cmd != nil {
			cmd.Process.Signal(sig)
			cmd.Wait()
			cmd = nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	tg := mosquitto()
	tg.Name, tg.Addr = "own mosquitto restarted by "+sig.String(), addr
	tg.Restart = func(ctx context.Context) error {
		stop()
		return start(ctx)
	}
	conformance.RunDurable(t, tg)
}
