package broker

import (
	"context"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/registry"
)

// specDownlinks is every downlink of the protocol spec's table ("Topic
// directions"), with the device's own ProductKey and DeviceName; "+"
// stands for an id.
var specDownlinks = []string{
	// thing model
	"/sys/PK/dn/thing/service/property/set", "/sys/PK/dn/thing/service/+",
	"/sys/PK/dn/thing/event/+/post_reply", "/sys/PK/dn/thing/event/property/batch/post_reply",
	"/sys/PK/dn/thing/deviceinfo/update_reply", "/sys/PK/dn/thing/deviceinfo/delete_reply",
	"/sys/PK/dn/thing/dynamicTsl/get_reply", "/sys/PK/dn/thing/dsltemplate/get_reply",
	"/sys/PK/dn/thing/property/desired/get_reply", "/sys/PK/dn/thing/property/desired/delete_reply",
	"/sys/PK/dn/thing/model/down_raw", "/sys/PK/dn/thing/model/up_raw_reply",
	"/sys/PK/dn/thing/config/push", "/sys/PK/dn/thing/config/get_reply",
	// RRPC
	"/sys/PK/dn/rrpc/request/+",
	// gateway
	"/sys/PK/dn/thing/topo/add_reply", "/sys/PK/dn/thing/topo/delete_reply", "/sys/PK/dn/thing/topo/get_reply",
	"/sys/PK/dn/thing/topo/change", "/sys/PK/dn/thing/topo/add/notify", "/sys/PK/dn/thing/gateway/permit",
	"/sys/PK/dn/thing/sub/register_reply", "/sys/PK/dn/thing/sub/unregister_reply",
	"/sys/PK/dn/thing/proxy/provisioning/product_register_reply", "/sys/PK/dn/thing/list/found_reply",
	"/sys/PK/dn/thing/disable", "/sys/PK/dn/thing/enable", "/sys/PK/dn/thing/delete",
	// sessions
	"/ext/session/PK/dn/combine/login_reply", "/ext/session/PK/dn/combine/logout_reply",
	"/ext/session/PK/dn/combine/batch_login_reply", "/ext/session/PK/dn/combine/batch_logout_reply",
	// other
	"/ext/ntp/PK/dn/response", "/ext/error/PK/dn", "/shadow/get/PK/dn", "/ota/device/upgrade/PK/dn",
	"/sys/PK/dn/thing/ota/firmware/get_reply", "/sys/PK/dn/thing/bootstrap/notify", "/sys/PK/dn/thing/bootstrap/config/push",
}

// specRRPCExt are the v4 RRPC downlinks (ext=3): request and reply share
// the topic.
var specRRPCExt = []string{"/ext/rrpc/+/sys/PK/dn/thing/service/+", "/ext/rrpc/+/sys/PK/dn/thing/model/down_raw"}

// specUplinks is every uplink the spec names, and the requests its
// downlink replies answer.
var specUplinks = []string{
	"/sys/PK/dn/thing/event/property/post", "/sys/PK/dn/thing/event/alarm/post",
	"/sys/PK/dn/thing/event/property/batch/post", "/sys/PK/dn/thing/event/property/pack/post",
	"/sys/PK/dn/thing/event/property/history/post",
	"/sys/PK/dn/thing/deviceinfo/update", "/sys/PK/dn/thing/deviceinfo/delete",
	"/sys/PK/dn/thing/dynamicTsl/get", "/sys/PK/dn/thing/dsltemplate/get",
	"/sys/PK/dn/thing/property/desired/get", "/sys/PK/dn/thing/property/desired/delete",
	"/sys/PK/dn/thing/model/up_raw", "/sys/PK/dn/thing/config/get",
	"/sys/PK/dn/thing/topo/add", "/sys/PK/dn/thing/topo/delete", "/sys/PK/dn/thing/topo/get",
	"/sys/PK/dn/thing/sub/register", "/sys/PK/dn/thing/sub/unregister",
	"/sys/PK/dn/thing/proxy/provisioning/product_register", "/sys/PK/dn/thing/list/found",
	"/sys/PK/dn/thing/ota/firmware/get",
	"/ext/session/PK/dn/combine/login", "/ext/session/PK/dn/combine/logout",
	"/ext/session/PK/dn/combine/batch_login", "/ext/session/PK/dn/combine/batch_logout",
	// replies to downlink requests
	"/sys/PK/dn/thing/service/property/set_reply", "/sys/PK/dn/thing/service/property/get_reply",
	"/sys/PK/dn/thing/service/reboot_reply", "/sys/PK/dn/rrpc/response/123",
	"/sys/PK/dn/thing/topo/change_reply", "/sys/PK/dn/thing/bootstrap/notify_reply", "/sys/PK/dn/thing/bootstrap/config/push_reply",
	"/sys/PK/dn/thing/config/push_reply", "/sys/PK/dn/thing/model/down_raw_reply",
	"/sys/PK/dn/thing/disable_reply", "/sys/PK/dn/thing/gateway/permit_reply",
	// other families
	"/ext/ntp/PK/dn/request", "/shadow/update/PK/dn",
	"/ota/device/inform/PK/dn", "/ota/device/progress/PK/dn", "/ota/device/request/PK/dn",
}

