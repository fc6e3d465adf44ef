package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
)

func TestDeviceMay(t *testing.T) {
	const pk, dn = "a1PK0000001", "dev-1"
	tests := []struct {
		topic string
		want  bool
	}{
		{"/sys/a1PK0000001/dev-1/thing/event/property/post", true},
		{"/sys/a1PK0000001/dev-1/thing/service/property/set", true},
		{"/sys/a1PK0000001/dev-1/#", true},
		{"/sys/a1PK0000001/dev-1/+/event", true},
		{"/a1PK0000001/dev-1/user/update", true},
		{"/a1PK0000001/dev-1/user/#", true},
		{"/ext/session/a1PK0000001/dev-1/combine/login", true},
		{"$aws/things/a1PK0000001.dev-1/shadow/update", true},
		{"$aws/things/a1PK0000001.dev-1/shadow/#", true},
		{"$aws/things/dev-1/shadow/update", false}, // a DeviceName is no thing name: other products have it too
		{"$aws/things/+/shadow/#", false},
		{"$aws/things/#", false},
		{"$aws/things/a1PK0000002.dev-1/shadow/update", false},
		{"/sys/a1PK0000001/dev-1/", false},
		{"/sys/a1PK0000001/dev-1", false},
		{"/sys/a1PK0000001/dev-2/thing/event/property/post", false},
		// "+" for the ProductKey or DeviceName: legal, each delivery checked (issue 10 item 3).
		{"/sys/a1PK0000001/+/thing/event/property/post", true},
		{"/sys/+/+/thing/event/property/post_reply", true},
		{"/sys/+/dev-1/thing", true},
		{"/sys/+/dev-2/thing", false},
		{"/sys/a1PK0000001/#", false},
		{"/sys/#", false},
		{"/shadow/get/+/+", true},
		{"/shadow/get/a1PK0000001/dev-1", true},
		{"/shadow/update/a1PK0000001/dev-2", false},
		{"/shadow/get/a1PK0000001/dev-1/x", false},
		{"/ota/device/upgrade/+/+", true},
		{"/ota/device/inform/a1PK0000001/dev-1", true},
		{"/ota/device/other/a1PK0000001/dev-1", false},
		{"/ext/ntp/a1PK0000001/dev-1/request", true},
		{"/ext/ntp/a1PK0000001/dev-2/response", false},
		{"/ext/error/a1PK0000001/dev-1", true},
		{"/ext/error/+/#", false},
		{"/ext/rrpc/+/sys/a1PK0000001/dev-1/thing/service/+", true},
		{"/ext/rrpc/123/sys/a1PK0000001/dev-1/thing/service/set", true},
		{"/ext/rrpc/123/a1PK0000001/dev-1/user/get", true},
		{"/ext/rrpc/123/sys/a1PK0000001/dev-2/thing/service/set", false},
		{"/ext/rrpc/#", false},
		{"/ext/rrpc/1/ext/ntp/a1PK0000001/dev-1/request", false},
		{"#", false},
		{"+/+/+", false},
		{"/a1PK0000001/dev-1/get", false},
		{"/a1PK0000001/dev-12/user/x", false},
		{"/sys/a1PK0000001/dev-12/thing", false},
		{"$aws/things/dev-2/shadow/update", false},
		{"$aws/events/presence/connected/x", false},
		{"$SYS/broker/clients", false},
		{"/ext/register", false},
		{"$aws/things/a1PK0000001.dev-1/", false},
		{"$aws/things/a1PK0000001.dev-1", false},
		{"$aws/things/a1PK0000001.dev-12/shadow/update", false},
		{"$aws/things/a1PK0000001-dev-1/shadow/update", false},
		{"$aws/things/a1PK0000001.dev-1/x", true},
	}
	for _, tt := range tests {
		if got := deviceMay(identity{productKey: pk, deviceName: dn}, tt.topic); got != tt.want {
			t.Errorf("deviceMay(%q) = %v, want %v", tt.topic, got, tt.want)
		}
	}
	// An explicit thing name instead of the default one.
	explicit := identity{productKey: pk, deviceName: dn, thingName: "t-1"}
	for topic, want := range map[string]bool{
		"$aws/things/t-1/shadow/update": true, "$aws/things/t-1/": false, "$aws/things/t-12/shadow/update": false,
		"$aws/things/a1PK0000001.dev-1/shadow/update": false, "/sys/a1PK0000001/dev-1/thing/event/property/post": true,
	} {
		if got := deviceMay(explicit, topic); got != want {
			t.Errorf("deviceMay(thing t-1, %q) = %v, want %v", topic, got, want)
		}
	}
}

