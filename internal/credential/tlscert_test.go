package credential

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// ensure generates (or loads) the server TLS files in dir.
func ensure(t *testing.T, dir string, hosts ...string) ServerTLS {
	t.Helper()
	st, err := EnsureServerTLS(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func poolOf(t *testing.T, path string) (*x509.CertPool, int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, der := range pemCertificates(data) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(c)
	}
	return pool, len(pemCertificates(data))
}

func verifyLeaf(t *testing.T, c tls.Certificate, pool *x509.CertPool, name string) error {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
	return err
}

func TestEnsureServerTLSGeneratesBothChains(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	st := ensure(t, dir, "iot.example.test", "10.1.2.3")
	if !st.Created {
		t.Fatal("Created = false on a fresh directory")
	}
	if _, ok := st.ECDSA.Leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("ECDSA leaf has a %T key", st.ECDSA.Leaf.PublicKey)
	}
	rsaKey, ok := st.RSA.Leaf.PublicKey.(*rsa.PublicKey)
	if !ok || rsaKey.N.BitLen() != 2048 {
		t.Fatalf("RSA leaf key %T", st.RSA.Leaf.PublicKey)
	}
	if st.RSA.Leaf.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Fatal("RSA leaf lacks keyEncipherment, which static RSA key exchange needs")
	}
	bundle, n := poolOf(t, st.CAPath)
	if n != 2 {
		t.Fatalf("%s holds %d certificates, want 2", st.CAPath, n)
	}
	rsaOnly, n := poolOf(t, st.RSACAPath)
	if n != 1 {
		t.Fatalf("%s holds %d certificates, want 1", st.RSACAPath, n)
	}
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		pool *x509.CertPool
		host string
		ok   bool
	}{
		{"ECDSA by the bundle", st.ECDSA, bundle, "localhost", true},
		{"RSA by the bundle", st.RSA, bundle, "iot.example.test", true},
		{"RSA by ca-rsa.pem", st.RSA, rsaOnly, "10.1.2.3", true},
		{"ECDSA not by ca-rsa.pem", st.ECDSA, rsaOnly, "localhost", false},
		{"name outside the certificate", st.RSA, bundle, "other.example.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := verifyLeaf(t, tc.cert, tc.pool, tc.host); (err == nil) != tc.ok {
				t.Fatalf("verify = %v, want ok %v", err, tc.ok)
			}
		})
	}
	for _, f := range []string{"ca.key", "server.key", "ca-rsa.key", "server-rsa.key"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	again := ensure(t, dir, "iot.example.test")
	if again.Created || !bytes.Equal(again.RSA.Certificate[0], st.RSA.Certificate[0]) || !bytes.Equal(again.ECDSA.Certificate[0], st.ECDSA.Certificate[0]) {
		t.Fatal("second start did not load the same certificates")
	}
}

// A data directory from before issue 10 holds the ECDSA chain alone; the
// RSA chain is added and the ECDSA one kept, so its devices carry on.
func TestEnsureServerTLSUpgradesECDSAOnlyDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := generateChain(dir, ecdsaChain, nil); err != nil {
		t.Fatal(err)
	}
	old, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	oldCA := certPEM(chainCA(old))
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), oldCA, 0o644); err != nil {
		t.Fatal(err)
	}
	st := ensure(t, dir)
	if !st.Created || !bytes.Equal(st.ECDSA.Certificate[0], old.Certificate[0]) {
		t.Fatal("the existing ECDSA server certificate was not kept")
	}
	bundle, err := os.ReadFile(st.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(bundle, oldCA) || len(pemCertificates(bundle)) != 2 {
		t.Fatalf("ca.pem does not start with the old CA and add the RSA one:\n%s", bundle)
	}
	pool, _ := poolOf(t, st.CAPath)
	if err := verifyLeaf(t, st.RSA, pool, "localhost"); err != nil {
		t.Fatalf("RSA chain does not verify by the upgraded ca.pem: %v", err)
	}
}

