package thing

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/alink/alinktest"
	"github.com/corral-iot/corral/internal/registry"
)

func TestDeviceInfo(t *testing.T) {
	s, w := goldenService(t)
	for _, tt := range []struct {
		name, rest, payload string
		code                int
		attrs               string
	}{
		{"deviceinfo_update_reply", "thing/deviceinfo/update", `{"id":"1","version":"1.0","params":[{"attrKey":"site","attrValue":"lab"},{"attrKey":"floor","attrValue":3}],"method":"thing.deviceinfo.update"}`, 200, `{"floor":"3","site":"lab"}`},
		{"deviceinfo_delete_reply", "thing/deviceinfo/delete", `{"id":"2","version":"1.0","params":[{"attrKey":"floor"},{"attrKey":"absent"}],"method":"thing.deviceinfo.delete"}`, 200, `{"site":"lab"}`},
		{"deviceinfo_update_reply_bad_key", "thing/deviceinfo/update", `{"id":"3","params":[{"attrKey":"a b","attrValue":"x"}]}`, 460, `{"site":"lab"}`},
		{"deviceinfo_update_reply_long_value", "thing/deviceinfo/update", `{"id":"4","params":[{"attrKey":"k","attrValue":"` + strings.Repeat("v", 1025) + `"}]}`, 460, `{"site":"lab"}`},
		{"deviceinfo_update_reply_no_value", "thing/deviceinfo/update", `{"id":"5","params":[{"attrKey":"k"}]}`, 460, `{"site":"lab"}`},
		{"deviceinfo_update_reply_twice", "thing/deviceinfo/update", `{"id":"6","params":[{"attrKey":"k","attrValue":"1"},{"attrKey":"k","attrValue":"2"}]}`, 460, `{"site":"lab"}`},
		{"deviceinfo_update_reply_object", "thing/deviceinfo/update", `{"id":"7","params":{"attrKey":"k","attrValue":"1"}}`, 460, `{"site":"lab"}`},
		{"deviceinfo_update_reply_empty", "thing/deviceinfo/update", `{"id":"8","params":[]}`, 460, `{"site":"lab"}`},
		{"deviceinfo_update_reply_value_object", "thing/deviceinfo/update", `{"id":"9","params":[{"attrKey":"k","attrValue":{}}]}`, 460, `{"site":"lab"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := ask(t, s, w, s.deviceInfo, tt.rest, tt.payload)
			alinktest.Golden(t, tt.name, b)
			var rep struct{ Code int }
			json.Unmarshal(b, &rep)
			got, _ := json.Marshal(w.attrs)
			if rep.Code != tt.code || string(got) != tt.attrs {
				t.Fatalf("code %d, attributes %s: %s", rep.Code, got, b)
			}
		})
	}
	// Over the registry's limit of attributes in all.
	w.attrs = map[string]string{}
	var many []string
	for i := 0; i < 64; i++ {
		many = append(many, `{"attrKey":"k`+itoa(int64(i))+`","attrValue":"v"}`)
	}
	if b := ask(t, s, w, s.deviceInfo, "thing/deviceinfo/update", `{"id":"10","params":[`+strings.Join(many, ",")+`]}`); !strings.Contains(string(b), `"code":200`) {
		t.Fatalf("64 attributes: %s", b)
	}
	if b := ask(t, s, w, s.deviceInfo, "thing/deviceinfo/update", `{"id":"11","params":[{"attrKey":"one_more","attrValue":"v"}]}`); !strings.Contains(string(b), `"code":460`) || len(w.attrs) != 64 {
		t.Fatalf("65th attribute: %s", b)
	}
}

// FuzzDeviceInfo: one reply per request; the attributes always pass the
// registry's rules.
func FuzzDeviceInfo(f *testing.F) {
	for _, s := range []string{`{"id":"1","params":[{"attrKey":"site","attrValue":"lab"}]}`, `{"id":"2","params":[{"attrKey":"site"}]}`,
		`{"id":"3","params":"[{\"attrKey\":\"a\",\"attrValue\":1}]"}`, `{"id":"4","params":[{}]}`, `x`} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(1), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		w := &fzWorld{}
		s := New(Options{Broker: w, Registry: w})
		rest := []string{"thing/deviceinfo/update", "thing/deviceinfo/delete"}[which%2]
		s.serve(s.deviceInfo)("/sys/"+fzPK+"/"+fzDN+"/"+rest, payload)
		if len(w.published) > 1 {
			t.Fatalf("%d replies", len(w.published))
		}
		if err := registry.ValidateAttributes("attributes", w.attrs); err != nil {
			t.Fatalf("attributes %v: %v", w.attrs, err)
		}
	})
}
