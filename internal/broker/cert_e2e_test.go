package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
)

func selfSigned(t *testing.T, cn string) (tls.Certificate, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c, certPEM
}

func TestCertificateBoundDeviceConnects(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("cams", map[string]any{"authType": "x509"})
	s.CreateDevice(p.ProductKey, "cam-1")
	cert, certPEM := selfSigned(t, "cam-1")
	stranger, _ := selfSigned(t, "stranger")
	base := "/v1/products/" + p.ProductKey + "/devices/cam-1"
	s.Admin("PUT", base+"/certificate", map[string]any{"certificatePem": string(certPEM)}, 200)
	if r := s.Do(s.AdminKey, "PUT", base+"/certificate", map[string]any{"certificatePem": "garbage"}); r.Status != 400 {
		t.Fatalf("garbage certificate: %d", r.Status)
	}
	caPEM, _ := os.ReadFile(filepath.Join(s.Config.DataDir, "tls", "ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	dial := func(c tls.Certificate, username, password string) error {
		o := paho.NewClientOptions().AddBroker("ssl://" + s.App.Broker().Addr("tls")).SetClientID("cam").SetAutoReconnect(false).
			SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{c}})
		if username != "" {
			o.SetUsername(username).SetPassword(password)
		}
		cl := paho.NewClient(o)
		err := apptest.ConnectMQTT(t, cl)
		if err == nil {
			cl.Disconnect(0)
		}
		return err
	}
	if err := dial(cert, "", ""); err != nil {
		t.Fatalf("bound certificate refused: %v", err)
	}
	if err := dial(cert, "cam-1&"+p.ProductKey, ""); err != nil {
		t.Fatalf("bound certificate with matching username refused: %v", err)
	}
	if err := dial(cert, "cam-2&"+p.ProductKey, ""); err == nil {
		t.Fatal("certificate accepted for another device's username")
	}
	if err := dial(stranger, "", ""); err == nil {
		t.Fatal("unbound certificate accepted")
	}
	// An x509 product's device cannot fall back to a secret.
	d := s.CreateDevice(p.ProductKey, "cam-2")
	if out, err := mosqPub(t, s.App.Broker().Addr("tcp"), deviceCreds(d), "/"+p.ProductKey+"/cam-2/user/x", "x"); err == nil {
		t.Fatalf("x509 product device connected with a secret: %s", out)
	}
	// Unbinding closes the door.
	s.Admin("DELETE", base+"/certificate", nil, 200)
	if err := dial(cert, "", ""); err == nil {
		t.Fatal("unbound certificate still accepted")
	}
}

func TestFreshnessWindowIsOptIn(t *testing.T) {
	needMosquittoClients(t)
	s := apptest.Start(t)
	p := s.CreateProduct("fresh", nil)
	d := s.CreateDevice(p.ProductKey, "fresh-1")
	addr := s.App.Broker().Addr("tcp")
	// The Link SDKs' fixed far-future timestamp works by default.
	if out, err := mosqPub(t, addr, deviceCreds(d), "/"+p.ProductKey+"/fresh-1/user/x", "x"); err != nil {
		t.Fatalf("default product refused the SDK timestamp: %v %s", err, out)
	}
	s.Admin("PATCH", "/v1/products/"+p.ProductKey, map[string]any{"connectTimestampWindowSeconds": 300}, 200)
	out, err := mosqPub(t, addr, deviceCreds(d), "/"+p.ProductKey+"/fresh-1/user/x", "x")
	if err == nil || !strings.Contains(out, "not authorised") {
		t.Fatalf("stale timestamp accepted: %v %s", err, out)
	}
	now := time.Now().UnixMilli()
	c := deviceCreds(d)
	ts := itoa(now)
	c.clientID = p.ProductKey + ".fresh-1|securemode=3,signmethod=hmacsha256,timestamp=" + ts + "|"
	c.password = sign(d.DeviceSecret, p.ProductKey+".fresh-1", "fresh-1", p.ProductKey, ts)
	if out, err := mosqPub(t, addr, c, "/"+p.ProductKey+"/fresh-1/user/x", "x"); err != nil {
		t.Fatalf("fresh timestamp refused: %v %s", err, out)
	}
}

func itoa(n int64) string {
	return strings.TrimSpace(strings.Replace(big.NewInt(n).String(), "+", "", 1))
}

// TestMosquittoSubReceivesDownstream drives both ends with Mosquitto's
// clients: mosquitto_sub as the device, HTTP publish as the application.
func TestMosquittoSubReceivesDownstream(t *testing.T) {
	needMosquittoClients(t)
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d := s.CreateDevice(p.ProductKey, "sub-1")
	c := deviceCreds(d)
	h, port := hostPort(s.App.Broker().Addr("tcp"))
	topic := "/sys/" + p.ProductKey + "/sub-1/thing/service/property/set"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_sub", "-h", h, "-p", port, "-i", c.clientID, "-u", c.username, "-P", c.password, "-t", topic, "-C", "1", "-q", "1")
	outc := make(chan string, 1)
	go func() {
		out, _ := cmd.CombinedOutput()
		outc <- string(out)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !s.App.Broker().Connected(p.ProductKey, "sub-1") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// mosquitto_sub's SUBSCRIBE follows its CONNACK at a moment nothing
	// here can see: publish until it has a message (it prints the first
	// and exits), within a deadline.
	var out string
	for got := false; !got; {
		if r := s.Do(s.AdminKey, "POST", "/v1/publish?qos=1&topic="+topic, `{"params":{"on":1}}`); r.Status != 204 {
			t.Fatalf("publish: %d %s", r.Status, r.Body)
		}
		select {
		case out = <-outc:
			got = true
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("mosquitto_sub received nothing")
		}
	}
	if !strings.Contains(out, `{"params":{"on":1}}`) {
		t.Fatalf("mosquitto_sub got %q", out)
	}
	// HTTP publish outside the account's products is refused.
	if r := s.Do(s.AdminKey, "POST", "/v1/publish?topic=/sys/NOTMINE0000/x/y", "x"); r.Status != 403 {
		t.Fatalf("foreign topic: %d %s", r.Status, r.Body)
	}
	if r := s.Do(s.AdminKey, "POST", "/v1/publish?topic=/sys/%2B/x", "x"); r.Status != 400 {
		t.Fatalf("wildcard topic: %d %s", r.Status, r.Body)
	}
}