func TestProductOfTopic(t *testing.T) {
	tests := []struct {
		topic, pk string
		ok        bool
	}{
		{"/sys/PK1/+/thing/event/property/post", "PK1", true},
		{"/PK1/dev/user/x", "PK1", true},
		{"/ext/session/PK1/gw/combine/login", "PK1", true},
		{"/sys/+/dev/thing", "", false},
		{"/shadow/get/PK1/dev", "PK1", true},
		{"/ota/device/upgrade/PK1/dev", "PK1", true},
		{"/ext/rrpc/9/sys/PK1/dev/thing/service/x", "PK1", true},
		{"/ext/ntp/+/dev/request", "", false},
		{"/sys/#", "", false},
		{"/#", "", false},
		{"/PK1", "", false},
		{"PK1/dev", "", false},
		{"$aws/things/x/shadow", "", false},
	}
	for _, tt := range tests {
		pk, ok := productOfTopic(tt.topic)
		if pk != tt.pk || ok != tt.ok {
			t.Errorf("productOfTopic(%q) = %q, %v", tt.topic, pk, ok)
		}
	}
}

// FuzzDeviceMay checks that whatever a device is allowed, no other device's
// topic can match it.
func FuzzDeviceMay(f *testing.F) {
	for _, s := range []string{"/sys/PK/dn/#", "/PK/dn/user/+", "$aws/things/PK.dn/x", "$aws/things/t-1/#", "#", "/sys/PK/+/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if !deviceMay(identity{productKey: "PK", deviceName: "dn"}, topic) && !deviceMay(identity{productKey: "PK", deviceName: "dn", thingName: "t-1"}, topic) {
			return
		}
		// A concrete topic allowed to dn (a delivery, or a filter with
		// no wildcard) is no other device's.
		if hasWildcard(topic) {
			topic = concrete(topic)
			if !deviceMay(identity{productKey: "PK", deviceName: "dn"}, topic) && !deviceMay(identity{productKey: "PK", deviceName: "dn", thingName: "t-1"}, topic) {
				return
			}
		}
		for _, other := range []identity{{productKey: "PK", deviceName: "dn2"}, {productKey: "PK2", deviceName: "dn"}, {productKey: "PK", deviceName: "dX", thingName: "t-10"}} {
			if deviceMay(other, topic) {
				t.Fatalf("%q allowed to dn and to %+v", topic, other)
			}
		}
	})
}

