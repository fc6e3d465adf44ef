package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
)

// run executes the CLI against a live server and returns its output.
func run(t *testing.T, s *apptest.Server, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--server", s.URL, "--data-dir", s.Config.DataDir}, args...))
	err := root.Execute()
	return out.String(), err
}

func must(t *testing.T, s *apptest.Server, args ...string) string {
	t.Helper()
	out, err := run(t, s, args...)
	if err != nil {
		t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestCLIProductAndDeviceLifecycle(t *testing.T) {
	s := apptest.Start(t)
	var p struct{ ProductKey, ProductSecret string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "thermostat", "--json")), &p)
	if p.ProductKey == "" || p.ProductSecret == "" {
		t.Fatal("product create --json lacks the key or secret")
	}
	if out := must(t, s, "product", "list"); !strings.Contains(out, p.ProductKey) || !strings.Contains(out, "thermostat") {
		t.Fatalf("product list: %s", out)
	}
	if out := must(t, s, "device", "create", p.ProductKey, "therm-01", "--attr", "site=north"); !strings.Contains(out, "therm-01") {
		t.Fatalf("device create: %s", out)
	}
	csv := filepath.Join(t.TempDir(), "names.csv")
	os.WriteFile(csv, []byte("deviceName\nbatch-0001\nbatch-0002\nbatch-0003\n"), 0o600)
	triples := filepath.Join(t.TempDir(), "triples.csv")
	must(t, s, "device", "batch", p.ProductKey, "--file", csv, "--out", triples)
	if st, err := os.Stat(triples); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("triples file: %v %v", st, err)
	}
	data, _ := os.ReadFile(triples)
	if strings.Count(string(data), "\n") != 4 {
		t.Fatalf("triples: %s", data)
	}
	out := must(t, s, "device", "list", p.ProductKey, "--prefix", "batch-")
	if strings.Count(out, "batch-") != 3 || strings.Contains(out, "therm-01") {
		t.Fatalf("filtered list: %s", out)
	}
	var listed struct{ Devices []map[string]any }
	json.Unmarshal([]byte(must(t, s, "device", "list", p.ProductKey, "--json")), &listed)
	if len(listed.Devices) != 4 {
		t.Fatalf("--json list: %d", len(listed.Devices))
	}
	for _, d := range listed.Devices {
		if _, ok := d["deviceSecret"]; ok {
			t.Fatal("a listing shows a secret")
		}
	}
	must(t, s, "device", "disable", p.ProductKey, "therm-01")
	if out := must(t, s, "device", "get", p.ProductKey, "therm-01"); !strings.Contains(out, "disabled") {
		t.Fatalf("get after disable: %s", out)
	}
	must(t, s, "device", "enable", p.ProductKey, "therm-01")
	if out := must(t, s, "device", "get", p.ProductKey, "therm-01"); !strings.Contains(out, p.ProductKey+".therm-01") {
		t.Fatalf("get shows no default thing name: %s", out)
	}
	if out := must(t, s, "device", "rename", p.ProductKey, "therm-01", "north-therm"); !strings.Contains(out, "north-therm") {
		t.Fatalf("rename: %s", out)
	}
	if out := must(t, s, "device", "create", p.ProductKey, "therm-02", "--thing-name", "south-therm", "--json"); !strings.Contains(out, `"thingName": "south-therm"`) {
		t.Fatalf("create --thing-name: %s", out)
	}
	if out, err := run(t, s, "device", "rename", p.ProductKey, "therm-02", "north-therm"); err == nil {
		t.Fatalf("a taken thing name: %s", out)
	}
	if out := must(t, s, "device", "secret", p.ProductKey, "therm-01"); len(out) < 32 {
		t.Fatalf("secret: %s", out)
	}
	must(t, s, "device", "delete", p.ProductKey, "therm-01")
	if _, err := run(t, s, "device", "get", p.ProductKey, "therm-01"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("get after delete: %v", err)
	}
	if out := must(t, s, "audit", "--action", "device.secret.read"); !strings.Contains(out, "therm-01") {
		t.Fatalf("audit: %s", out)
	}
	must(t, s, "product", "delete", p.ProductKey)
}

func TestCLIAPIKeyRoles(t *testing.T) {
	s := apptest.Start(t)
	var k struct{ ID string }
	json.Unmarshal([]byte(must(t, s, "apikey", "create", "--name", "ci", "--role", "operator", "--json")), &k)
	if out := must(t, s, "apikey", "set-role", k.ID, "--role", "readonly"); !strings.Contains(out, "readonly") {
		t.Fatalf("set-role: %s", out)
	}
	admin, _, _ := strings.Cut(s.AdminKey, ".")
	if out, err := run(t, s, "apikey", "set-role", admin, "--role", "operator"); err == nil {
		t.Fatalf("demoted the last admin key: %s", out)
	}
}

