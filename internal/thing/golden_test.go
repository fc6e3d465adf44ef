package thing

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink/alinktest"
)

func goldenService(t *testing.T) (*Service, *fzWorld) {
	w := &fzWorld{model: fzModel(t)}
	return New(Options{Broker: w, Registry: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }}), w
}

// TestPostRepliesGolden pins post replies: success and errors, short,
// long (Node SDK) and numeric ids, each echoed as a string.
func TestPostRepliesGolden(t *testing.T) {
	long := "1|exp-topic|/sys/" + fzPK + "/" + fzDN + "/thing/event/property/post_reply"
	for _, tt := range []struct {
		name, event, payload string
	}{
		{"property_post_reply", "property", `{"id":"1","version":"1.0","params":{"Temperature":23.5},"method":"thing.event.property.post"}`},
		{"property_post_reply_long_id", "property", `{"id":"` + long + `","version":"1.0","params":{"Temperature":23.5},"method":"thing.event.property.post"}`},
		{"property_post_reply_number_id", "property", `{"id":3,"params":{"Temperature":23.5}}`},
		{"property_post_reply_tsl_error", "property", `{"id":"4","params":{"Temperature":500}}`},
		{"property_post_reply_unknown", "property", `{"id":"5","params":{"Nope":1}}`},
		{"property_post_reply_broken", "property", `{"id":"` + long + `","params":{"Temperature":`},
		{"property_post_reply_id_too_long", "property", `{"id":"` + strings.Repeat("7", 257) + `","params":{}}`},
		{"event_post_reply", "Overheat", `{"id":"8","params":{"value":{"Temperature":99},"time":1524448722000}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, w := goldenService(t)
			topic := "/sys/" + fzPK + "/" + fzDN + "/thing/event/" + tt.event + "/post"
			s.onPost(topic, []byte(tt.payload))
			if len(w.published) != 1 || w.published[0].topic != topic+"_reply" {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
		})
	}
}

// TestRequestsGolden pins the requests corral sends devices: property set,
// an asynchronous service call.
func TestRequestsGolden(t *testing.T) {
	for _, tt := range []struct {
		name, service, params, topic string
	}{
		{"property_set_request", "property.set", `{"FanLevel":2}`, "thing/service/property/set"},
		{"service_request_async", "Reboot", `{"DelaySeconds":5}`, "thing/service/Reboot"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, w := goldenService(t)
			if _, err := s.Invoke(context.Background(), Call{ProductKey: fzPK, DeviceName: fzDN, Service: tt.service, Params: json.RawMessage(tt.params)}); err != nil {
				t.Fatal(err)
			}
			if len(w.published) != 1 || w.published[0].topic != "/sys/"+fzPK+"/"+fzDN+"/"+tt.topic {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
		})
	}
}

// TestSyncRequestsGolden pins synchronous service calls in both RRPC
// forms: v3 (/sys/…/rrpc/request/{id}) and v4 for ext=3 sessions
// (/ext/rrpc/{id}/sys/…/thing/service/{serviceId}); each is answered so
// the call returns.
func TestSyncRequestsGolden(t *testing.T) {
	const id = "1700000000001"
	for _, tt := range []struct {
		name    string
		ext     bool
		topic   string
		onReply func(s *Service) func(string, []byte)
	}{
		{"service_request_sync_v3", false, "/sys/" + fzPK + "/" + fzDN + "/rrpc/request/" + id,
			func(s *Service) func(string, []byte) { return s.onReply }},
		{"service_request_sync_v4", true, "/ext/rrpc/" + id + "/sys/" + fzPK + "/" + fzDN + "/thing/service/Calibrate",
			func(s *Service) func(string, []byte) { return s.onExtReply }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, w := goldenService(t)
			w.extRRPC = tt.ext
			w.answer = func(topic string, _ []byte) {
				reply := topic
				if !tt.ext {
					reply = strings.Replace(topic, "/request/", "/response/", 1)
				}
				tt.onReply(s)(reply, []byte(`{"id":"`+id+`","code":200,"data":{"Applied":1}}`))
			}
			res, err := s.Invoke(context.Background(), Call{ProductKey: fzPK, DeviceName: fzDN, Service: "Calibrate", Params: json.RawMessage(`{"Offset":1.5}`)})
			if err != nil || !res.Replied || res.Code != 200 {
				t.Fatalf("Invoke = %+v, %v", res, err)
			}
			if len(w.published) != 1 || w.published[0].topic != tt.topic {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
		})
	}
}

// TestExtReplyRecognition: on the shared v4 topic only an answer (with a
// code) for the waiting rrpcId completes a call; after each message that
// must not, a marker answer (code 299) follows, and the call must end
// with the marker.
func TestExtReplyRecognition(t *testing.T) {
	const id = "1700000000001"
	topic := "/ext/rrpc/" + id + "/sys/" + fzPK + "/" + fzDN + "/thing/service/Calibrate"
	for _, tt := range []struct {
		name, topic, payload string
		code                 int // 299: the message was not taken for the answer
	}{
		{"answer", topic, `{"id":"` + id + `","code":200,"data":{}}`, 200},
		{"answer with a numeric id", topic, `{"id":` + id + `,"code":460,"message":"bad"}`, 460},
		{"the request itself", topic, `{"id":"` + id + `","version":"1.0","params":{},"method":"thing.service.Calibrate"}`, 299},
		{"another rrpcId", strings.Replace(topic, id, "99", 1), `{"id":"` + id + `","code":200}`, 299},
		{"another device", strings.Replace(topic, fzDN, "other", 1), `{"id":"` + id + `","code":200}`, 299},
		{"not JSON", topic, `code`, 299},
		{"not the sys form", "/ext/rrpc/" + id + "/" + fzPK + "/" + fzDN + "/thing/service/Calibrate", `{"id":"` + id + `","code":200}`, 299},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, w := goldenService(t)
			w.extRRPC = true
			w.answer = func(string, []byte) {
				s.onExtReply(tt.topic, []byte(tt.payload))
				s.onExtReply(topic, []byte(`{"id":"`+id+`","code":299}`))
			}
			res, err := s.Invoke(context.Background(), Call{ProductKey: fzPK, DeviceName: fzDN, Service: "Calibrate", Params: json.RawMessage(`{"Offset":1}`)})
			if err != nil || !res.Replied || res.Code != tt.code {
				t.Fatalf("Invoke = %+v, %v; want code %d", res, err, tt.code)
			}
		})
	}
}
