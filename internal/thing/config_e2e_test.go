package thing_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRemoteConfiguration: thing.config.get answers 6406 until the product
// has a file, then its id, size, SHA-256 and an HTTPS URL that serves
// exactly those bytes (and nothing once tampered with, replaced, or over
// plain HTTP); a push tells the online device the same.
func TestRemoteConfiguration(t *testing.T) {
	e := setup(t)
	if r := e.post(t, "thing/config/get", "c0", `{"configScope":"product","getType":"file"}`); r["code"] != 6406.0 || r["id"] != "c0" {
		t.Fatalf("no file yet: %v", r)
	}
	content := "{\"reportIntervalSeconds\": 60}\n"
	e.s.Admin("PUT", "/v1/products/"+e.pk+"/config", map[string]any{"content": content}, 200)
	r := e.post(t, "thing/config/get", "c1", `{"configScope":"product","getType":"file"}`)
	data, _ := r["data"].(map[string]any)
	sum := sha256.Sum256([]byte(content))
	if r["code"] != 200.0 || data["configSize"] != float64(len(content)) || data["sign"] != hex.EncodeToString(sum[:]) ||
		data["signMethod"] != "Sha256" || data["getType"] != "file" || len(data["configId"].(string)) != 32 {
		t.Fatalf("thing.config.get: %v", r)
	}
	url := data["url"].(string)
	ca, err := os.ReadFile(filepath.Join(e.s.Config.DataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get(url); st != 200 || body != content {
		t.Fatalf("download: %d %q", st, body)
	}
	if st, _ := get(strings.Replace(url, "sig=", "sig=0", 1)); st != 404 {
		t.Fatalf("a tampered URL: %d", st)
	}
	plain := strings.Replace(url, "https://localhost:"+port(e.s.App.HTTPSAddr()), "http://"+e.s.App.HTTPAddr(), 1)
	if st, _ := get(plain); st != 404 {
		t.Fatalf("over plain HTTP (%s): %d", plain, st)
	}
	// Push: the online device is told of the file.
	e.s.Admin("PUT", "/v1/products/"+e.pk+"/config", map[string]any{"content": "v2"}, 200)
	if st, _ := get(url); st != 404 {
		t.Fatalf("the replaced file's URL: %d", st)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var dev struct{ Status string }
		e.s.Admin("GET", "/v1/products/"+e.pk+"/devices/thermo-01", nil, 200).JSON(t, &dev)
		if dev.Status == "online" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("device never online")
		}
	}
	var res struct{ Pushed int }
	e.s.Admin("POST", "/v1/products/"+e.pk+"/config:push", nil, 200).JSON(t, &res)
	push := e.next(t, e.topic("thing/config/push"))
	params, _ := push["params"].(map[string]any)
	if res.Pushed != 1 || push["method"] != "thing.config.push" || params["configSize"] != 2.0 {
		t.Fatalf("push: %d devices, %v", res.Pushed, push)
	}
	if st, body := get(params["url"].(string)); st != 200 || body != "v2" {
		t.Fatalf("the pushed URL: %d %q", st, body)
	}
	if r := e.s.Do(e.s.AdminKey, "PUT", "/v1/products/"+e.pk+"/config", map[string]any{"content": strings.Repeat("x", 64<<10+1)}); r.Status != 400 {
		t.Fatalf("a file over 64 KB: %d %s", r.Status, r.Body)
	}
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
