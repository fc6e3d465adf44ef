package transit_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/distribution/transit"
)

func mustKey(t testing.TB) transit.Key {
	t.Helper()
	k, err := transit.NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	dst, other := mustKey(t), mustKey(t)
	secret := []byte("hG7s0Zc4q1JpY9mXo2Lw8vRb3Tn5KfAe")
	aad := transit.AAD("ap-southeast-1", "a1pk", "dev-1")
	sealed, err := transit.Seal(rand.Reader, dst.Public(), secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the secret is in clear in the sealed value")
	}
	got, err := dst.Open(sealed, aad)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, _ := transit.Seal(rand.Reader, dst.Public(), secret, aad)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one secret are equal: the ephemeral key is not fresh")
	}
	// A parsed copy of the stored private key opens it too.
	k2, err := transit.ParseKey(dst.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open(sealed, aad); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("parsed key Open = %q, %v", got, err)
	}

	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	badVersion := bytes.Clone(sealed)
	badVersion[0] = 9
	for _, tc := range []struct {
		name   string
		key    transit.Key
		sealed []byte
		aad    []byte
	}{
		{"other instance's key", other, sealed, aad},
		{"other device", dst, sealed, transit.AAD("ap-southeast-1", "a1pk", "dev-2")},
		{"other destination id", dst, sealed, transit.AAD("eu-central-1", "a1pk", "dev-1")},
		{"altered", dst, flipped, aad},
		{"unknown version", dst, badVersion, aad},
		{"truncated", dst, sealed[:20], aad},
		{"empty", dst, nil, aad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.key.Open(tc.sealed, tc.aad)
			if !errors.Is(err, transit.ErrInvalid) {
				t.Fatalf("Open = %v, want ErrInvalid", err)
			}
			if strings.Contains(err.Error(), string(secret)) {
				t.Fatal("the error names the secret")
			}
		})
	}
}

func TestSealRefusesBadInput(t *testing.T) {
	dst := mustKey(t)
	for _, tc := range []struct {
		name      string
		pub, data []byte
	}{
		{"short public key", dst.Public()[:31], []byte("s")},
		{"low-order public key", make([]byte, 32), []byte("s")},
		{"oversized secret", dst.Public(), make([]byte, transit.MaxPlaintext+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := transit.Seal(rand.Reader, tc.pub, tc.data, nil); !errors.Is(err, transit.ErrInvalid) {
				t.Fatalf("Seal = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := transit.ParseKey([]byte("short")); !errors.Is(err, transit.ErrInvalid) {
		t.Fatalf("ParseKey = %v, want ErrInvalid", err)
	}
}

// FuzzOpen: no sealed input panics, and none but a real seal opens.
func FuzzOpen(f *testing.F) {
	dst := mustKey(f)
	aad := transit.AAD("i", "pk", "dn")
	good, err := transit.Seal(rand.Reader, dst.Public(), []byte("secret"), aad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{1})
	f.Add(make([]byte, 49))
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := dst.Open(b, aad)
		if err == nil && (!bytes.Equal(b, good) || string(pt) != "secret") {
			t.Fatalf("opened a forged value")
		}
	})
}
