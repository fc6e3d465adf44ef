package credential

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER bytes.
func Fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

// Files of the generated local CA in <data-dir>/tls.
const (
	// CABundleFile holds every CA corral's generated server certificates
	// chain to (ECDSA first, then RSA): what Go, OpenSSL and curl clients
	// should trust.
	CABundleFile = "ca.pem"
	// RSACAFile holds the RSA CA alone: what a stock Link SDK device
	// (mbedtls without elliptic curves) should be built with, since its
	// parser may refuse a bundle holding an ECDSA certificate.
	RSACAFile = "ca-rsa.pem"
)

// ServerTLS is corral's generated server certificates, one per key type,
// and the CA files devices trust.
type ServerTLS struct {
	ECDSA     tls.Certificate
	RSA       tls.Certificate
	CAPath    string // CABundleFile: both CAs
	RSACAPath string // RSACAFile: the RSA CA alone
	Created   bool   // a chain was generated on this call
}

// Certificates returns the server certificates, ECDSA first.
func (s ServerTLS) Certificates() []tls.Certificate { return []tls.Certificate{s.ECDSA, s.RSA} }

// chainSpec names the files of one generated chain and its key type.
type chainSpec struct {
	cert, key, caKey string
	newKey           func() (crypto.Signer, error)
	// keyUsage of the server certificate: static RSA key exchange encrypts
	// the premaster secret to the server key, and mbedtls and OpenSSL
	// refuse a certificate without keyEncipherment for it.
	keyUsage x509.KeyUsage
}

var (
	// ecdsaChain keeps the file names corral has always used, so that
	// existing data directories and the devices trusting them carry on.
	ecdsaChain = chainSpec{cert: "server.pem", key: "server.key", caKey: "ca.key",
		newKey:   func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		keyUsage: x509.KeyUsageDigitalSignature}
	rsaChain = chainSpec{cert: "server-rsa.pem", key: "server-rsa.key", caKey: "ca-rsa.key",
		newKey:   func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
		keyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
)

// EnsureServerTLS loads, or on first use generates, two local CAs and a
// server certificate signed by each for localhost, the loopback addresses
// and hosts: ECDSA P-256 (dir/server.pem, dir/server.key, dir/ca.key) for
// modern clients and RSA-2048 (dir/server-rsa.pem, …) for devices without
// elliptic curves. A directory holding only the ECDSA chain (corral before
// issue 10) gets the RSA chain added; the ECDSA chain is kept as it is, so
// devices trusting its CA carry on. dir/ca.pem ends up holding both CAs
// (and any it held before), dir/ca-rsa.pem the RSA CA alone. Keys are
// written with mode 0600.
func EnsureServerTLS(dir string, hosts []string) (ServerTLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ServerTLS{}, fmt.Errorf("creating %s: %w", dir, err)
	}
	ec, ecNew, err := ensureChain(dir, ecdsaChain, hosts)
	if err != nil {
		return ServerTLS{}, fmt.Errorf("ECDSA server certificate: %w", err)
	}
	rs, rsNew, err := ensureChain(dir, rsaChain, hosts)
	if err != nil {
		return ServerTLS{}, fmt.Errorf("RSA server certificate: %w", err)
	}
	out := ServerTLS{ECDSA: ec, RSA: rs, CAPath: filepath.Join(dir, CABundleFile), RSACAPath: filepath.Join(dir, RSACAFile), Created: ecNew || rsNew}
	if err := mergePEMBundle(out.CAPath, chainCA(ec), chainCA(rs)); err != nil {
		return ServerTLS{}, fmt.Errorf("writing the CA bundle: %w", err)
	}
	if err := mergePEMBundle(out.RSACAPath, chainCA(rs)); err != nil {
		return ServerTLS{}, fmt.Errorf("writing the RSA CA: %w", err)
	}
	return out, nil
}

// chainCA is the last certificate of a chain: the CA that signed the
// server certificate (generated chains are written leaf, CA).
func chainCA(c tls.Certificate) []byte { return c.Certificate[len(c.Certificate)-1] }

// ensureChain loads the chain's server certificate, or generates a CA and
// a server certificate when its files do not exist.
func ensureChain(dir string, spec chainSpec, hosts []string) (tls.Certificate, bool, error) {
	certPath, keyPath := filepath.Join(dir, spec.cert), filepath.Join(dir, spec.key)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return cert, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, false, fmt.Errorf("loading %s: %w", certPath, err)
	}
	if err := generateChain(dir, spec, hosts); err != nil {
		return tls.Certificate{}, false, err
	}
	cert, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("loading %s: %w", certPath, err)
	}
	return cert, true, nil
}

// generateChain writes a new CA key and a server certificate and key
// signed by it; the server file holds the chain (leaf, CA).
func generateChain(dir string, spec chainSpec, hosts []string) error {
	caKey, err := spec.newKey()
	if err != nil {
		return fmt.Errorf("generating the CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "corral local CA" + caNameSuffix(caKey), Organization: []string{"corral"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return fmt.Errorf("creating the CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("creating the CA: %w", err)
	}
	srvKey, err := spec.newKey()
	if err != nil {
		return fmt.Errorf("generating the server key: %w", err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, serverTemplate(now, spec.keyUsage, hosts), caCert, srvKey.Public(), caKey)
	if err != nil {
		return fmt.Errorf("creating the server certificate: %w", err)
	}
	if err := writeKey(filepath.Join(dir, spec.caKey), caKey); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, spec.key), srvKey); err != nil {
		return err
	}
	chain := append(certPEM(srvDER), certPEM(caDER)...)
	return WriteFileAtomic(filepath.Join(dir, spec.cert), chain, 0o644)
}

// caNameSuffix tells the two CAs apart in a trust store, keeping the
// ECDSA CA's name what it always was.
func caNameSuffix(k crypto.Signer) string {
	if _, ok := k.Public().(*rsa.PublicKey); ok {
		return " (RSA)"
	}
	return ""
}

func serverTemplate(now time.Time, usage x509.KeyUsage, hosts []string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "corral", Organization: []string{"corral"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     usage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl
}

// writeKey writes a private key as PEM with mode 0600: ECDSA keys in SEC 1
// ("EC PRIVATE KEY", as corral always wrote them), RSA keys in PKCS #1.
func writeKey(path string, k crypto.Signer) error {
	var block *pem.Block
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", path, err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	case *rsa.PrivateKey:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	default:
		return fmt.Errorf("encoding %s: unsupported key type %T", path, k)
	}
	return WriteFileAtomic(path, pem.EncodeToMemory(block), 0o600)
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// mergePEMBundle makes the PEM file at path hold every certificate it
// held before plus ders, in that order, rewriting it only when something
// is added: a CA that devices were told to trust is never dropped.
func mergePEMBundle(path string, ders ...[]byte) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	have := pemCertificates(old)
	out := old
	for _, der := range ders {
		if containsDER(have, der) {
			continue
		}
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, certPEM(der)...)
		have = append(have, der)
	}
	if bytes.Equal(out, old) {
		return nil
	}
	return WriteFileAtomic(path, out, 0o644)
}

// pemCertificates returns the DER of every CERTIFICATE block in data.
func pemCertificates(data []byte) [][]byte {
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
}

func containsDER(list [][]byte, der []byte) bool {
	for _, d := range list {
		if bytes.Equal(d, der) {
			return true
		}
	}
	return false
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
