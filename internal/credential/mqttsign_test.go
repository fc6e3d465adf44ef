package credential

import (
	"errors"
	"strings"
	"testing"
)

func TestParseClientID(t *testing.T) {
	tests := []struct {
		in                   string
		id, mode, method, ts string
		auth                 string
		err                  error
	}{
		// Link SDK C v4 (core_auth.c) style, with the empty last item.
		{"a1PK.dev1|timestamp=2524608000000,_ss=1,_v=sdk-c-3.0.1,securemode=2,signmethod=hmacsha256,ext=3,|", "a1PK.dev1", "2", "hmacsha256", "2524608000000", "", nil},
		// The same without the empty item, signed with SHA-1.
		{"a1PK.dev1|timestamp=2524608000000,_ss=1,_v=sdk-c-4.1.0,securemode=3,signmethod=hmacsha1,ext=3|", "a1PK.dev1", "3", "hmacsha1", "2524608000000", "", nil},
		{"dev1.a1PK|authType=register,random=123,securemode=2,signmethod=hmacmd5|", "dev1.a1PK", "2", "hmacmd5", "", "register", nil},
		{"plain-id", "plain-id", "", "hmacsha256", "", "", nil},
		{"x|signmethod=HmacSHA256|", "x", "", "hmacsha256", "", "", nil},
		{"x|securemode=3,signmethod|", "", "", "", "", "", ErrMalformed},
		{"x|securemode=3", "", "", "", "", "", ErrMalformed},
		{"x|a=1|b", "", "", "", "", "", ErrMalformed},
		{"x|a=1,,b=2|", "", "", "", "", "", ErrMalformed},
		{"x|a=1,a=2|", "", "", "", "", "", ErrMalformed},
		{"x|=1|", "", "", "", "", "", ErrMalformed},
		{"x|signmethod=rsa|", "", "", "", "", "", ErrUnsupportedSignMethod},
		{strings.Repeat("x", 257), "", "", "", "", "", ErrMalformed},
	}
	for _, tt := range tests {
		c, err := ParseClientID(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("ParseClientID(%.40q) err = %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || c.ID != tt.id || c.SecureMode != tt.mode || c.SignMethod != tt.method || c.Timestamp != tt.ts || c.AuthType != tt.auth {
			t.Errorf("ParseClientID(%q) = %+v, %v", tt.in, c, err)
		}
	}
}

func TestParseUsername(t *testing.T) {
	for in, ok := range map[string]bool{"dev&pk": true, "dev&": false, "&pk": false, "devpk": false, "a&b&c": false, "": false} {
		_, _, err := ParseUsername(in)
		if (err == nil) != ok {
			t.Errorf("ParseUsername(%q) = %v", in, err)
		}
	}
}

// Golden vectors: computed once with
//
//	printf '%s' "$content" | openssl dgst -<alg> -hmac "$secret"
func TestSignGolden(t *testing.T) {
	content := MQTTSignContent("a1PK.dev1", "dev1", "a1PK", "2524608000000")
	if content != "clientIda1PK.dev1deviceNamedev1productKeya1PKtimestamp2524608000000" {
		t.Fatalf("content %q", content)
	}
	if c := MQTTSignContent("id", "dn", "pk", ""); c != "clientIdiddeviceNamednproductKeypk" {
		t.Fatalf("no timestamp: %q", c)
	}
	golden := map[string]string{
		"hmacsha256": "9f7ce5f1def39255a2190f764e7ab054533d066201ff5410b4bf011a179a32e2",
		"hmacsha1":   "837f9d1e50a7bec8ff2d1d0e74f3a1aa783e4003",
		"hmacmd5":    "c2768b1274ec50b4ab4c5d680386055e",
	}
	for m, want := range golden {
		got, err := Sign(m, "secret", content)
		if got != want {
			t.Fatalf("%s = %s, want %s", m, got, want)
		}
		if err != nil || !VerifyPassword(m, "secret", content, got) || !VerifyPassword(m, "secret", content, strings.ToUpper(got)) {
			t.Fatalf("%s: %s %v", m, got, err)
		}
		if VerifyPassword(m, "other", content, got) || VerifyPassword(m, "secret", content+"x", got) || VerifyPassword(m, "secret", content, got[:len(got)-1]) {
			t.Fatalf("%s: wrong input verified", m)
		}
	}
}

// TestLinkSDKExample checks the signature against the example triple of
// iotkit-embedded v3 (src/dev_sign/examples/dev_sign_example.c), whose
// dev_sign_mqtt.c signs "clientId{pk}.{dn}deviceName{dn}productKey{pk}
// timestamp2524608000000" with HMAC-SHA256 and sends the hex in upper case
// (Link SDK C v4's core_auth.c does the same through core_hex2str(…, 0)).
// The expected value was computed with
//
//	printf '%s' "$content" | openssl dgst -sha256 -hmac ga7XA6KdlEeiPXQPpRbAjOZXwG8ydgSe
func TestLinkSDKExample(t *testing.T) {
	const pk, dn, secret = "a1X2bEnP82z", "example1", "ga7XA6KdlEeiPXQPpRbAjOZXwG8ydgSe"
	for _, raw := range []string{
		// v3, thing-model build (DEVICE_MODEL_ENABLED): timestamp, securemode, signmethod, v, a.
		pk + "." + dn + "|timestamp=2524608000000,securemode=2,signmethod=hmacsha256,v=20,a=sdk-c-3.0.1|",
		// v3, classic build: gw and ext instead of v.
		pk + "." + dn + "|timestamp=2524608000000,securemode=3,signmethod=hmacsha256,gw=0,ext=0,a=sdk-c-3.0.1|",
		// v4: core_auth_mqtt_clientid with no extension: an empty last item.
		pk + "." + dn + "|timestamp=2524608000000,_ss=1,_v=sdk-c-4.1.0,securemode=2,signmethod=hmacsha256,ext=3,|",
	} {
		c, err := ParseClientID(raw)
		if err != nil || c.ID != pk+"."+dn || c.Timestamp != "2524608000000" || c.SignMethod != "hmacsha256" {
			t.Fatalf("ParseClientID(%q) = %+v, %v", raw, c, err)
		}
		content := MQTTSignContent(c.ID, dn, pk, c.Timestamp)
		const sdk = "B8CE8F1D706DD3C61D13BFD9855DEF7E321B785084CA9C93F0169A2B46785DD2"
		if !VerifyPassword(c.SignMethod, secret, content, sdk) {
			t.Fatalf("%q: the SDK's password does not verify", raw)
		}
	}
}

func FuzzParseClientID(f *testing.F) {
	for _, s := range []string{"a.b|securemode=2,signmethod=hmacsha256,timestamp=1,|", "x", "x|a=1|", "|", "||", "a|b=|"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseClientID(s)
		if err != nil {
			return
		}
		if len(s) > MaxClientIDLen || strings.Contains(c.ID, "|") {
			t.Fatalf("accepted %q as %+v", s, c)
		}
		if _, err := hasher(c.SignMethod); err != nil {
			t.Fatalf("accepted signmethod %q", c.SignMethod)
		}
	})
}

