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
