package conformance_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
)

// TestDurableMosquitto runs the restart cases against a Mosquitto of its
// own (persistence in a temporary directory, a free port), restarted
// gracefully: Mosquitto writes its sessions at shutdown, not at each
// message, so a kill -9 would lose them.
func TestDurableMosquitto(t *testing.T) {
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
			cmd.Process.Signal(syscall.SIGTERM)
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
	tg.Name, tg.Addr = "own mosquitto", addr
	tg.Restart = func(ctx context.Context) error {
		stop()
		return start(ctx)
	}
	conformance.RunDurable(t, tg)
}
