package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds cmd/corral once for the tests of this package.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "corral")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/corral")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building corral: %v", err)
	}
	return bin
}

type proc struct {
	cmd     *exec.Cmd
	url     string
	logs    *syncBuffer
	scanned chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteString(x string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(x)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBinary runs `corral serve` on a free port and waits for its
// "listening" log line.
func startBinary(t *testing.T, bin, dataDir string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &proc{cmd: cmd, logs: &syncBuffer{}}
	found := make(chan string, 1)
	scanned := make(chan struct{})
	p.scanned = scanned
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.WriteString(line + "\n")
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" && m["listener"] == "http" {
				found <- m["addr"].(string)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case addr := <-found:
		p.url = "http://" + addr
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return p
}

func call(t *testing.T, key, method, url string, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestKill9KeepsAcknowledgedDevices creates devices, kills the server with
// SIGKILL right after the 2xx answers, restarts it and finds them all.
func TestKill9KeepsAcknowledgedDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "data")
	p := startBinary(t, bin, dir)
	keyData, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(keyData))
	if strings.Contains(p.logs.String(), key) || strings.Contains(p.logs.String(), strings.Split(key, ".")[1]) {
		t.Fatal("the admin key appears in the logs")
	}
	st, body := call(t, key, "POST", p.url+"/v1/products", `{"name":"durable"}`)
	if st != 201 {
		t.Fatalf("%d %s", st, body)
	}
	var prod struct{ ProductKey string }
	json.Unmarshal(body, &prod)
	secrets := map[string]string{}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("dur-%03d", i)
		st, body := call(t, key, "POST", p.url+"/v1/products/"+prod.ProductKey+"/devices", `{"deviceName":"`+name+`"}`)
		if st != 201 {
			t.Fatalf("%d %s", st, body)
		}
		var d struct{ DeviceSecret string }
		json.Unmarshal(body, &d)
		secrets[name] = d.DeviceSecret
	}
	st, _ = call(t, key, "POST", p.url+"/v1/products/"+prod.ProductKey+"/devices:batch", `{"count":500}`)
	if st != 201 {
		t.Fatal(st)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()

	p2 := startBinary(t, bin, dir)
	for name, secret := range secrets {
		st, body := call(t, key, "GET", p2.url+"/v1/products/"+prod.ProductKey+"/devices/"+name+"/secret", "")
		if st != 200 || !strings.Contains(string(body), secret) {
			t.Fatalf("after kill -9, %s: %d %s", name, st, body)
		}
	}
	st, body = call(t, key, "GET", p2.url+"/v1/products/"+prod.ProductKey+"/devices?limit=1000", "")
	var list struct{ Devices []any }
	json.Unmarshal(body, &list)
	if st != 200 || len(list.Devices) != 520 {
		t.Fatalf("after kill -9: %d devices", len(list.Devices))
	}
}

// TestGracefulShutdown sends SIGTERM and expects a clean exit.
func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	p := startBinary(t, bin, filepath.Join(t.TempDir(), "data"))
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		<-p.scanned
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if !strings.Contains(p.logs.String(), `"stopped"`) {
		t.Fatalf("no stop log:\n%s", p.logs)
	}
}
