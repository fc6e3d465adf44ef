package app_test

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtttest"
)

// startFresh builds the binary and starts it on a new data directory,
// returning the binary, the directory, the process and the admin key.
func startFresh(t *testing.T) (bin, dir string, p *proc, key string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin = buildBinary(t)
	dir = filepath.Join(t.TempDir(), "data")
	p = startBinary(t, bin, dir)
	keyData, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	return bin, dir, p, strings.TrimSpace(string(keyData))
}

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
	// listeners maps listener names from the logs to bound addresses.
	lmu       sync.Mutex
	listeners map[string]string
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
	p.listeners = map[string]string{}
	scanned := make(chan struct{})
	p.scanned = scanned
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.WriteString(line + "\n")
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" {
				p.lmu.Lock()
				p.listeners[m["listener"].(string)] = m["addr"].(string)
				p.lmu.Unlock()
				if m["listener"] == "http" {
					found <- m["addr"].(string)
				}
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

// What the kill -9 tests prove, and what they do not: SIGKILL ends the
// process without a chance to flush anything of its own, so they show that
// every acknowledged write had reached SQLite's write-ahead log before the
// answer went out (a process crash loses nothing). They cannot show that
// the log reached the disk: the kernel's page cache survives a process
// kill, so synchronous=OFF would pass them too. Durability across power
// loss rests on synchronous=FULL (an fsync of the WAL per commit group),
// which requireDurablePragmas checks is what SQLite actually runs with,
// as read back from the database by the server at start-up.

// requireDurablePragmas fails unless the server logged that SQLite runs in
// WAL mode with synchronous=FULL.
func requireDurablePragmas(t *testing.T, p *proc) {
	t.Helper()
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "store opened" {
			continue
		}
		if m["synchronous"] != "FULL" || m["journal_mode"] != "wal" {
			t.Fatalf("store runs with synchronous=%v journal_mode=%v, want FULL and wal", m["synchronous"], m["journal_mode"])
		}
		return
	}
	t.Fatalf("no \"store opened\" line with the effective pragmas in the log:\n%s", p.logs)
}

// TestKill9KeepsAcknowledgedDevices creates devices, kills the server with
// SIGKILL right after the 2xx answers, restarts it and finds them all.
func TestKill9KeepsAcknowledgedDevices(t *testing.T) {
	bin, dir, p, key := startFresh(t)
	requireDurablePragmas(t, p)
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
	// Read stderr to its end (the process closing it) before Wait, which
	// would close the pipe under the reader.
	select {
	case <-p.scanned:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs)
	}
	if !strings.Contains(p.logs.String(), `"stopped"`) {
		t.Fatalf("no stop log:\n%s", p.logs)
	}
}

