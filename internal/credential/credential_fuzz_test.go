package credential

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
	"testing"
)

// maxEchoed is the longest run of input bytes an error may repeat: enough
// to name a key or a parameter, too short to carry a secret or a payload.
const maxEchoed = 64

// echoes reports whether msg repeats more than maxEchoed consecutive bytes
// of in.
func echoes(msg, in string) bool {
	if len(in) > 4096 {
		in = in[:4096]
	}
	// A clipped value may sit between quotes that match the input too.
	for i := 0; i+maxEchoed+8 < len(in); i++ {
		if strings.Contains(msg, in[i:i+maxEchoed+9]) {
			return true
		}
	}
	return false
}

// formatClientID writes a parsed clientId back, parameters in key order.
func formatClientID(c ClientID) string {
	if len(c.Params) == 0 && c.SecureMode == "" && c.Timestamp == "" && c.AuthType == "" && c.Random == "" {
		return c.ID
	}
	keys := make([]string, 0, len(c.Params))
	for k := range c.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(c.ID + "|")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + c.Params[k])
	}
	b.WriteByte('|')
	return b.String()
}

// FuzzClientIDRoundTrip: an accepted clientId written back re-parses to the
// same fields; the signed id never holds '|'; a refusal wraps a sentinel and
// repeats at most maxEchoed bytes of the clientId.
func FuzzClientIDRoundTrip(f *testing.F) {
	for _, s := range []string{
		// Link SDK C v4 (core_auth.c), with the empty last item.
		"a1PK.dev1|timestamp=2524608000000,_ss=1,_v=sdk-c-4.1.0,securemode=2,signmethod=hmacsha256,ext=3,|",
		// Link SDK C v3, thing-model and classic builds.
		"a1X2bEnP82z.example1|timestamp=2524608000000,securemode=2,signmethod=hmacsha256,v=20,a=sdk-c-3.0.1|",
		"a1X2bEnP82z.example1|timestamp=2524608000000,securemode=3,signmethod=hmacsha256,gw=0,ext=0,a=sdk-c-3.0.1|",
		// Dynamic registration and the whitelist flow (specs/alink-device-protocol.md).
		"dev1.a1PK|authType=register,random=123,securemode=2,signmethod=hmacmd5|",
		"dev1.a1PK|authType=regnwl,random=8Ygb7ULYh53B6OA,securemode=-2,signmethod=hmacsha1|",
		"dev1.a1PK|authType=connwl,securemode=-2,_ss=1|",
		"plain-id", "x|signmethod=HmacSHA256|", "x|a=1,a=2|", "x|=1|", "x|a=1|b", "|", "||", "a|b=|",
		"x|" + strings.Repeat("k", 100) + "=1," + strings.Repeat("k", 100) + "=2|",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseClientID(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedSignMethod) {
				t.Fatalf("ParseClientID(%q): %v wraps no sentinel", s, err)
			}
			if echoes(err.Error(), s) {
				t.Fatalf("error %q repeats over %d bytes of the clientId", err, maxEchoed)
			}
			return
		}
		if len(s) > MaxClientIDLen || strings.Contains(c.ID, "|") {
			t.Fatalf("accepted %q as %+v", s, c)
		}
		if len(c.Params) > maxParams {
			t.Fatalf("accepted %d parameters", len(c.Params))
		}
		back := formatClientID(c)
		c2, err := ParseClientID(back)
		if err != nil {
			t.Fatalf("%q parsed, but its rewrite %q does not: %v", s, back, err)
		}
		if c2.ID != c.ID || c2.SecureMode != c.SecureMode || c2.SignMethod != c.SignMethod || c2.Timestamp != c.Timestamp ||
			c2.AuthType != c.AuthType || c2.Random != c.Random || len(c2.Params) != len(c.Params) {
			t.Fatalf("%q → %+v, rewritten %q → %+v", s, c, back, c2)
		}
		for k, v := range c.Params {
			if c2.Params[k] != v {
				t.Fatalf("param %q: %q then %q", k, v, c2.Params[k])
			}
		}
	})
}

