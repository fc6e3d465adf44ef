package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/alink/alinktest"
	"github.com/corral-iot/corral/internal/registry"
)

// TestRepliesGolden pins the replies a gateway receives, success and
// error, with short, long (Node SDK) and numeric ids.
func TestRepliesGolden(t *testing.T) {
	enc := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	long := "1|exp-topic|/sys/" + fzGwPK + "/" + fzGwDN + "/thing/topo/add_reply"
	for _, tt := range []struct {
		name, rest, payload string
	}{
		{"topo_add_reply", "thing/topo/add", enc(map[string]any{"id": "1", "version": "1.0", "params": []any{fzSigned("sub01", fzSecret)}, "method": "thing.topo.add"})},
		{"topo_add_reply_long_id", "thing/topo/add", enc(map[string]any{"id": long, "version": "1.0", "params": []any{fzSigned("sub01", fzSecret)}})},
		{"topo_add_reply_bad_sign", "thing/topo/add", enc(map[string]any{"id": 3, "params": []any{fzSigned("sub02", "wrong")}})},
		{"topo_get_reply", "thing/topo/get", `{"id":"4","version":"1.0","params":{},"method":"thing.topo.get"}`},
		{"topo_delete_reply", "thing/topo/delete", `{"id":"5","params":[{"productKey":"a1SubPK0001","deviceName":"sub01"}]}`},
		{"login_reply", "combine/login", enc(map[string]any{"id": "6", "params": fzSigned("sub01", fzSecret)})},
		{"login_reply_not_in_topo", "combine/login", enc(map[string]any{"id": "7", "params": fzSigned("sub02", fzSecret)})},
		{"batch_login_reply", "combine/batch_login", enc(map[string]any{"id": "8", "params": map[string]any{"deviceList": []any{fzSigned("sub01", fzSecret)}}})},
		{"logout_reply", "combine/logout", `{"id":"9","params":{"productKey":"a1SubPK0001","deviceName":"sub01"}}`},
		{"batch_logout_reply", "combine/batch_logout", `{"id":"10","params":[{"productKey":"a1SubPK0001","deviceName":"sub01"}]}`},
		{"error_reply_broken_json", "combine/login", `{"id":"` + long + `","params":{"productKey":`},
		{"error_reply_id_too_long", "combine/login", `{"id":"` + strings.Repeat("x", 257) + `","params":{}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fzWorld{}
			s := New(Options{Broker: w, Registry: w, Provisioner: w})
			prefix := "/sys/"
			if strings.HasPrefix(tt.rest, "combine/") {
				prefix = "/ext/session/"
			}
			topic := prefix + fzGwPK + "/" + fzGwDN + "/" + tt.rest
			s.handle(topic, []byte(tt.payload))
			if len(w.published) != 1 || w.published[0].topic != topic+"_reply" {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
		})
	}
}

// TestTopoChangeGolden pins thing.topo.change as pushed to a gateway.
func TestTopoChangeGolden(t *testing.T) {
	w := &fzWorld{}
	s := New(Options{Broker: w, Registry: w, Provisioner: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	s.NotifyChange(fzGwPK, fzGwDN, ChangeDisabled, []registry.Device{fzDevices[fzSubPK+"/sub01"]})
	if len(w.published) != 1 || w.published[0].topic != "/sys/"+fzGwPK+"/"+fzGwDN+"/thing/topo/change" {
		t.Fatalf("published %+v", w.published)
	}
	alinktest.Golden(t, "topo_change", w.published[0].payload)
}

// TestReportSubErrorGolden pins /ext/error as a gateway receives it.
func TestReportSubErrorGolden(t *testing.T) {
	w := &fzWorld{}
	s := New(Options{Broker: w, Registry: w, Provisioner: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	s.ReportSubError(fzGwPK, fzGwDN, fzSubPK, "sub02", alink.CodeNoSession, "sub-device a1SubPK0001/sub02 is not logged in through this gateway")
	if len(w.published) != 1 || w.published[0].topic != "/ext/error/"+fzGwPK+"/"+fzGwDN {
		t.Fatalf("published %+v", w.published)
	}
	alinktest.Golden(t, "ext_error_not_logged_in", w.published[0].payload)
}
