package broker

import (
	"strings"
	"testing"
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
		{"$aws/things/dev-1/shadow/update", true},
		{"$aws/things/dev-1/shadow/#", true},
		{"/sys/a1PK0000001/dev-1/", false},
		{"/sys/a1PK0000001/dev-1", false},
		{"/sys/a1PK0000001/dev-2/thing/event/property/post", false},
		{"/sys/a1PK0000001/+/thing/event/property/post", false},
		{"/sys/a1PK0000001/#", false},
		{"/sys/+/dev-1/thing", false},
		{"#", false},
		{"+/+/+", false},
		{"/a1PK0000001/dev-1/get", false},
		{"/a1PK0000001/dev-12/user/x", false},
		{"/sys/a1PK0000001/dev-12/thing", false},
		{"$aws/things/dev-2/shadow/update", false},
		{"$aws/events/presence/connected/x", false},
		{"$SYS/broker/clients", false},
		{"/ext/register", false},
	}
	for _, tt := range tests {
		if got := deviceMay(pk, dn, tt.topic); got != tt.want {
			t.Errorf("deviceMay(%q) = %v, want %v", tt.topic, got, tt.want)
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
	for _, s := range []string{"/sys/PK/dn/#", "/PK/dn/user/+", "$aws/things/dn/x", "#", "/sys/PK/+/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if !deviceMay("PK", "dn", topic) {
			return
		}
		// The allowed filter must begin with one of the device's literal
		// prefixes, so it cannot match a topic of device "dn2" or "dX".
		ok := false
		for _, p := range devicePrefixes("PK", "dn") {
			if strings.HasPrefix(topic, p) {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("allowed %q outside the prefixes", topic)
		}
		for _, other := range []string{"/sys/PK/dn2/x", "/PK/dX/user/x", "$aws/things/dn2/x", "/ext/session/PK/d/x"} {
			if matches(topic, other) {
				t.Fatalf("filter %q allowed to dn matches %q", topic, other)
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
