package thing

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink/alinktest"
)

// TestBatchPackHistory: each post is checked against the model like a
// property post and stored at the device's time; sub-devices must be the
// gateway's.
func TestBatchPackHistory(t *testing.T) {
	type want struct {
		code      int
		saved     map[string]string // "pk/dn identifier" → value@ms
		extErrors int
	}
	sub := fzPK + "/sub-01"
	own := fzPK + "/" + fzDN
	for _, tt := range []struct {
		name, rest, payload string
		want                want
	}{
		{"batch_post_reply", "thing/event/property/batch/post",
			`{"id":"1","version":"1.0","params":{"properties":{"Temperature":[{"value":21.5,"time":1700000000000},{"value":22.5,"time":1700000060000}],"FanLevel":[{"value":2,"time":1700000000000}]},"events":{"Overheat":[{"value":{"Temperature":99},"time":1700000000000}]}},"method":"thing.event.property.batch.post"}`,
			want{200, map[string]string{own + " Temperature": "22.5@1700000060000", own + " FanLevel": "2@1700000000000"}, 0}},
		{"batch_post_reply_tsl_error", "thing/event/property/batch/post",
			`{"id":"2","params":{"properties":{"Temperature":[{"value":21.5,"time":1700000000000},{"value":500,"time":1700000060000}]}}}`,
			want{6303, nil, 0}},
		{"batch_post_reply_bad_params", "thing/event/property/batch/post", `{"id":"3","params":{"properties":{"Temperature":5}}}`, want{460, nil, 0}},
		{"pack_post_reply", "thing/event/property/pack/post",
			`{"id":"4","version":"1.0","params":{"properties":{"Temperature":{"value":20,"time":1700000000000}},"events":{"Overheat":{"value":{"Temperature":99},"time":1700000000000}},` +
				`"subDevices":[{"identity":{"productKey":"` + fzPK + `","deviceName":"sub-01"},"properties":{"Temperature":{"value":30,"time":1700000001000},"Mode":1},"events":{}}]},"method":"thing.event.property.pack.post"}`,
			want{200, map[string]string{own + " Temperature": "20@1700000000000", sub + " Temperature": "30@1700000001000", sub + " Mode": "1@1700000000000"}, 0}},
		{"pack_post_reply_not_sub", "thing/event/property/pack/post",
			`{"id":"5","params":{"properties":{"Temperature":20},"subDevices":[{"identity":{"productKey":"` + fzPK + `","deviceName":"other"},"properties":{"Temperature":1}},{"identity":{"productKey":"` + fzPK + `","deviceName":"sub-01"},"properties":{"Temperature":999}},{"identity":{"productKey":"a1Nope","deviceName":"x"},"properties":{"Temperature":1}}]}}`,
			want{6401, map[string]string{own + " Temperature": "20@1700000000000"}, 2}},
		{"pack_post_reply_not_logged_in", "thing/event/property/pack/post",
			`{"id":"5b","params":{"subDevices":[{"identity":{"productKey":"` + fzPK + `","deviceName":"sub-01"},"properties":{"Temperature":1}}]}}`,
			want{520, nil, 1}},
		{"pack_post_reply_no_identity", "thing/event/property/pack/post", `{"id":"6","params":{"subDevices":[{"properties":{"Temperature":1}}]}}`, want{460, nil, 0}},
		{"history_post_reply", "thing/event/property/history/post",
			`{"id":"7","version":"1.0","params":[{"identity":{"productKey":"` + fzPK + `","deviceName":"` + fzDN + `"},"properties":[{"Temperature":{"value":10,"time":1600000000000},"FanLevel":{"value":1,"time":1600000000000}},{"Temperature":{"value":11,"time":1600000060000}}],"events":[{"Overheat":{"value":{"Temperature":90},"time":1600000000000}}]},` +
				`{"identity":{"productKey":"` + fzPK + `","deviceName":"sub-01"},"properties":[{"Temperature":{"value":12,"time":1600000000000}}]}],"method":"thing.event.property.history.post"}`,
			want{200, map[string]string{own + " Temperature": "11@1600000060000", own + " FanLevel": "1@1600000000000", sub + " Temperature": "12@1600000000000"}, 0}},
		{"history_post_reply_bad_event", "thing/event/property/history/post",
			`{"id":"8","params":[{"identity":{"productKey":"` + fzPK + `","deviceName":"` + fzDN + `"},"events":[{"Overheat":{"value":{"Temperature":900},"time":1600000000000}}]}]}`,
			want{6303, nil, 0}},
		{"history_post_reply_empty", "thing/event/property/history/post", `{"id":"9","params":[]}`, want{460, nil, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, w := goldenService(t)
			if strings.HasSuffix(tt.name, "not_logged_in") {
				w.offline = map[string]bool{fzPK + "/sub-01": true}
			}
			var h handler
			switch {
			case strings.Contains(tt.rest, "batch"):
				h = s.batchPost
			case strings.Contains(tt.rest, "pack"):
				h = s.packPost
			default:
				h = s.historyPost
			}
			b := ask(t, s, w, h, tt.rest, tt.payload)
			alinktest.Golden(t, tt.name, b)
			var errs []string
			for _, m := range w.published {
				if strings.HasPrefix(m.topic, "/ext/error/") {
					errs = append(errs, string(m.payload))
				}
			}
			if len(errs) != tt.want.extErrors {
				t.Fatalf("/ext/error: %v", errs)
			}
			if len(errs) > 0 {
				alinktest.Golden(t, tt.name+"_ext_error", []byte(strings.Join(errs, "\n")))
			}
			var rep struct{ Code int }
			json.Unmarshal(b, &rep)
			if rep.Code != tt.want.code {
				t.Fatalf("code %d: %s", rep.Code, b)
			}
			got := map[string]string{}
			for i, vals := range w.saved {
				for _, v := range vals {
					got[w.savedFor[i]+" "+v.Identifier] = string(v.Value) + "@" + itoa(v.Time.UnixMilli())
				}
			}
			if len(got) != len(tt.want.saved) {
				t.Fatalf("stored %v, want %v", got, tt.want.saved)
			}
			for k, v := range tt.want.saved {
				if got[k] != v {
					t.Fatalf("stored %v, want %v", got, tt.want.saved)
				}
			}
		})
	}
}

