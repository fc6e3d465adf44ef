package provision_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newCA(t *testing.T, cn string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue signs a leaf certificate with the CA.
func (ca testCA) issue(t *testing.T, cn string) (tls.Certificate, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return pair, string(certPEM)
}

func dialCert(t *testing.T, s *apptest.Server, c tls.Certificate) error {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("ssl://" + s.App.Broker().Addr("tls")).SetClientID("x509").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{c}})
	cl := paho.NewClient(o)
	err := apptest.ConnectMQTT(t, cl)
	if err == nil {
		cl.Disconnect(0)
	}
	return err
}

func registerCA(t *testing.T, s *apptest.Server, ca testCA, mode, pk string) string {
	t.Helper()
	var code struct{ RegistrationCode string }
	s.Admin("GET", "/v1/cas/registration-code", nil, 200).JSON(t, &code)
	_, verPEM := ca.issue(t, code.RegistrationCode)
	var out struct{ ID string }
	s.Admin("POST", "/v1/cas", map[string]any{"certificatePem": ca.pem, "verificationCertificatePem": verPEM, "mode": mode,
		"template": map[string]any{"productKey": pk, "attributes": map[string]string{"source": "factory-ca"}}}, 201).JSON(t, &out)
	return out.ID
}

func TestCAProofOfPossession(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("cams", nil)
	ca, other := newCA(t, "Factory CA"), newCA(t, "Other CA")
	var code struct{ RegistrationCode string }
	s.Admin("GET", "/v1/cas/registration-code", nil, 200).JSON(t, &code)
	_, wrongCN := ca.issue(t, "not-the-code")
	_, wrongSigner := other.issue(t, code.RegistrationCode)
	_, leaf := ca.issue(t, "leaf")
	_, good := ca.issue(t, code.RegistrationCode)
	// One fault per case, and each refusal names what was wrong.
	for name, tt := range map[string]struct {
		body  map[string]any
		field string
	}{
		"wrong common name": {map[string]any{"certificatePem": ca.pem, "verificationCertificatePem": wrongCN, "template": map[string]any{"productKey": p.ProductKey}}, "verificationCertificatePem"},
		"signed by another": {map[string]any{"certificatePem": ca.pem, "verificationCertificatePem": wrongSigner, "template": map[string]any{"productKey": p.ProductKey}}, "verificationCertificatePem"},
		"not a CA":          {map[string]any{"certificatePem": leaf, "verificationCertificatePem": good, "template": map[string]any{"productKey": p.ProductKey}}, "certificatePem"},
		"unknown product":   {map[string]any{"certificatePem": ca.pem, "verificationCertificatePem": good, "template": map[string]any{"productKey": "AAAAAAAAAAA"}}, "template.productKey"},
	} {
		r := s.Do(s.AdminKey, "POST", "/v1/cas", tt.body)
		var e struct{ Field string }
		r.JSON(t, &e)
		if r.Status != 400 || e.Field != tt.field {
			t.Errorf("%s: %d %s, want 400 naming %s", name, r.Status, r.Body, tt.field)
		}
	}
	// The same CA with every part right is accepted: the cases above each
	// failed for their own fault.
	if r := s.Do(s.AdminKey, "POST", "/v1/cas", map[string]any{"certificatePem": ca.pem, "verificationCertificatePem": good, "template": map[string]any{"productKey": p.ProductKey}}); r.Status != 201 {
		t.Fatalf("the correct registration: %d %s", r.Status, r.Body)
	}
	var list struct{ CAs []any }
	s.Admin("GET", "/v1/cas", nil, 200).JSON(t, &list)
	if len(list.CAs) != 1 {
		t.Fatalf("%d CAs stored, want only the accepted one", len(list.CAs))
	}
}

func TestJITPProvisionsOnFirstConnect(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("cams", map[string]any{"authType": "x509"})
	ca := newCA(t, "Factory CA")
	caID := registerCA(t, s, ca, "jitp", p.ProductKey)
	cert, _ := ca.issue(t, "cam-0100")
	if err := dialCert(t, s, cert); err != nil {
		t.Fatalf("JITP connect: %v", err)
	}
	var dev struct {
		Attributes             map[string]string
		CertificateFingerprint string
	}
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/cam-0100", nil, 200).JSON(t, &dev)
	if dev.Attributes["source"] != "factory-ca" || dev.CertificateFingerprint == "" {
		t.Fatalf("provisioned device: %+v", dev)
	}
	if err := dialCert(t, s, cert); err != nil {
		t.Fatalf("second connect: %v", err)
	}
	// A certificate from an unregistered CA is refused.
	stranger, _ := newCA(t, "Stranger").issue(t, "cam-0101")
	if err := dialCert(t, s, stranger); err == nil {
		t.Fatal("certificate of an unregistered CA accepted")
	}
	// Revoking the CA shuts its certificates out.
	s.Admin("POST", "/v1/cas/"+caID+":revoke", nil, 200)
	if err := dialCert(t, s, cert); err == nil {
		t.Fatal("certificate of a revoked CA accepted")
	}
	other, _ := ca.issue(t, "cam-0102")
	if err := dialCert(t, s, other); err == nil {
		t.Fatal("new certificate of a revoked CA accepted")
	}
}

func TestJITRWaitsForActivation(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("meters", nil)
	ca := newCA(t, "Meter CA")
	registerCA(t, s, ca, "jitr", p.ProductKey)
	cert, _ := ca.issue(t, "meter-0001")
	if err := dialCert(t, s, cert); err == nil {
		t.Fatal("JITR certificate connected before activation")
	}
	var pending struct {
		Certificates []struct{ Fingerprint, DeviceName, Status string }
	}
	s.Admin("GET", "/v1/certificates?status=pending", nil, 200).JSON(t, &pending)
	if len(pending.Certificates) != 1 || pending.Certificates[0].DeviceName != "meter-0001" {
		t.Fatalf("pending: %+v", pending)
	}
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/meter-0001", nil, 404)
	fp := pending.Certificates[0].Fingerprint
	s.Admin("POST", "/v1/certificates/"+fp+":activate", nil, 200)
	if err := dialCert(t, s, cert); err != nil {
		t.Fatalf("after activation: %v", err)
	}
	s.Admin("POST", "/v1/certificates/"+fp+":revoke", nil, 200)
	if err := dialCert(t, s, cert); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	var audit struct {
		Entries []struct{ Outcome string } `json:"entries"`
	}
	s.Admin("GET", "/v1/audit?action=registration.certificate", nil, 200).JSON(t, &audit)
	if len(audit.Entries) != 1 || audit.Entries[0].Outcome != "pending" {
		t.Fatalf("audit: %+v", audit.Entries)
	}
}