// concreteID puts an id where a filter has "+" (the spec's tables name
// filters; deliveries carry topics).
func concreteID(f string) string { return strings.ReplaceAll(f, "+", "42") }

// TestSpecDirections: every topic of the spec's tables has the direction
// the spec gives it, for a device: downlinks received and never
// published, uplinks published and never received, v4 RRPC both.
func TestSpecDirections(t *testing.T) {
	for _, f := range specDownlinks {
		d := topicDirection(concreteID(f))
		if !d.deviceReceives() || d.devicePublishes() {
			t.Errorf("downlink %s: direction %v", f, d)
		}
	}
	for _, f := range specUplinks {
		d := topicDirection(f)
		if !d.devicePublishes() || d.deviceReceives() {
			t.Errorf("uplink %s: direction %v", f, d)
		}
		if d.appPublishes() {
			t.Errorf("uplink %s: applications may publish it", f)
		}
	}
	for _, f := range specRRPCExt {
		if d := topicDirection(concreteID(f)); d != dirBoth {
			t.Errorf("v4 RRPC %s: direction %v, want both", f, d)
		}
	}
	// Every family is a device topic naming PK/dn.
	for _, f := range append(append(append([]string{}, specDownlinks...), specUplinks...), specRRPCExt...) {
		if !deviceMay(identity{productKey: "PK", deviceName: "dn"}, concreteID(f)) || deviceMay(identity{productKey: "PK", deviceName: "dn2"}, concreteID(f)) {
			t.Errorf("%s is not PK/dn's alone", f)
		}
	}
}

// TestDownlinkFilters: the server-side subscription set is the spec's
// downlink table, the v4 RRPC forms with ext=3 only.
func TestDownlinkFilters(t *testing.T) {
	eq := func(got, want []string) bool {
		if len(got) != len(want) {
			return false
		}
		m := map[string]bool{}
		for _, g := range got {
			m[g] = true
		}
		for _, w := range want {
			if !m[w] {
				return false
			}
		}
		return true
	}
	// Beyond the table: the replies to the pack and history posts corral
	// answers, which "thing/event/+/post_reply" does not match.
	want := append(append([]string{}, specDownlinks...), "/sys/PK/dn/thing/event/property/pack/post_reply", "/sys/PK/dn/thing/event/property/history/post_reply")
	if got := downlinkFilters("PK", "dn", false); !eq(got, want) {
		t.Errorf("downlinkFilters = %q\nwant %q", got, want)
	}
	if got := downlinkFilters("PK", "dn", true); !eq(got, append(want, specRRPCExt...)) {
		t.Errorf("downlinkFilters ext=3 = %q", got)
	}
}

func TestClassDirection(t *testing.T) {
	classes := append(registry.DefaultTopicClasses(), registry.TopicClass{Suffix: "cmd/+", Operation: registry.TopicAll})
	tests := []struct {
		classes []registry.TopicClass
		suffix  string
		want    direction
	}{
		{nil, "anything", dirBoth}, // no classes configured: the legacy rule
		{[]registry.TopicClass{}, "update", dirNone},
		{classes, "update", dirUp},
		{classes, "update/error", dirUp},
		{classes, "get", dirDown},
		{classes, "cmd/x", dirBoth},
		{classes, "cmd/x/y", dirNone},
		{classes, "other", dirNone},
	}
	for _, tt := range tests {
		if got := classDirection(tt.classes, tt.suffix); got != tt.want {
			t.Errorf("classDirection(%v, %q) = %v, want %v", tt.classes, tt.suffix, got, tt.want)
		}
	}
}

