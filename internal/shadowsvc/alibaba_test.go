package shadowsvc

import (
	"strings"
	"testing"
	"time"
)

func TestParseAlibabaTopic(t *testing.T) {
	for _, c := range []struct {
		topic  string
		pk, dn string
		ok     bool
	}{
		{"/shadow/update/pk/dn", "pk", "dn", true},
		{"/shadow/update/pk/dn/x", "", "", false},
		{"/shadow/update/pk", "", "", false},
		{"/shadow/update//dn", "", "", false},
		{"/shadow/update/pk/", "", "", false},
		{"/shadow/get/pk/dn", "", "", false},
		{"$aws/things/t/shadow/update", "", "", false},
	} {
		pk, dn, ok := parseAlibabaTopic(c.topic)
		if ok != c.ok || pk != c.pk || dn != c.dn {
			t.Errorf("parseAlibabaTopic(%q) = %q %q %v", c.topic, pk, dn, ok)
		}
	}
}

func TestAlibabaSince(t *testing.T) {
	for payload, want := range map[string]int64{
		`{"method":"get","sinceVersion":4}`:                                 4,
		`{"method":"get","sinceVersion":0}`:                                 0,
		`{"method":"get"}`:                                                  -1,
		`{"method":"update","sinceVersion":4,"state":{"reported":{"a":1}}}`: -1,
		`{"method":"get","sinceVersion":-4}`:                                -1,
		`{"method":"get","sinceVersion":"4"}`:                               -1,
		`{"method":"get","sinceVersion":4.5}`:                               -1,
		`nonsense`:                                                          -1,
	} {
		v, ok := alibabaSince([]byte(payload))
		if (want < 0) == ok || (ok && v != want) {
			t.Errorf("alibabaSince(%s) = %d %v, want %d", payload, v, ok, want)
		}
	}
}

// FuzzAlibabaSince: only a get with a version in range is taken.
func FuzzAlibabaSince(f *testing.F) {
	f.Add([]byte(`{"method":"get","sinceVersion":4}`))
	f.Add([]byte(`{"method":"get","sinceVersion":1e3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := alibabaSince(b)
		if ok && (v < 0 || !strings.Contains(string(b), "get")) {
			t.Fatalf("%q read as since %d", b, v)
		}
	})
}

func TestAlibabaFailure(t *testing.T) {
	got := string(alibabaFailure(500, "server error", time.Unix(1700000000, 0)))
	want := `{"method":"reply","payload":{"status":"error","content":{"errorcode":"500","errormessage":"server error"}},"timestamp":1700000000}`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}
