package registry

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
	"time"
)

func TestVerifyChallengeSignature(t *testing.T) {
	msg := []byte("challenge-bytes")
	digest := sha256.Sum256(msg)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecSig, _ := ecdsa.SignASN1(rand.Reader, ec, digest[:])
	pkcs1, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, digest[:])
	pss, _ := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, digest[:], nil)
	edSig := ed25519.Sign(edKey, msg)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tt := range []struct {
		name string
		pub  any
		msg  []byte
		sig  []byte
		ok   bool
	}{
		{"ecdsa", &ec.PublicKey, msg, ecSig, true},
		{"rsa pkcs1", &rk.PublicKey, msg, pkcs1, true},
		{"rsa pss", &rk.PublicKey, msg, pss, true},
		{"ed25519", edPub, msg, edSig, true},
		{"ecdsa other key", &other.PublicKey, msg, ecSig, false},
		{"ecdsa other message", &ec.PublicKey, []byte("x"), ecSig, false},
		{"rsa garbage", &rk.PublicKey, msg, []byte("garbage"), false},
		{"ed25519 empty", edPub, msg, nil, false},
		{"key type", "not a key", msg, ecSig, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := VerifyChallengeSignature(tt.pub, tt.msg, tt.sig); (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	self, _ := x509.ParseCertificate(der)
	if !selfSigned(self) {
		t.Fatal("self-signed leaf (no CA flag) not recognised")
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// Same subject as its issuer, but signed by the CA: not self-signed.
	issuedDER, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, ca, &leafKey.PublicKey, key)
	issued, _ := x509.ParseCertificate(issuedDER)
	if selfSigned(issued) {
		t.Fatal("a CA-issued certificate named like its issuer counted as self-signed")
	}
}

// aadBox is a SecretBox for tests: it binds the additional data (no secrecy).
type aadBox struct{}

func (aadBox) Seal(p, ad []byte) ([]byte, error) {
	return append(append([]byte{byte(len(ad))}, ad...), p...), nil
}

func (aadBox) Open(s, ad []byte) ([]byte, error) {
	if len(s) < 1+len(ad) || int(s[0]) != len(ad) || string(s[1:1+len(ad)]) != string(ad) {
		return nil, errors.New("wrong additional data")
	}
	return s[1+len(ad):], nil
}

func TestChallengeBoundToDeviceAndTime(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Box: aadBox{}, Now: func() time.Time { return now }})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: now, NotAfter: now.Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	ch, err := s.newChallenge("PK000000001", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if !ch.ExpiresAt.Equal(now.Add(ChallengeTTL)) {
		t.Fatalf("expires %v", ch.ExpiresAt)
	}
	sign := func(msg string) string {
		d := sha256.Sum256([]byte(msg))
		sig, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
		return base64.StdEncoding.EncodeToString(sig)
	}
	if err := s.checkChallenge(cert, "PK000000001", "dev", ch.Challenge, sign(ch.Challenge)); err != nil {
		t.Fatalf("good proof refused: %v", err)
	}
	for name, tc := range map[string]struct{ pk, dn, ch, sig string }{
		"other device":  {"PK000000001", "dev2", ch.Challenge, sign(ch.Challenge)},
		"other product": {"PK000000002", "dev", ch.Challenge, sign(ch.Challenge)},
		"not issued":    {"PK000000001", "dev", "AAAA", sign("AAAA")},
		"no signature":  {"PK000000001", "dev", ch.Challenge, ""},
		"bad base64":    {"PK000000001", "dev", ch.Challenge, "%%%"},
		"other message": {"PK000000001", "dev", ch.Challenge, sign("other")},
	} {
		if err := s.checkChallenge(cert, tc.pk, tc.dn, tc.ch, tc.sig); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	now = now.Add(ChallengeTTL + time.Millisecond)
	if err := s.checkChallenge(cert, "PK000000001", "dev", ch.Challenge, sign(ch.Challenge)); !errors.Is(err, ErrProofOfPossession) {
		t.Fatalf("expired challenge: %v", err)
	}
}

// FuzzCheckChallenge: no challenge and signature a client makes up passes
// (or crashes the check) without the key.
func FuzzCheckChallenge(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Box: aadBox{}, Now: func() time.Time { return now }})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: now, NotAfter: now.Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	ch, _ := s.newChallenge("PK000000001", "dev")
	f.Add(ch.Challenge, "MEUCIQ==")
	f.Add("", "")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAA")
	f.Fuzz(func(t *testing.T, challenge, sig string) {
		if err := s.checkChallenge(cert, "PK000000001", "dev", challenge, sig); err == nil {
			t.Fatalf("accepted %q / %q", challenge, sig)
		}
	})
}