// matches is MQTT filter matching for the fuzz property.
func matches(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

func TestEventProduct(t *testing.T) {
	tests := []struct {
		topic, pk string
		ok        bool
	}{
		{"$aws/events/presence/connected/PK1.dev", "PK1", true},
		{"$aws/events/presence/+/PK1.dev", "PK1", true},
		{"$aws/events/presence/connected/+", "", true},
		{"$aws/events/presence/#", "", true},
		{"$aws/events/presence/+/#", "", true},
		{"$aws/events/presence/connected/PK1.dev/x", "", false},
		{"$aws/events/presence/connected", "", false},
		{"$corral/events/registration/PK1/dev", "PK1", true},
		{"$corral/events/registration/+/dev", "", true},
		{"$corral/events/#", "", true},
		{"$corral/events/registration/P+K/x", "", false},
		{"/sys/PK1/dev/x", "", false},
	}
	for _, tt := range tests {
		pk, ok := eventProduct(tt.topic)
		if pk != tt.pk || ok != tt.ok {
			t.Errorf("eventProduct(%q) = %q, %v; want %q, %v", tt.topic, pk, ok, tt.pk, tt.ok)
		}
	}
}

func TestTopicDirection(t *testing.T) {
	const d = "/sys/PK1/dev"
	tests := []struct {
		topic string
		want  direction
	}{
		{d + "/thing/event/property/post", dirUp},
		{d + "/thing/event/alarm/post", dirUp},
		{d + "/thing/event/property/batch/post", dirUp},
		{d + "/thing/event/property/post_reply", dirCorral},
		{d + "/thing/topo/add", dirUp},
		{d + "/thing/topo/add_reply", dirCorral},
		{d + "/thing/topo/get", dirUp},
		{d + "/thing/sub/register", dirUp},
		{d + "/thing/sub/register_reply", dirCorral},
		{d + "/thing/proxy/provisioning/product_register", dirUp},
		{d + "/thing/deviceinfo/update", dirUp},
		{d + "/thing/ota/firmware/get", dirUp},
		{d + "/thing/config/get", dirUp},
		{d + "/thing/config/get_reply", dirCorral},
		{d + "/thing/service/property/set", dirDown},
		{d + "/thing/service/property/set_reply", dirUp},
		{d + "/thing/service/Reboot", dirDown},
		{d + "/thing/service/Reboot_reply", dirUp},
		{d + "/rrpc/request/123", dirDown},
		{d + "/rrpc/response/123", dirUp},
		{d + "/thing/topo/change", dirDown},
		{d + "/thing/topo/change_reply", dirUp},
		{d + "/thing/topo/add/notify", dirDown},
		{d + "/thing/gateway/permit", dirDown},
		{d + "/thing/disable", dirDown},
		{d + "/thing/config/push", dirDown},
		{d + "/thing/bootstrap/notify", dirDown},
		{d + "/thing/bootstrap/notify_reply", dirUp},
		{d + "/thing/bootstrap/config/push", dirDown},
		{d + "/thing/bootstrap/config/push_reply", dirUp},
		{"/sys/+/+/thing/event/property/post", dirUp},
		{"/ext/session/PK1/gw/combine/login", dirUp},
		{"/ext/session/PK1/gw/combine/batch_login", dirUp},
		{"/ext/session/PK1/gw/combine/login_reply", dirCorral},
		{"/ext/ntp/PK1/dev/request", dirUp},
		{"/ext/ntp/PK1/dev/response", dirCorral},
		{"/ext/error/PK1/dev", dirCorral},
		{"/ota/device/inform/PK1/dev", dirUp},
		{"/ota/device/progress/PK1/dev", dirUp},
		{"/ota/device/upgrade/PK1/dev", dirDown},
		{"/shadow/update/PK1/dev", dirUp},
		{"/shadow/get/PK1/dev", dirCorral},
		{"/PK1/dev/user/update", dirBoth},
		{"$aws/things/PK1.dev/shadow/update", dirBoth},
		{"$aws/things/PK1.dev/shadow/get", dirBoth},
		{"$aws/things/PK1.dev/shadow/delete", dirBoth},
		{"$aws/things/PK1.dev/shadow/update/accepted", dirCorral},
		{"$aws/things/PK1.dev/shadow/update/rejected", dirCorral},
		{"$aws/things/PK1.dev/shadow/update/delta", dirCorral},
		{"$aws/things/PK1.dev/shadow/update/documents", dirCorral},
		{"$aws/things/PK1.dev/shadow/get/accepted", dirCorral},
		{"$aws/things/PK1.dev/shadow/delete/rejected", dirCorral},
		{"$aws/things/t-1/shadow/name/cfg/update/delta", dirCorral},
		{"$aws/things/t-1/shadow/name/delta/update", dirBoth},
		{"$aws/things/t-1/shadow/name/accepted/get", dirBoth},
		{"$aws/things/t-1/other/accepted", dirBoth},
		{"$aws/things/t-1/shadow/x/delta", dirBoth},
		{"/ext/rrpc/9/sys/PK1/dev/thing/service/Reboot", dirBoth},
		{"/sys/PK1", dirBoth},
	}
	for _, tt := range tests {
		if got := topicDirection(tt.topic); got != tt.want {
			t.Errorf("topicDirection(%q) = %v, want %v", tt.topic, got, tt.want)
		}
	}
}

func TestThingOfTopic(t *testing.T) {
	tests := []struct {
		topic, name string
		wild, ok    bool
	}{
		{"$aws/things/PK1.dev/shadow/update", "PK1.dev", false, true},
		{"$aws/things/factory:7/shadow/#", "factory:7", false, true},
		{"$aws/things/+/shadow/#", "", true, true},
		{"$aws/things/#", "", true, true},
		{"$aws/things/x", "", false, false},
		{"$aws/things/x/", "", false, false},
		{"$aws/things//shadow", "", false, false},
		{"$aws/things/a+/shadow", "", false, false},
		{"$aws/things/a#", "", false, false},
		{"$aws/thingsX/a/b", "", false, false},
		{"/sys/PK/dn/x", "", false, false},
	}
	for _, tt := range tests {
		name, wild, ok := thingOfTopic(tt.topic)
		if name != tt.name || wild != tt.wild || ok != tt.ok {
			t.Errorf("thingOfTopic(%q) = %q %v %v, want %q %v %v", tt.topic, name, wild, ok, tt.name, tt.wild, tt.ok)
		}
	}
}

// FuzzThingOfTopic checks that a thing name read from a topic is one
// concrete level, and that a non-wildcard answer names what follows the prefix.
func FuzzThingOfTopic(f *testing.F) {
	for _, s := range []string{"$aws/things/PK.dn/shadow/update", "$aws/things/+/x", "$aws/things/#", "$aws/things/a", "/sys/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		name, wild, ok := thingOfTopic(topic)
		if !ok {
			if name != "" || wild {
				t.Fatalf("%q: not a thing topic, got %q %v", topic, name, wild)
			}
			return
		}
		if wild {
			if name != "" {
				t.Fatalf("%q: wildcard with name %q", topic, name)
			}
			return
		}
		if name == "" || strings.ContainsAny(name, "/+#") || !strings.HasPrefix(topic, thingsPrefix+name+"/") || len(topic) == len(thingsPrefix+name+"/") {
			t.Fatalf("%q: name %q", topic, name)
		}
	})
}

