package broker

import (
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/registry"
)

// aclMatches is MQTT filter matching, for the properties below.
func aclMatches(filter, topic string) bool {
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

// concrete turns a filter into a topic it matches: "+" becomes "x", "#"
// becomes "x/y".
func concrete(filter string) string {
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch l {
		case "+":
			levels[i] = "x"
		case "#":
			levels[i] = "x/y"
		}
	}
	return strings.Join(levels, "/")
}

// FuzzDeviceMayIsolation: a topic or filter one device may use has no
// wildcard before the end of one of its own prefixes, and matches no topic
// of another device, under the same or any other product. The check that a
// filter of device A cannot reach device B's topics uses B's topic made by
// putting B's prefix in front of what follows A's.
func FuzzDeviceMayIsolation(f *testing.F) {
	for _, s := range []struct{ pk, dn, pk2, dn2, topic string }{
		{"a1PK0000001", "dev-1", "a1PK0000001", "dev-2", "/sys/a1PK0000001/dev-1/thing/event/property/post"},
		{"a1PK0000001", "dev-1", "a1PK0000002", "dev-1", "/sys/a1PK0000001/dev-1/#"},
		{"a1PK0000001", "dev-1", "a1PK0000001", "dev-12", "/a1PK0000001/dev-1/user/+"},
		{"a1PK0000001", "gw01", "a1PK0000001", "sub01", "/ext/session/a1PK0000001/gw01/combine/login"},
		{"a1PK0000001", "dev-1", "a1PK0000001", "dev-2", "$aws/things/dev-1/shadow/update/delta"},
		{"a1PK0000001", "dev-1", "a1PK0000002", "dev-1", "$aws/things/dev-1/shadow/#"}, // issue 9, item 1: thing names are instance-unique
		{"a1PK0000001", "dev.1", "a1PK0000001", "dev:1", "/sys/a1PK0000001/+/thing"},
		{"a1PK0000001", "dev-1", "a1PK0000001", "dev-2", "#"},
		{"a1PK0000001", "dev-1", "a1PK0000001", "dev-2", "/sys/a1PK0000001/dev-1/"},
	} {
		f.Add(s.pk, s.dn, s.pk2, s.dn2, s.topic)
	}
	f.Fuzz(func(t *testing.T, pk, dn, pk2, dn2, topic string) {
		if registry.ValidateProductKey(pk) != nil || registry.ValidateDeviceName(dn) != nil ||
			registry.ValidateProductKey(pk2) != nil || registry.ValidateDeviceName(dn2) != nil || pk == pk2 && dn == dn2 {
			return // registry refuses such names; the broker never sees them
		}
		if !deviceMay(identity{productKey: pk, deviceName: dn}, topic) {
			return
		}
		// A delivery's topic one device may receive is no other
		// device's; a filter's deliveries are each checked that way, so
		// the filter with the other device's names in its wildcards must
		// not pass as the first device's topic.
		other := identity{productKey: pk2, deviceName: dn2}
		for _, topic := range []string{topic, fill(topic, pk2, dn2)} {
			if hasWildcard(topic) {
				continue
			}
			if deviceMay(other, topic) && (pk != pk2 || dn != dn2) && deviceMay(identity{productKey: pk, deviceName: dn}, topic) {
				t.Fatalf("%s/%s and %s/%s may both use %q", pk, dn, pk2, dn2, topic)
			}
		}
	})
}

// fill puts pk and dn in a filter's wildcards where a device topic names
// its device, and "x" in the others.
func fill(filter, pk, dn string) string {
	if t, ok := parseDeviceTopic(filter); ok && t.wild() {
		levels := strings.Split(filter, "/")
		for i := range levels {
			if levels[i] == "+" && i+1 < len(levels) && levels[i+1] == "+" {
				levels[i], levels[i+1] = pk, dn
			} else if levels[i] == "+" && t.pk == "+" {
				levels[i] = pk
			} else if levels[i] == "+" {
				levels[i] = dn
			}
		}
		filter = strings.Join(levels, "/")
	}
	return concrete(filter)
}

