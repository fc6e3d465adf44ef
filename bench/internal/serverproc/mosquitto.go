package serverproc

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Mosquitto runs the machine's Mosquitto binary (the one serving
// 127.0.0.1:1883) as a process of its own on a free loopback port,
// anonymous and without persistence, and returns it with its address: a
// fresh process a run, since a process that once held connections keeps
// the memory they freed, and other helpers' clients come and go on the
// shared one. It is killed when tb ends; tb is skipped without the binary.
func Mosquitto(tb testing.TB) (*exec.Cmd, string) {
	tb.Helper()
	return MosquittoConf(tb, "allow_anonymous true\n")
}

// MosquittoConf is Mosquitto with auth (its authentication lines, say:
// "allow_anonymous false\npassword_file …\n") after the listener.
func MosquittoConf(tb testing.TB, auth string) (*exec.Cmd, string) {
	tb.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		tb.Skip("no mosquitto binary")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(tb.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\n"+auth+"persistence false\nlog_dest none\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting mosquitto: %v", err)
	}
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd, addr
		}
		if time.Now().After(deadline) {
			tb.Fatal("the private mosquitto did not listen within 10 s")
		}
	}
}