// TestTopicClassRights: a device publishes on custom topics whose class
// is pub or all and is delivered those whose class is sub or all; a topic
// in no class is refused both ways; applications publish on sub and all.
// A product whose classes were never configured (nil) keeps /user/ both
// ways; an empty list has no custom topics.
func TestTopicClassRights(t *testing.T) {
	h := &hook{products: cache.New[string, registry.Product](cache.Options{}), owners: cache.New[string, string](cache.Options{})}
	classes := append(registry.DefaultTopicClasses(), registry.TopicClass{Suffix: "cmd/+", Operation: registry.TopicAll})
	h.products.Set("PK", registry.Product{TopicClasses: classes})
	h.products.Set("PKNIL", registry.Product{})
	h.products.Set("PKNONE", registry.Product{TopicClasses: []registry.TopicClass{}})
	for _, pk := range []string{"PK", "PKNIL", "PKNONE"} {
		h.owners.Set(pk, "acct")
	}
	ctx := context.Background()
	app := identity{app: true, accountID: "acct", role: registry.RoleOperator}
	tests := []struct {
		pk, suffix              string
		devPub, devRecv, appPub bool
	}{
		{"PK", "update", true, false, false},
		{"PK", "update/error", true, false, false},
		{"PK", "get", false, true, true},
		{"PK", "cmd/reset", true, true, true},
		{"PK", "other", false, false, false},
		{"PKNIL", "anything", true, true, true},
		{"PKNONE", "update", false, false, false},
	}
	for _, tt := range tests {
		dev := identity{productKey: tt.pk, deviceName: "dn"}
		topic := "/" + tt.pk + "/dn/user/" + tt.suffix
		if got := h.mayPublish(ctx, dev, topic); got != tt.devPub {
			t.Errorf("device publishes %s: %v, want %v", topic, got, tt.devPub)
		}
		if got := h.mayReceive(ctx, dev, topic); got != tt.devRecv {
			t.Errorf("device receives %s: %v, want %v", topic, got, tt.devRecv)
		}
		if got := h.mayPublish(ctx, app, topic); got != tt.appPub {
			t.Errorf("application publishes %s: %v, want %v", topic, got, tt.appPub)
		}
		if !h.mayReceive(ctx, app, topic) {
			t.Errorf("application may not receive %s", topic)
		}
	}
	// A filter over custom topics is accepted; deliveries are checked.
	if !h.maySubscribe(ctx, identity{productKey: "PK", deviceName: "dn"}, "/PK/dn/user/#") {
		t.Error("device may not subscribe /PK/dn/user/#")
	}
}

// TestIsShadowGet: the one request a readonly key may publish is a shadow
// get, classic or named; nothing that merely contains "get" passes.
func TestIsShadowGet(t *testing.T) {
	for topic, want := range map[string]bool{
		"$aws/things/pk.dn/shadow/get":             true,
		"$aws/things/pk.dn/shadow/name/cfg/get":    true,
		"$aws/things/pk.dn/shadow/update":          false,
		"$aws/things/pk.dn/shadow/delete":          false,
		"$aws/things/pk.dn/shadow/get/accepted":    false,
		"$aws/things/pk.dn/shadow/name/cfg/update": false,
		"$aws/things/pk.dn/shadow/name/get":        false,
		"$aws/things/pk.dn/shadow/name//get":       false,
		"$aws/things//shadow/get":                  false,
		"$aws/things/pk.dn/get":                    false,
		"/shadow/get/pk/dn":                        false,
		"$aws/things/pk.dn/shadow/name/cfg/get/x":  false,
		"$aws/things/pk.dn/shadow/name/a/b/get":    false,
	} {
		if got := isShadowGet(topic); got != want {
			t.Errorf("isShadowGet(%q) = %v, want %v", topic, got, want)
		}
	}
}

// TestOriginIsDevice: a publish's origin is a device's session ({pk}.{dn},
// a gateway's included) unless it is an application's (app:…) or
// corral's own.
func TestOriginIsDevice(t *testing.T) {
	for origin, want := range map[string]bool{
		"a1B2c3.dev1":          true,
		"gwpk.gw01":            true,
		"app:key1:console":     false,
		"app:key1:a1B2c3.dev1": false,
		"inline":               false,
		"":                     false,
	} {
		if got := originIsDevice(origin); got != want {
			t.Errorf("originIsDevice(%q) = %v, want %v", origin, got, want)
		}
	}
}