// FuzzMQTTSign: a device's own CONNECT signature (in either hex case)
// verifies and a changed content does not; signatures are the method's
// length of lower-case hex.
func FuzzMQTTSign(f *testing.F) {
	f.Add("hmacsha256", "ga7XA6KdlEeiPXQPpRbAjOZXwG8ydgSe", "a1X2bEnP82z.example1", "example1", "a1X2bEnP82z", "2524608000000")
	f.Add("hmacsha1", "secret", "id", "dn", "pk", "")
	f.Add("HmacMD5", "", "", "", "", "")
	f.Add("rsa", "s", "id", "dn", "pk", "1")
	f.Fuzz(func(t *testing.T, method, secret, id, dn, pk, ts string) {
		content := MQTTSignContent(id, dn, pk, ts)
		if !strings.HasPrefix(content, "clientId"+id+"deviceName"+dn+"productKey"+pk) {
			t.Fatalf("content %q", content)
		}
		sig, err := Sign(method, secret, content)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedSignMethod) || VerifyPassword(method, secret, content, "") {
				t.Fatalf("Sign(%q): %v", method, err)
			}
			return
		}
		want := map[string]int{"hmacsha256": 64, "hmacsha1": 40, "hmacmd5": 32}[strings.ToLower(method)]
		if len(sig) != want || strings.ToLower(sig) != sig {
			t.Fatalf("%s signature %q", method, sig)
		}
		if _, err := hex.DecodeString(sig); err != nil {
			t.Fatalf("signature %q is not hex", sig)
		}
		if !VerifyPassword(method, secret, content, sig) || !VerifyPassword(method, secret, content, strings.ToUpper(sig)) {
			t.Fatal("own signature refused")
		}
		if VerifyPassword(method, secret, content+"x", sig) || VerifyPassword(method, secret+"x", content, sig) {
			t.Fatal("signature verified for other content or another secret")
		}
	})
}

// FuzzParseKey: an accepted key is 32 bytes and any 32-byte key round-trips
// through its hex and base64 spellings; a refusal is ErrBadKey alone, so the
// key material never reaches an error.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "__-_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "00", "not a key", "",
	} {
		f.Add(s, []byte("0123456789abcdef0123456789abcdef"))
	}
	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		k, err := ParseKey(s)
		if err != nil {
			if err != ErrBadKey {
				t.Fatalf("ParseKey: %v, want ErrBadKey itself", err)
			}
		} else if len(k) != KeySize {
			t.Fatalf("ParseKey(%q) gave %d bytes", s, len(k))
		}
		if len(raw) != KeySize {
			return
		}
		for _, spelled := range []string{hex.EncodeToString(raw), strings.ToUpper(hex.EncodeToString(raw)),
			base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw), " " + base64.URLEncoding.EncodeToString(raw) + "\n"} {
			got, err := ParseKey(spelled)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("ParseKey(%q) = %x, %v; want %x", spelled, got, err, raw)
			}
		}
	})
}

// FuzzBoxOpen: whatever bytes a store hands back, Open either returns what
// Seal sealed under the same additional data or ErrOpen; it never panics.
func FuzzBoxOpen(f *testing.F) {
	box, err := NewBox(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		f.Fatal(err)
	}
	sealed, _ := box.Seal([]byte("device secret"), []byte("pk/dn"))
	f.Add(sealed, []byte("pk/dn"), []byte("device secret"))
	f.Add([]byte{1}, []byte(""), []byte(""))
	f.Add([]byte{}, []byte("x"), []byte("y"))
	f.Fuzz(func(t *testing.T, blob, ad, pt []byte) {
		if got, err := box.Open(blob, ad); err != nil && err != ErrOpen {
			t.Fatalf("Open: %v, want ErrOpen", err)
		} else if err == nil && (string(got) != "device secret" || string(ad) != "pk/dn") {
			t.Fatalf("opened %x, which Seal never made, to %q", blob, got)
		}
		s, err := box.Seal(pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		got, err := box.Open(s, ad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip: %q, %v", got, err)
		}
		if _, err := box.Open(s, append(append([]byte{}, ad...), 0)); err != ErrOpen {
			t.Fatal("opened under other additional data")
		}
		s[len(s)-1] ^= 1
		if _, err := box.Open(s, ad); err != ErrOpen {
			t.Fatal("opened a tampered value")
		}
	})
}