func itoa(n int64) string { return jsonInt(n) }

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestHistoryKeepsNewerValues: a value older than the stored one is
// checked but does not replace it.
func TestHistoryKeepsNewerValues(t *testing.T) {
	s, w := goldenService(t)
	ask(t, s, w, s.batchPost, "thing/event/property/batch/post", `{"id":"1","params":{"properties":{"Temperature":[{"value":30,"time":1700000060000}]}}}`)
	b := ask(t, s, w, s.historyPost, "thing/event/property/history/post", `{"id":"2","params":[{"properties":[{"Temperature":{"value":10,"time":1600000000000},"FanLevel":{"value":1,"time":1600000000000}}]}]}`)
	if !strings.Contains(string(b), `"code":200`) || len(w.saved) != 2 || len(w.saved[1]) != 1 || w.saved[1][0].Identifier != "FanLevel" {
		t.Fatalf("reply %s, saved %v", b, w.saved)
	}
	b = ask(t, s, w, s.historyPost, "thing/event/property/history/post", `{"id":"3","params":[{"properties":[{"Temperature":{"value":500,"time":1600000000000}}]}]}`)
	if !strings.Contains(string(b), `"code":6303`) {
		t.Fatalf("an old bad value is still checked: %s", b)
	}
}

// FuzzPosts drives batch, pack and history posts with arbitrary payloads:
// at most one reply, on _reply (and /ext/error to the poster only); values are stored only for the poster and
// its sub-device, and every stored value passes the model.
func FuzzPosts(f *testing.F) {
	for _, s := range []struct {
		which   uint8
		payload string
	}{
		{0, `{"id":"1","params":{"properties":{"Temperature":[{"value":21.5,"time":1700000000000}]},"events":{"Overheat":[{"value":{"Temperature":99}}]}}}`},
		{1, `{"id":"2","params":{"properties":{"Temperature":20},"subDevices":[{"identity":{"productKey":"a1Thermo0001","deviceName":"sub-01"},"properties":{"Mode":1}},{"identity":{"productKey":"a1Thermo0001","deviceName":"other"},"properties":{"Mode":1}}]}}`},
		{2, `{"id":"3","params":[{"identity":{"productKey":"a1Thermo0001","deviceName":"sub-01"},"properties":[{"Temperature":{"value":1,"time":1}}]}]}`},
		{2, `{"id":"4","params":[{"properties":[{"Temperature":{"value":"x"}}]}]}`},
		{1, `{"id":"5","params":{}}`}, {0, `not json`},
	} {
		f.Add(s.which, []byte(s.payload))
	}
	model := fzModel(f)
	rests := []string{"thing/event/property/batch/post", "thing/event/property/pack/post", "thing/event/property/history/post"}
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		w := &fzWorld{model: model}
		s := New(Options{Broker: w, Registry: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
		hs := []handler{s.batchPost, s.packPost, s.historyPost}
		i := int(which) % len(hs)
		topic := "/sys/" + fzPK + "/" + fzDN + "/" + rests[i]
		s.serve(hs[i])(topic, payload)
		replies := 0
		for _, m := range w.published {
			if m.topic == "/ext/error/"+fzPK+"/"+fzDN {
				continue // a sub-device's failure told the gateway
			}
			replies++
			var rep struct {
				ID   *string
				Code *int
			}
			if err := json.Unmarshal(m.payload, &rep); err != nil || rep.ID == nil || rep.Code == nil || m.topic != topic+"_reply" {
				t.Fatalf("reply %s on %s: %v", m.payload, m.topic, err)
			}
		}
		if replies > 1 {
			t.Fatalf("%d replies", replies)
		}
		for k, vals := range w.saved {
			if w.savedFor[k] != fzPK+"/"+fzDN && w.savedFor[k] != fzPK+"/sub-01" {
				t.Fatalf("stored values of %s", w.savedFor[k])
			}
			for _, v := range vals {
				one, _ := json.Marshal(map[string]json.RawMessage{v.Identifier: v.Value})
				if _, err := model.ValidateProperties(one); err != nil {
					t.Fatalf("stored %s=%s: %v", v.Identifier, v.Value, err)
				}
			}
		}
	})
}