func TestCLIRejectsAWrongKey(t *testing.T) {
	s := apptest.Start(t)
	_, err := run(t, s, "--api-key", "ckNOPE.wrong", "product", "list")
	if err == nil || !strings.Contains(err.Error(), "unauthenticated") {
		t.Fatalf("err = %v", err)
	}
}

func TestCLIRegisterActsAsADevice(t *testing.T) {
	s := apptest.Start(t)
	var p struct{ ProductKey, ProductSecret string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "meter", "--dynamic-registration", "auto", "--json")), &p)
	// Dynamic registration answers on the HTTPS listener only.
	if _, err := run(t, s, "register", "--product-key", p.ProductKey, "--product-secret", p.ProductSecret, "--device-name", "SN-0000"); err == nil {
		t.Fatal("dynamic registration answered on plain HTTP")
	}
	tls := []string{"--server", "https://" + s.App.HTTPSAddr(), "--cacert", filepath.Join(s.Config.DataDir, "tls", "ca.pem")}
	out := must(t, s, append(tls, "register", "--product-key", p.ProductKey, "--product-secret", p.ProductSecret, "--device-name", "SN-0001")...)
	if !strings.Contains(out, "SN-0001") {
		t.Fatalf("register: %s", out)
	}
	if _, err := run(t, s, append(tls, "register", "--product-key", p.ProductKey, "--product-secret", "wrong", "--device-name", "SN-0002")...); err == nil {
		t.Fatal("a wrong product secret registered")
	}
	if out := must(t, s, "ca", "verify"); !strings.Contains(out, "Registration code:") {
		t.Fatalf("ca verify: %s", out)
	}
}

// TestCLICertificateAuthorities registers a CA with proof of possession,
// lists it, revokes it and sees the change, through the CLI alone.
func TestCLICertificateAuthorities(t *testing.T) {
	s := apptest.Start(t)
	var p struct{ ProductKey string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "x509", "--auth-type", "x509", "--json")), &p)
	if p.ProductKey == "" {
		t.Fatal("product create: no ProductKey")
	}
	if out := must(t, s, "ca", "list"); len(strings.Split(strings.TrimSpace(out), "\n")) != 1 || !strings.HasPrefix(out, "ID") {
		t.Fatalf("ca list before any CA: %q", out)
	}
	out := must(t, s, "ca", "verify")
	_, code, ok := strings.Cut(strings.SplitN(out, "\n", 2)[0], "Registration code: ")
	if !ok || code == "" {
		t.Fatalf("ca verify printed no code: %s", out)
	}
	dir := t.TempDir()
	caPEM, verPEM := cliCA(t, code)
	os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "verify.pem"), verPEM, 0o600)
	var ca struct{ ID, Status, Mode, Subject string }
	json.Unmarshal([]byte(must(t, s, "ca", "add", "--cert", filepath.Join(dir, "ca.pem"), "--verification-cert", filepath.Join(dir, "verify.pem"),
		"--product-key", p.ProductKey, "--mode", "jitp", "--json")), &ca)
	if ca.ID == "" || ca.Mode != "jitp" || !strings.Contains(ca.Subject, "CLI Test CA") {
		t.Fatalf("ca add: %+v", ca)
	}
	row := func() []string {
		for _, line := range strings.Split(must(t, s, "ca", "list"), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == ca.ID {
				return f
			}
		}
		t.Fatalf("ca list does not show %s", ca.ID)
		return nil
	}
	if f := row(); f[1] != "active" || f[2] != "jitp" || f[3] != p.ProductKey {
		t.Fatalf("ca list row: %q", f)
	}
	must(t, s, "ca", "revoke", ca.ID)
	if f := row(); f[1] != "revoked" {
		t.Fatalf("after revoke, ca list row: %q", f)
	}
	var certs struct {
		Certificates []any `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(must(t, s, "cert", "list", "--status", "pending", "--json")), &certs); err != nil || certs.Certificates == nil || len(certs.Certificates) != 0 {
		t.Fatalf("cert list --json: %v %+v", err, certs)
	}
}

// cliCA makes a CA and a verification certificate whose Common Name is the
// account's registration code, signed by the CA's key.
func cliCA(t *testing.T, code string) (caPEM, verPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CLI Test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	vkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	vt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: code}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	vDER, err := x509.CreateCertificate(rand.Reader, vt, caCert, &vkey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vDER})
}
