package main

import (
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
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
)

// TestCLICertBindProvesPossession: a certificate from a CA corral does not
// know binds only with its key, which the CLI uses to sign the challenge.
func TestCLICertBindProvesPossession(t *testing.T) {
	s := apptest.Start(t)
	var p struct{ ProductKey string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "cams", "--json")), &p)
	must(t, s, "device", "create", p.ProductKey, "cam-01")

	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vendor CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cam-01"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cam.pem"), filepath.Join(dir, "cam.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	if out, err := run(t, s, "device", "cert", "bind", p.ProductKey, "cam-01", "--cert", certFile); err == nil {
		t.Fatalf("bound without proof of possession: %s", out)
	}
	must(t, s, "device", "cert", "bind", p.ProductKey, "cam-01", "--cert", certFile, "--key", keyFile)
	var d struct {
		CertificateFingerprint string `json:"certificateFingerprint"`
	}
	json.Unmarshal([]byte(must(t, s, "device", "get", p.ProductKey, "cam-01", "--json")), &d)
	if d.CertificateFingerprint == "" {
		t.Fatal("no certificate bound")
	}
	must(t, s, "device", "cert", "unbind", p.ProductKey, "cam-01")
}