// TestKill9DuringRegistrationBurst registers devices from 8 goroutines,
// kills the server with SIGKILL mid-burst, restarts it, and checks that
// every device that received a secret connects with it.
func TestKill9DuringRegistrationBurst(t *testing.T) {
	bin, dir, p, key := startFresh(t)
	requireDurablePragmas(t, p)
	st, body := call(t, key, "POST", p.url+"/v1/products", `{"name":"burst","dynamicRegistration":"auto"}`)
	if st != 201 {
		t.Fatalf("%d %s", st, body)
	}
	var prod struct{ ProductKey, ProductSecret string }
	json.Unmarshal(body, &prod)

	// Dynamic registration answers on the HTTPS listener only.
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	httpsClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	p.lmu.Lock()
	regURL := "https://" + p.listeners["https"] + "/auth/register/device"
	p.lmu.Unlock()

	var mu sync.Mutex
	secrets := map[string]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				dn := fmt.Sprintf("burst-%d-%05d", w, i)
				m := hmac.New(sha256.New, []byte(prod.ProductSecret))
				m.Write([]byte("deviceName" + dn + "productKey" + prod.ProductKey + "random" + "r"))
				form := "productKey=" + prod.ProductKey + "&deviceName=" + dn + "&random=r&signMethod=hmacsha256&sign=" + hex.EncodeToString(m.Sum(nil))
				resp, err := httpsClient.Post(regURL, "application/x-www-form-urlencoded", strings.NewReader(form))
				if err != nil {
					return // the server died
				}
				var r struct {
					Code int
					Data struct{ DeviceSecret string }
				}
				json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if r.Code == 200 {
					mu.Lock()
					secrets[dn] = r.Data.DeviceSecret
					mu.Unlock()
				}
			}
		}(w)
	}
	// Kill once 50 secrets are out, with eight requests still in flight.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(secrets)
		mu.Unlock()
		if n >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d registrations answered in 30 s", n)
		}
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	close(stop)
	wg.Wait()

	p2 := startBinary(t, bin, dir)
	mqttAddr := p2.listeners["mqtt-tcp"]
	for dn, secret := range secrets {
		if err := mqttConnect(mqttAddr, prod.ProductKey, dn, secret); err != nil {
			t.Fatalf("%s received a secret before the kill but cannot connect after restart: %v", dn, err)
		}
	}
	// No device twice: the listing holds each name once, and at least all acknowledged ones.
	seen := map[string]bool{}
	cursor := ""
	for {
		st, body := call(t, key, "GET", p2.url+"/v1/products/"+prod.ProductKey+"/devices?limit=1000&cursor="+cursor, "")
		if st != 200 {
			t.Fatal(st)
		}
		var page struct {
			Devices    []struct{ DeviceName string }
			NextCursor string
		}
		json.Unmarshal(body, &page)
		for _, d := range page.Devices {
			if seen[d.DeviceName] {
				t.Fatalf("%s listed twice", d.DeviceName)
			}
			seen[d.DeviceName] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	for dn := range secrets {
		if !seen[dn] {
			t.Fatalf("%s missing after restart", dn)
		}
	}
	t.Logf("%d acknowledged registrations, %d devices after restart", len(secrets), len(seen))
}

// mqttConnect does a raw MQTT 3.1.1 CONNECT with an Alibaba signature and
// waits for the CONNACK.
func mqttConnect(addr, pk, dn, secret string) error {
	c, err := mqttDial(addr, pk, dn, secret)
	if err != nil {
		return err
	}
	return c.Close()
}

// mqttDial is mqttConnect that keeps the session open.
func mqttDial(addr, pk, dn, secret string) (net.Conn, error) {
	return mqtttest.Dial(addr, "", mqtttest.Connect{Creds: mqtttest.DeviceCreds(pk, dn, secret), KeepAlive: 30})
}

// TestKill9LeavesNoGhostOnlineDevices: a device online when the server is
// killed is offline after the restart (presence is reset at start-up, as
// nothing recorded its end), with its last-online time set.
func TestKill9LeavesNoGhostOnlineDevices(t *testing.T) {
	bin, dir, p, key := startFresh(t)
	st, body := call(t, key, "POST", p.url+"/v1/products", `{"name":"ghosts"}`)
	if st != 201 {
		t.Fatalf("%d %s", st, body)
	}
	var prod struct{ ProductKey string }
	json.Unmarshal(body, &prod)
	st, body = call(t, key, "POST", p.url+"/v1/products/"+prod.ProductKey+"/devices", `{"deviceName":"ghost-01"}`)
	if st != 201 {
		t.Fatalf("%d %s", st, body)
	}
	var d struct{ DeviceSecret string }
	json.Unmarshal(body, &d)
	c, err := mqttDial(p.listeners["mqtt-tcp"], prod.ProductKey, "ghost-01", d.DeviceSecret)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	device := func(url string) (status string, lastOnline any) {
		st, body := call(t, key, "GET", url+"/v1/products/"+prod.ProductKey+"/devices/ghost-01", "")
		var dev map[string]any
		if st != 200 || json.Unmarshal(body, &dev) != nil {
			t.Fatalf("%d %s", st, body)
		}
		return fmt.Sprint(dev["status"]), dev["lastOnlineAt"]
	}
	// Presence is written in batches behind the CONNACK: wait for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if s, _ := device(p.url); s == "online" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connected device never showed online")
		}
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p2 := startBinary(t, bin, dir)
	if s, last := device(p2.url); s != "offline" || last == nil {
		t.Fatalf("after kill -9 and restart: status %s, lastOnlineAt %v; want offline with the time kept", s, last)
	}
}
