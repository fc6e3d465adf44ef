package credential

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

// ServerTLS is a server certificate and the CA that signed it.
type ServerTLS struct {
	Cert    tls.Certificate
	CAPath  string // PEM of the CA devices should trust
	Created bool   // generated on this call
}

// EnsureServerTLS loads dir/server.pem and dir/server.key, or on first use
// generates a self-signed CA (dir/ca.pem, dir/ca.key) and a server
// certificate signed by it for localhost, the loopback addresses and hosts.
// Keys are written with mode 0600.
func EnsureServerTLS(dir string, hosts []string) (ServerTLS, error) {
	certPath, keyPath, caPath := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem")
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return ServerTLS{Cert: cert, CAPath: caPath}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return ServerTLS{}, fmt.Errorf("loading server certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ServerTLS{}, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ServerTLS{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "corral local CA", Organization: []string{"corral"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return ServerTLS{}, fmt.Errorf("creating CA: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ServerTLS{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "corral", Organization: []string{"corral"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
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
	srvDER, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return ServerTLS{}, fmt.Errorf("creating server certificate: %w", err)
	}
	writeKey := func(path string, k *ecdsa.PrivateKey) error {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return err
		}
		return WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	}
	if err := writeKey(filepath.Join(dir, "ca.key"), caKey); err != nil {
		return ServerTLS{}, err
	}
	if err := WriteFileAtomic(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return ServerTLS{}, err
	}
	if err := writeKey(keyPath, srvKey); err != nil {
		return ServerTLS{}, err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := WriteFileAtomic(certPath, chain, 0o644); err != nil {
		return ServerTLS{}, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return ServerTLS{}, err
	}
	return ServerTLS{Cert: cert, CAPath: caPath, Created: true}, nil
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
