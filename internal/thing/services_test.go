package thing

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/alink/alinktest"
	"github.com/corral-iot/corral/internal/tsl"
)

// ask sends one request through a handler and returns the single reply.
func ask(t *testing.T, s *Service, w *fzWorld, h handler, rest, payload string) []byte {
	t.Helper()
	topic := "/sys/" + fzPK + "/" + fzDN + "/" + rest
	n := len(w.published)
	s.serve(h)(topic, []byte(payload))
	var reply []byte
	for _, m := range w.published[n:] {
		switch {
		case m.topic == topic+"_reply" && reply == nil:
			reply = m.payload
		case m.topic == "/ext/error/"+fzPK+"/"+fzDN:
		default:
			t.Fatalf("published %s on %s", m.payload, m.topic)
		}
	}
	if reply == nil {
		t.Fatalf("no reply: %+v", w.published[n:])
	}
	return reply
}

func TestDSLTemplate(t *testing.T) {
	s, w := goldenService(t)
	for _, tt := range []struct{ name, rest, payload string }{
		{"dsltemplate_get_reply", "thing/dsltemplate/get", `{"id":"1","version":"1.0","params":{},"method":"thing.dsltemplate.get"}`},
		{"dsltemplate_get_reply_string_params", "thing/dsltemplate/get", `{"id":"1","version":"1.0","params":"{}","method":"thing.dsltemplate.get"}`},
		{"dynamictsl_get_reply", "thing/dynamicTsl/get", `{"id":"2","version":"1.0","params":{"nodes":["type","identifier"],"addDefault":false},"method":"thing.dynamicTsl.get"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := ask(t, s, w, s.dslTemplate, tt.rest, tt.payload)
			golden := strings.TrimSuffix(tt.name, "_string_params")
			alinktest.Golden(t, golden, b)
			var rep struct {
				Code int
				Data json.RawMessage
			}
			json.Unmarshal(b, &rep)
			m, err := tsl.Parse(rep.Data)
			if rep.Code != 200 || err != nil {
				t.Fatalf("reply %s: %v", b, err)
			}
			if _, ok := m.Property("Temperature"); !ok {
				t.Fatal("the TSL in the reply lacks Temperature")
			}
			if !strings.Contains(string(rep.Data), `"productKey":"`+fzPK+`"`) {
				t.Fatalf("profile lacks the productKey: %s", rep.Data)
			}
		})
	}
	w.model = nil
	s.models.Delete(fzPK)
	b := ask(t, s, w, s.dslTemplate, "thing/dsltemplate/get", `{"id":"3","params":{}}`)
	alinktest.Golden(t, "dsltemplate_get_reply_no_model", b)
}