// FuzzTopicDirection checks that classifying never panics and that the
// device answers every downlink request: its _reply is an uplink.
func FuzzTopicDirection(f *testing.F) {
	for _, s := range []string{"/sys/PK/dn/thing/event/property/post", "/sys/PK/dn/thing/service/x", "/ext/session/PK/dn/combine/login", "/sys/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if topicDirection(topic) == dirDown && strings.HasPrefix(topic, "/sys/") && topicDirection(topic+"_reply") != dirUp {
			t.Fatalf("%q is a downlink but its reply is %v", topic, topicDirection(topic+"_reply"))
		}
	})
}

// TestKeyStale: a session authenticated with a key that was deleted or
// given another role meanwhile is caught when it is established.
func TestKeyStale(t *testing.T) {
	h := newHook(&Broker{o: Options{Now: time.Now}})
	op := identity{app: true, keyID: "ck1", role: registry.RoleOperator}
	if h.keyStale(op) {
		t.Fatal("an unchanged key is stale")
	}
	h.noteKey(registry.KeyRoleChanged, registry.APIKey{ID: "ck1", Role: registry.RoleReadonly})
	if !h.keyStale(op) {
		t.Fatal("an operator session of a key now readonly is not stale")
	}
	if h.keyStale(identity{app: true, keyID: "ck1", role: registry.RoleReadonly}) {
		t.Fatal("a session with the new role is stale")
	}
	h.noteKey(registry.KeyDeleted, registry.APIKey{ID: "ck1"})
	if !h.keyStale(identity{app: true, keyID: "ck1", role: registry.RoleReadonly}) {
		t.Fatal("a deleted key's session is not stale")
	}
	if h.keyStale(identity{app: true, keyID: "ck2", role: registry.RoleAdmin}) {
		t.Fatal("another key is stale")
	}
}

// thingRegistry answers LookupThing from a map and can run a hook during
// the lookup (a rename racing with it, after the answer was read).
type thingRegistry struct {
	Registry
	owners map[string]string
	during func()
}