func FuzzParseUsername(f *testing.F) {
	f.Add("dev&pk")
	f.Add("&&")
	f.Fuzz(func(t *testing.T, u string) {
		dn, pk, err := ParseUsername(u)
		if err == nil && (dn+"&"+pk != u || dn == "" || pk == "") {
			t.Fatalf("ParseUsername(%q) = %q, %q", u, dn, pk)
		}
	})
}

func FuzzVerifyPassword(f *testing.F) {
	f.Add("hmacsha256", "secret", "content", "00")
	f.Fuzz(func(t *testing.T, method, secret, content, password string) {
		ok := VerifyPassword(method, secret, content, password)
		want, err := Sign(method, secret, content)
		if ok && (err != nil || !strings.EqualFold(want, password)) {
			t.Fatalf("verified a wrong password")
		}
		if err == nil && !VerifyPassword(method, secret, content, want) {
			t.Fatal("own signature refused")
		}
	})
}

// TestParseClientIDKeepsFlags: every flag a Link SDK sends stays in
// Params for the broker (_ss server-side subscription, gw gateway, ext=3
// v4 RRPC), unknown ones included.
func TestParseClientIDKeepsFlags(t *testing.T) {
	c, err := ParseClientID("a1PK.gw|securemode=3,signmethod=hmacsha256,timestamp=1,_v=sdk-c-3.2.0,lan=C,_ss=1,gw=1,ext=3,future=x|")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"_ss": "1", "gw": "1", "ext": "3", "lan": "C", "_v": "sdk-c-3.2.0", "future": "x"} {
		if c.Params[k] != v {
			t.Errorf("Params[%q] = %q, want %q", k, c.Params[k], v)
		}
	}
}