func TestMergePEMBundleKeepsWhatWasTrusted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.pem")
	a, b := []byte("first"), []byte("second")
	for _, step := range []struct {
		add  [][]byte
		want [][]byte
	}{
		{[][]byte{a}, [][]byte{a}},
		{[][]byte{b, a}, [][]byte{a, b}},
		{[][]byte{a}, [][]byte{a, b}},
	} {
		if err := mergePEMBundle(path, step.add...); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		got := pemCertificates(data)
		if len(got) != len(step.want) {
			t.Fatalf("bundle holds %q, want %q", got, step.want)
		}
		for i := range got {
			if !bytes.Equal(got[i], step.want[i]) {
				t.Fatalf("bundle holds %q, want %q", got, step.want)
			}
		}
	}
}

// handshake runs a TLS handshake between client and server over a pipe.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	srvErr := make(chan error, 1)
	go func() {
		srv := tls.Server(s, server)
		srvErr <- srv.Handshake()
		s.Close() // not srv.Close: close_notify would block on the unbuffered pipe
	}()
	cl := tls.Client(c, client)
	err := cl.Handshake()
	if err != nil {
		c.Close()
		<-srvErr
		return tls.ConnectionState{}, err
	}
	state := cl.ConnectionState()
	c.Close()
	<-srvErr
	return state, nil
}

func TestDeviceTLSConfigPicksCertificateAndSuite(t *testing.T) {
	st := ensure(t, filepath.Join(t.TempDir(), "tls"), "iot.example.test")
	bundle, _ := poolOf(t, st.CAPath)
	rsaSuite := func(id uint16) *tls.Config {
		return &tls.Config{RootCAs: bundle, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{id}}
	}
	modern := &tls.Config{RootCAs: bundle, ServerName: "localhost"}
	for _, tc := range []struct {
		name     string
		legacy   bool
		client   *tls.Config
		fails    bool
		wantRSA  bool
		wantSuit uint16
	}{
		{"AES128-SHA", true, rsaSuite(tls.TLS_RSA_WITH_AES_128_CBC_SHA), false, true, tls.TLS_RSA_WITH_AES_128_CBC_SHA},
		{"AES256-SHA", true, rsaSuite(tls.TLS_RSA_WITH_AES_256_CBC_SHA), false, true, tls.TLS_RSA_WITH_AES_256_CBC_SHA},
		{"AES128-SHA256", true, rsaSuite(tls.TLS_RSA_WITH_AES_128_CBC_SHA256), false, true, tls.TLS_RSA_WITH_AES_128_CBC_SHA256},
		{"unknown SNI still gets RSA", true, &tls.Config{InsecureSkipVerify: true, ServerName: "elsewhere.test", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}}, false, true, tls.TLS_RSA_WITH_AES_128_CBC_SHA},
		{"modern client over TLS 1.2", true, &tls.Config{RootCAs: bundle, ServerName: "iot.example.test", MaxVersion: tls.VersionTLS12}, false, false, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"modern client", true, modern, false, false, tls.TLS_AES_128_GCM_SHA256},
		{"ECDHE without ECDSA gets RSA", true, &tls.Config{RootCAs: bundle, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, false, true, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{"RSA kx off refuses AES128-SHA", false, rsaSuite(tls.TLS_RSA_WITH_AES_128_CBC_SHA), true, false, 0},
		{"RSA kx off serves modern", false, modern, false, false, tls.TLS_AES_128_GCM_SHA256},
		{"TLS 1.1 refused", true, &tls.Config{RootCAs: bundle, ServerName: "localhost", MaxVersion: tls.VersionTLS11}, true, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := DeviceTLSConfig(DeviceTLSOptions{Certificates: []tls.Certificate{st.RSA, st.ECDSA}, LegacyRSAKeyExchange: tc.legacy})
			if err != nil {
				t.Fatal(err)
			}
			state, err := handshake(t, srv, tc.client)
			if tc.fails {
				if err == nil {
					t.Fatalf("handshake succeeded with suite %s", tls.CipherSuiteName(state.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			_, isRSA := state.PeerCertificates[0].PublicKey.(*rsa.PublicKey)
			if isRSA != tc.wantRSA || state.CipherSuite != tc.wantSuit {
				t.Fatalf("got RSA leaf %v, suite %s; want RSA %v, %s", isRSA, tls.CipherSuiteName(state.CipherSuite), tc.wantRSA, tls.CipherSuiteName(tc.wantSuit))
			}
		})
	}
}

func TestDeviceTLSConfigNeedsACertificate(t *testing.T) {
	if _, err := DeviceTLSConfig(DeviceTLSOptions{}); err == nil {
		t.Fatal("no error without certificates")
	}
}