func (r *thingRegistry) LookupThing(_ context.Context, name string) (registry.Device, error) {
	acct, ok := r.owners[name]
	if r.during != nil {
		r.during() // after the answer was read: it is stale now
	}
	if !ok {
		return registry.Device{}, registry.ErrNotFound
	}
	return registry.Device{AccountID: acct, ThingName: name}, nil
}

// TestThingAccountCache: explicit names are cached until forgotten, and
// a lookup that raced with a rename is not kept.
func TestThingAccountCache(t *testing.T) {
	reg := &thingRegistry{owners: map[string]string{"factory-7": "acc1"}}
	h := newHook(&Broker{o: Options{Registry: reg}})
	ctx := context.Background()
	if acct, ok := h.thingAccount(ctx, "factory-7"); !ok || acct != "acc1" {
		t.Fatalf("thingAccount = %q %v", acct, ok)
	}
	reg.owners["factory-7"] = "acc2" // renamed away and taken, without telling the cache
	if acct, _ := h.thingAccount(ctx, "factory-7"); acct != "acc1" {
		t.Fatalf("not cached: %q", acct)
	}
	h.forgetThings("factory-7")
	if acct, _ := h.thingAccount(ctx, "factory-7"); acct != "acc2" {
		t.Fatalf("after forgetting: %q", acct)
	}
	h.forgetThings("")
	reg.owners["factory-8"] = "acc1"
	reg.during = func() { h.forgetThings("factory-8"); reg.owners["factory-8"] = "acc2" }
	h.thingAccount(ctx, "factory-8")
	reg.during = nil
	if acct, _ := h.thingAccount(ctx, "factory-8"); acct != "acc2" {
		t.Fatalf("a lookup that raced with a rename was cached: %q", acct)
	}
	if _, ok := h.thingAccount(ctx, "ghost"); ok {
		t.Fatal("an unknown thing has an owner")
	}
}

// TestGatewayMayThingTopics: a gateway uses the thing topics of its
// logged-in sub-devices, and no others.
func TestGatewayMayThingTopics(t *testing.T) {
	h := newHook(&Broker{o: Options{Now: time.Now}})
	sub := deviceKey("SUBPK", "s1")
	h.subOf[sub] = deviceKey("GWPK", "gw")
	h.subThings["SUBPK.s1"] = sub
	h.subThings["plant-3"] = sub
	h.subs[deviceKey("GWPK", "gw")] = map[string]*session{sub: {id: identity{productKey: "SUBPK", deviceName: "s1"}}}
	tests := []struct {
		gw, topic string
		want      bool
	}{
		{"gw", "$aws/things/SUBPK.s1/shadow/update", true},
		{"gw", "$aws/things/plant-3/shadow/get", true},
		{"gw", "$aws/things/+/shadow/update", false},
		{"gw", "$aws/things/SUBPK.s2/shadow/update", false},
		{"gw2", "$aws/things/SUBPK.s1/shadow/update", false},
		{"gw", "/sys/SUBPK/s1/thing/event/property/post", true},
		{"gw", "/SUBPK/s1/user/update", true},
		{"gw", "/ota/device/inform/SUBPK/s1", true},
		{"gw", "/ext/rrpc/5/sys/SUBPK/s1/thing/service/x", true},
		{"gw", "/sys/+/+/thing/service/property/set", true}, // names s1 (deliveries checked)
		{"gw", "/sys/SUBPK/+/thing/service/property/set", true},
		{"gw", "/sys/OTHER/+/thing/service/property/set", false},
		{"gw", "/sys/SUBPK/s2/thing/event/property/post", false},
		// The session services take the named device for the gateway.
		{"gw", "/ext/session/SUBPK/s1/combine/login", false},
		{"gw", "/ext/session/+/+/combine/login", false},
	}
	for _, tt := range tests {
		if got := h.gatewayMay("GWPK", tt.gw, tt.topic); got != tt.want {
			t.Errorf("gatewayMay(%s, %q) = %v, want %v", tt.gw, tt.topic, got, tt.want)
		}
	}
	h.dropSubThing(&session{id: identity{productKey: "SUBPK", deviceName: "s1"}}, sub)
	if h.gatewayMay("GWPK", "gw", "$aws/things/SUBPK.s1/shadow/update") {
		t.Error("a dropped sub-device thing is still the gateway's")
	}
}
