package thing

import (
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink/alinktest"
)

func TestNTP(t *testing.T) {
	for _, tt := range []struct {
		name, topic, payload, golden string
	}{
		{"string", "/ext/ntp/" + fzPK + "/" + fzDN + "/request", `{"deviceSendTime":"1700000000000"}`, "ntp_response"},
		{"number", "/ext/ntp/" + fzPK + "/" + fzDN + "/request", `{"deviceSendTime":1700000000000}`, "ntp_response"},
		{"sub-device through a gateway", "/ext/ntp/a1SubPK0001/sub01/request", `{"deviceSendTime":"1700000000000","extra":1}`, "ntp_response"},
		{"missing", "/ext/ntp/" + fzPK + "/" + fzDN + "/request", `{}`, ""},
		{"not a number", "/ext/ntp/" + fzPK + "/" + fzDN + "/request", `{"deviceSendTime":"soon"}`, ""},
		{"negative", "/ext/ntp/" + fzPK + "/" + fzDN + "/request", `{"deviceSendTime":-1}`, ""},
		{"too long", "/ext/ntp/" + fzPK + "/" + fzDN + "/request", `{"deviceSendTime":"123456789012345678901"}`, ""},
		{"broken", "/ext/ntp/" + fzPK + "/" + fzDN + "/request", `{"deviceSendTime":"1`, ""},
		{"response topic", "/ext/ntp/" + fzPK + "/" + fzDN + "/response", `{"deviceSendTime":"1"}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fzWorld{}
			at := time.UnixMilli(1700000000050)
			s := New(Options{Broker: w, Registry: w, Now: func() time.Time { at = at.Add(time.Millisecond); return at }})
			s.onNTP(tt.topic, []byte(tt.payload))
			if tt.golden == "" {
				if len(w.published) != 0 {
					t.Fatalf("answered %s", w.published[0].payload)
				}
				return
			}
			want := tt.topic[:len(tt.topic)-len("request")] + "response"
			if len(w.published) != 1 || w.published[0].topic != want {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.golden, w.published[0].payload)
		})
	}
}

func FuzzNTPRequest(f *testing.F) {
	for _, s := range []string{`{"deviceSendTime":"1700000000000"}`, `{"deviceSendTime":1}`, `{"deviceSendTime":"1e3"}`, `{}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := parseNTPRequest(b)
		if !ok {
			return
		}
		if v == "" || len(v) > 20 {
			t.Fatalf("deviceSendTime %q", v)
		}
		for _, c := range v {
			if c < '0' || c > '9' {
				t.Fatalf("deviceSendTime %q", v)
			}
		}
	})
}
