package credential

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// modernSuites are crypto/tls's default TLS 1.2 cipher suites (all ECDHE,
// forward secret). Setting Config.CipherSuites replaces Go's defaults, so
// they are listed again here. TLS 1.3 suites are not configurable and
// always on.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// legacyRSASuites are the static RSA key-exchange suites the Alibaba Link
// SDKs' bundled mbedtls (built without elliptic curves) offers. Since Go
// 1.22 crypto/tls serves RSA key exchange only when it is listed in
// Config.CipherSuites. The SDKs offer, in order, 0x003d
// TLS_RSA_WITH_AES_256_CBC_SHA256, 0x0035, 0x003c and 0x002f: crypto/tls
// does not implement 0x003d at all, so the three below are what corral
// can answer; every such device offers them too.
var legacyRSASuites = []uint16{
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,    // 0x0035
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256, // 0x003c
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,    // 0x002f
}

// DeviceTLSOptions configures the device-facing TLS listeners.
type DeviceTLSOptions struct {
	// Certificates the server may present; each handshake gets the first
	// the client supports, ECDSA ones before the others whatever the order
	// given here.
	Certificates []tls.Certificate
	// LegacyRSAKeyExchange also offers the static RSA key-exchange suites
	// (no forward secrecy) that devices without elliptic curves need.
	LegacyRSAKeyExchange bool
	// ClientAuth is how client certificates are asked for (MQTT over TLS
	// asks for them, for X.509 device authentication).
	ClientAuth tls.ClientAuthType
}

// DeviceTLSConfig builds the server configuration every device-facing TLS
// listener uses (MQTT over TLS, HTTPS registration, bootstrap): TLS 1.2 or
// later, Go's modern suites plus, when asked, static RSA key exchange, and
// a certificate chosen per ClientHello so that a modern client gets ECDSA
// and a device that cannot parse ECDSA gets RSA.
func DeviceTLSConfig(o DeviceTLSOptions) (*tls.Config, error) {
	if len(o.Certificates) == 0 {
		return nil, errors.New("device TLS: no server certificate")
	}
	certs, err := withLeaves(o.Certificates)
	if err != nil {
		return nil, err
	}
	suites := slices.Clone(modernSuites)
	if o.LegacyRSAKeyExchange {
		suites = append(suites, legacyRSASuites...)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   suites,
		ClientAuth:     o.ClientAuth,
		GetCertificate: pickCertificate(certs),
	}, nil
}

// withLeaves returns a copy of certs with each Leaf parsed (SupportsCertificate
// would otherwise parse it on every handshake), ECDSA certificates first.
func withLeaves(certs []tls.Certificate) ([]tls.Certificate, error) {
	out := slices.Clone(certs)
	for i := range out {
		if out[i].Leaf != nil {
			continue
		}
		if len(out[i].Certificate) == 0 {
			return nil, errors.New("device TLS: a certificate without a chain")
		}
		leaf, err := x509.ParseCertificate(out[i].Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("device TLS: parsing a server certificate: %w", err)
		}
		out[i].Leaf = leaf
	}
	slices.SortStableFunc(out, func(a, b tls.Certificate) int { return rsaRank(a) - rsaRank(b) })
	return out, nil
}

// rsaRank puts RSA certificates after the others: a client that can use
// both gets the smaller, faster ECDSA handshake.
func rsaRank(c tls.Certificate) int {
	if IsRSA(c) {
		return 1
	}
	return 0
}

// IsRSA reports whether the certificate's key is RSA (what devices without
// elliptic curves need).
func IsRSA(c tls.Certificate) bool {
	if c.Leaf != nil {
		_, ok := c.Leaf.PublicKey.(*rsa.PublicKey)
		return ok
	}
	if len(c.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return false
	}
	_, ok := leaf.PublicKey.(*rsa.PublicKey)
	return ok
}

// pickCertificate returns the GetCertificate callback: the first
// certificate the client supports (key type, signature schemes, suites and
// the SNI name). When the SNI name is on none of them (a device configured
// with an address or name outside tls_hosts), the choice is made on what
// the client can use alone: the name is the client's to judge, while a
// certificate whose key it cannot use fails the handshake for certain.
func pickCertificate(certs []tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := firstSupported(hello, certs); c != nil {
			return c, nil
		}
		if hello.ServerName != "" {
			anyName := *hello
			anyName.ServerName = ""
			if c := firstSupported(&anyName, certs); c != nil {
				return c, nil
			}
		}
		return &certs[0], nil
	}
}

func firstSupported(hello *tls.ClientHelloInfo, certs []tls.Certificate) *tls.Certificate {
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i]
		}
	}
	return nil
}
