package gateway

import (
	"context"
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

// TestLifecycleDownlinksGolden pins thing.disable / enable / delete as a
// gateway receives them for its sub-device, on the sub-device's own
// topic, each followed by thing.topo.change on the gateway's.
func TestLifecycleDownlinksGolden(t *testing.T) {
	sub := fzDevices[fzSubPK+"/sub01"]
	for _, tt := range []struct {
		kind registry.DeviceEventKind
		what string
	}{
		{registry.DeviceDisabled, "disable"},
		{registry.DeviceEnabled, "enable"},
		{registry.DeviceDeleted, "delete"},
	} {
		t.Run(tt.what, func(t *testing.T) {
			w := &fzWorld{}
			s := New(Options{Broker: w, Registry: w, Provisioner: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
			s.DeviceChanged(context.Background(), tt.kind, sub)
			if len(w.sent) != 1 || w.sent[0].gateway != fzGwPK+"/"+fzGwDN || w.sent[0].topic != "/sys/"+fzSubPK+"/sub01/thing/"+tt.what {
				t.Fatalf("sent %+v", w.sent)
			}
			if len(w.published) != 1 || w.published[0].topic != "/sys/"+fzGwPK+"/"+fzGwDN+"/thing/topo/change" {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, "thing_"+tt.what, []byte(w.sent[0].payload))
		})
	}
	// A direct device's change and other kinds send nothing.
	w := &fzWorld{}
	s := New(Options{Broker: w, Registry: w, Provisioner: w})
	s.DeviceChanged(context.Background(), registry.DeviceDisabled, fzDevices["a1Direct001/direct01"])
	s.DeviceChanged(context.Background(), registry.DeviceCredentialsChanged, sub)
	if len(w.sent)+len(w.published) != 0 {
		t.Fatalf("sent %+v, published %+v", w.sent, w.published)
	}
}

// TestGatewayRequestsGolden pins thing.topo.add.notify and
// thing.gateway.permit as a gateway receives them.
func TestGatewayRequestsGolden(t *testing.T) {
	gw := fzDevices[fzGwPK+"/"+fzGwDN]
	for _, tt := range []struct {
		name, rest string
		send       func(s *Service) (Sent, error)
	}{
		{"topo_add_notify", "thing/topo/add/notify", func(s *Service) (Sent, error) {
			return s.NotifyAdd(context.Background(), gw, []registry.Device{fzDevices[fzSubPK+"/sub02"]})
		}},
		{"gateway_permit", "thing/gateway/permit", func(s *Service) (Sent, error) {
			return s.Permit(context.Background(), gw, fzSubPK, 60)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fzWorld{}
			s := New(Options{Broker: w, Registry: w, Provisioner: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
			sent, err := tt.send(s)
			topic := "/sys/" + fzGwPK + "/" + fzGwDN + "/" + tt.rest
			if err != nil || sent.Topic != topic || sent.MessageID == "" {
				t.Fatalf("sent %+v, %v", sent, err)
			}
			if len(w.published) != 1 || w.published[0].topic != topic {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
		})
	}
}

// TestFoundAndUnregisterRepliesGolden pins the replies to
// thing.list.found and thing.sub.unregister, and what each did.
func TestFoundAndUnregisterRepliesGolden(t *testing.T) {
	for _, tt := range []struct {
		name, rest, payload string
		found               int      // entries in the gateway's found list after
		deleted             []string // devices deleted
	}{
		{"list_found_reply", "thing/list/found", `{"id":"1","version":"1.0","params":[{"productKey":"a1SubPK0001","deviceName":"new-01"},{"productKey":"a1SubPK0001","deviceName":"new-02"}],"method":"thing.list.found"}`, 2, nil},
		{"list_found_reply_bad_product", "thing/list/found", `{"id":"2","params":[{"productKey":"a1SubPK0001","deviceName":"new-01"},{"productKey":"a1Direct001","deviceName":"new-02"}]}`, 0, nil},
		{"list_found_reply_bad_name", "thing/list/found", `{"id":"3","params":[{"productKey":"a1SubPK0001","deviceName":"x"}]}`, 0, nil},
		{"list_found_reply_empty", "thing/list/found", `{"id":"4","params":[]}`, 0, nil},
		{"sub_unregister_reply", "thing/sub/unregister", `{"id":"5","version":"1.0","params":[{"productKey":"a1SubPK0001","deviceName":"sub01"},{"productKey":"a1SubPK0001","deviceName":"sub02"},{"productKey":"a1SubPK0001","deviceName":"foreign"},{"productKey":"a1SubPK0001","deviceName":"nope"}],"method":"thing.sub.unregister"}`, 0, []string{fzSubPK + "/sub01"}},
		{"sub_unregister_reply_bad_params", "thing/sub/unregister", `{"id":"6","params":{"productKey":"a1SubPK0001"}}`, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fzWorld{}
			s := New(Options{Broker: w, Registry: w, Provisioner: w, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
			topic := "/sys/" + fzGwPK + "/" + fzGwDN + "/" + tt.rest
			s.handle(topic, []byte(tt.payload))
			if len(w.published) != 1 || w.published[0].topic != topic+"_reply" {
				t.Fatalf("published %+v", w.published)
			}
			alinktest.Golden(t, tt.name, w.published[0].payload)
			if got, err := s.Found(context.Background(), fzDevices[fzGwPK+"/"+fzGwDN]); err != nil || len(got) != tt.found {
				t.Errorf("found %+v %v, want %d", got, err, tt.found)
			}
			if strings.Join(w.deleted, ",") != strings.Join(tt.deleted, ",") {
				t.Errorf("deleted %v, want %v", w.deleted, tt.deleted)
			}
		})
	}
}
