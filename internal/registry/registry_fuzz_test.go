package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// maxEchoed is the longest run of input bytes an error may repeat.
const maxEchoed = 64

func echoes(msg string, in []byte) bool {
	if len(in) > 4096 {
		in = in[:4096]
	}
	// A clipped value may sit between quotes that match the input too.
	for i := 0; i+maxEchoed+8 < len(in); i++ {
		if strings.Contains(msg, string(in[i:i+maxEchoed+9])) {
			return true
		}
	}
	return false
}

// fuzzCertPEM makes a self-signed certificate as a device (or, with isCA,
// a CA) would present it.
func fuzzCertPEM(tb testing.TB, cn, serialName string, isCA bool) []byte {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x1234abcd), Subject: pkix.Name{CommonName: cn, SerialNumber: serialName},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(2000000000, 0), IsCA: isCA, BasicConstraintsValid: isCA}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// FuzzParseCertificatePEM: an accepted certificate's fingerprint is the
// lower-case hex SHA-256 of its DER, the same DER re-encoded parses to the
// same fingerprint, and a DeviceName derived from it is a valid one; a
// refusal names the certificate field and repeats at most maxEchoed bytes
// of what was sent.
func FuzzParseCertificatePEM(f *testing.F) {
	dev := fuzzCertPEM(f, "dev-0001", "", false)
	ca := fuzzCertPEM(f, "corral test CA", "SN:0042", true)
	f.Add(dev)
	f.Add(ca)
	f.Add(append(append([]byte("junk before\n"), dev...), ca...))
	f.Add([]byte(strings.Replace(string(dev), "CERTIFICATE", "PRIVATE KEY", 2)))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n" + strings.Repeat("QUJD", 40) + "\n-----END CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, fp, err := ParseCertificatePEM(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "certificate" || !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not name the certificate field", err)
			}
			if echoes(err.Error(), data) {
				t.Fatalf("error %q repeats over %d bytes of the PEM", err, maxEchoed)
			}
			return
		}
		block, _ := pem.Decode(data)
		sum := sha256.Sum256(block.Bytes)
		if fp != hex.EncodeToString(sum[:]) || fp != strings.ToLower(fp) || len(fp) != 64 {
			t.Fatalf("fingerprint %q", fp)
		}
		again := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		cert2, fp2, err := ParseCertificatePEM(again)
		if err != nil || fp2 != fp || !cert2.Equal(cert) {
			t.Fatalf("re-encoded certificate: %q, %v", fp2, err)
		}
		for _, from := range []string{"cn", "serial"} {
			name, err := DeviceNameFromCert(cert, from)
			if err == nil && ValidateDeviceName(name) != nil {
				t.Fatalf("DeviceNameFromCert(%s) = %q, not a DeviceName", from, name)
			}
		}
	})
}

// FuzzValidators: what the name and text validators accept is what they
// document (ProductKey: 11 letters and digits; attribute keys: 1 to 64 of
// letters, digits and _.-; text: valid UTF-8 without control characters,
// at most max characters), and a refusal names its field without repeating
// over maxEchoed bytes of the value.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{"a1PK0000001", "a1PK000000", "a1PK_000001", "a1PK00000012", "site", "a.b-c_d", "a b", "thermostat",
		"caf\u00e9 \u2603", "tab\there", "\x7f", "\xff\xfe", strings.Repeat("é", 65), ""} {
		f.Add(s, 64, true)
	}
	f.Fuzz(func(t *testing.T, s string, max int, required bool) {
		if max < 0 || max > 2000 {
			return
		}
		named := func(err error, field string) {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != field {
				t.Fatalf("%v does not name %s", err, field)
			}
			if echoes(err.Error(), []byte(s)) {
				t.Fatalf("error %q repeats over %d bytes of the value", err, maxEchoed)
			}
		}
		if err := ValidateProductKey(s); err != nil {
			named(err, "productKey")
		} else if len(s) != ProductKeyLen || strings.Trim(s, base62) != "" {
			t.Fatalf("ProductKey %q accepted", s)
		}
		if err := ValidateAttrKey("attributes", s); err != nil {
			named(err, "attributes")
		} else if s == "" || len(s) > MaxAttrKeyLen || strings.Trim(s, base62+"_.-") != "" {
			t.Fatalf("attribute key %q accepted", s)
		}
		if err := validateText("name", s, max, required); err != nil {
			named(err, "name")
		} else {
			if required && s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
				t.Fatalf("text %q accepted (max %d, required %v)", s, max, required)
			}
			for _, r := range s {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("text %q with control character accepted", s)
				}
			}
		}
	})
}