// FuzzProductOfTopic: the ProductKey an application's rights are checked
// against is a literal segment (no wildcard, no '/'), sits where device
// topics put it, and a filter naming it matches no topic of another
// product.
func FuzzProductOfTopic(f *testing.F) {
	for _, s := range []string{
		"/sys/PK1/+/thing/event/property/post", "/PK1/dev/user/x", "/ext/session/PK1/gw/combine/login",
		"/sys/+/dev/thing", "/sys/#", "/#", "/PK1", "PK1/dev", "$aws/things/x/shadow", "/ext/session/+/x/y", "//x",
	} {
		f.Add(s, "a1PK0000002")
	}
	f.Fuzz(func(t *testing.T, topic, other string) {
		pk, ok := productOfTopic(topic)
		if !ok {
			if pk != "" {
				t.Fatalf("refused %q but named %q", topic, pk)
			}
			return
		}
		if pk == "" || strings.ContainsAny(pk, "/+#") {
			t.Fatalf("productOfTopic(%q) = %q", topic, pk)
		}
		var prefix string
		for _, p := range []string{"/sys/", "/ext/session/", "/"} {
			if strings.HasPrefix(topic, p+pk+"/") {
				prefix = p
				break
			}
		}
		if prefix == "" {
			t.Fatalf("productOfTopic(%q) = %q, not in the ProductKey position", topic, pk)
		}
		if registry.ValidateProductKey(other) != nil || other == pk {
			return
		}
		rest := topic[len(prefix)+len(pk):]
		for _, p := range []string{"/sys/", "/ext/session/", "/"} {
			if o := p + other + concrete(rest); aclMatches(topic, o) {
				t.Fatalf("filter %q (product %q) matches %q of product %q", topic, pk, o, other)
			}
		}
	})
}

// FuzzEventProduct: an event topic built for a product reads back as that
// product; a filter read as a product matches no event of another
// product; a wildcard or missing ProductKey reads as "" (checked on
// delivery), never as a product.
func FuzzEventProduct(f *testing.F) {
	for _, s := range []string{
		"$aws/events/presence/connected/PK1.dev", "$aws/events/presence/+/PK1.dev", "$aws/events/presence/connected/+",
		"$aws/events/presence/#", "$aws/events/presence/connected/PK1.dev/x", "$corral/events/registration/PK1/dev",
		"$corral/events/registration/+/dev", "$corral/events/#", "$corral/events/registration/P+K/x", "/sys/PK1/dev/x",
	} {
		f.Add(s, "a1PK0000001", "dev-1")
	}
	f.Fuzz(func(t *testing.T, topic, pk, dn string) {
		got, ok := eventProduct(topic)
		if ok && strings.ContainsAny(got, "/+#") {
			t.Fatalf("eventProduct(%q) = %q", topic, got)
		}
		if registry.ValidateProductKey(pk) != nil || registry.ValidateDeviceName(dn) != nil {
			return
		}
		for _, ev := range []string{
			presencePrefix + "connected/" + pk + "." + dn, presencePrefix + "disconnected/" + pk + "." + dn,
			eventsPrefix + "registration/" + pk + "/" + dn, eventsPrefix + "certificate/" + pk + "/" + dn,
		} {
			if p, ok := eventProduct(ev); !ok || p != pk {
				t.Fatalf("eventProduct(%q) = %q, %v", ev, p, ok)
			}
			if ok && got != "" && got != pk && aclMatches(topic, ev) {
				t.Fatalf("filter %q, read as product %q, matches %q of product %q", topic, got, ev, pk)
			}
		}
	})
}

// FuzzGatewayMay: a concrete topic a gateway may use for a logged-in
// sub-device names that sub-device, never another device.
func FuzzGatewayMay(f *testing.F) {
	for _, s := range []string{
		"/sys/a1SubPK0001/sub01/thing/event/property/post", "/a1SubPK0001/sub01/user/x", "/sys/a1SubPK0001/sub01/#",
		"/sys/a1SubPK0001/+/thing", "/sys/a1SubPK0001/sub02/thing", "/ext/session/a1SubPK0001/sub01/combine/login",
		"/sys/a1SubPK0001/sub01/", "/a1SubPK0001/sub01/get", "$aws/things/sub01/shadow/update", "/sys/a1GwPK00001/gw01/x",
	} {
		f.Add(s)
	}
	h := &hook{subOf: map[string]string{deviceKey("a1SubPK0001", "sub01"): deviceKey("a1GwPK00001", "gw01")}}
	f.Fuzz(func(t *testing.T, topic string) {
		if !h.gatewayMay("a1GwPK00001", "gw01", topic) {
			return
		}
		topic = concrete(topic)
		if !h.gatewayMay("a1GwPK00001", "gw01", topic) {
			return
		}
		d, ok := parseDeviceTopic(topic)
		if !ok || d.pk != "a1SubPK0001" || d.dn != "sub01" || d.session {
			t.Fatalf("gateway may use %q, not a topic of sub01", topic)
		}
	})
}
