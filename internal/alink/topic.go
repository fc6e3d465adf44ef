package alink

import (
	"fmt"
	"strings"
)

// Topic is a parsed device topic.
type Topic struct {
	Kind       string // "sys", "session", "ntp" or "user"
	ProductKey string
	DeviceName string
	// Rest is what follows the device prefix, e.g. "thing/topo/add".
	Rest string
	// Reply is true for …_reply topics.
	Reply bool
}

// ParseTopic parses /sys/{pk}/{dn}/…, /ext/session/{pk}/{dn}/…,
// /ext/ntp/{pk}/{dn}/… and /{pk}/{dn}/user/… topics. Wildcards in the productKey or deviceName
// position are refused: the result names one device.
func ParseTopic(topic string) (Topic, error) {
	var t Topic
	var rest string
	switch {
	case strings.HasPrefix(topic, "/sys/"):
		t.Kind, rest = "sys", topic[len("/sys/"):]
	case strings.HasPrefix(topic, "/ext/session/"):
		t.Kind, rest = "session", topic[len("/ext/session/"):]
	case strings.HasPrefix(topic, "/ext/ntp/"):
		t.Kind, rest = "ntp", topic[len("/ext/ntp/"):]
	case strings.HasPrefix(topic, "/"):
		t.Kind, rest = "user", topic[1:]
	default:
		return t, fmt.Errorf("%w: not a device topic", ErrMalformed)
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return t, fmt.Errorf("%w: topic lacks productKey/deviceName/…", ErrMalformed)
	}
	if strings.ContainsAny(parts[0]+parts[1], "+#") {
		// A filter, not a topic: its wildcards would stand for any device.
		return t, fmt.Errorf("%w: wildcard in productKey/deviceName", ErrMalformed)
	}
	t.ProductKey, t.DeviceName, t.Rest = parts[0], parts[1], parts[2]
	if t.Kind == "user" && !strings.HasPrefix(t.Rest, "user/") {
		return t, fmt.Errorf("%w: custom topics are /{pk}/{dn}/user/…", ErrMalformed)
	}
	if strings.HasSuffix(t.Rest, "_reply") {
		t.Reply = true
		t.Rest = strings.TrimSuffix(t.Rest, "_reply")
	}
	return t, nil
}

// Method derives the Alink method from a topic's rest, as the Link SDK v4
// (which omits "method") expects the platform to:
// thing/topo/add → thing.topo.add, combine/batch_login → combine.batch_login,
// thing/event/property/post → thing.event.property.post.
func (t Topic) Method() string {
	return strings.ReplaceAll(t.Rest, "/", ".")
}

// SysTopic builds /sys/{pk}/{dn}/{rest}.
func SysTopic(pk, dn, rest string) string { return "/sys/" + pk + "/" + dn + "/" + rest }

// SessionTopic builds /ext/session/{pk}/{dn}/{rest}.
func SessionTopic(pk, dn, rest string) string { return "/ext/session/" + pk + "/" + dn + "/" + rest }

// NTPTopic builds /ext/ntp/{pk}/{dn}/{rest} ("request" or "response").
func NTPTopic(pk, dn, rest string) string { return "/ext/ntp/" + pk + "/" + dn + "/" + rest }

// ErrorTopic builds /ext/error/{pk}/{dn}, where the platform tells a
// gateway of a failed sub-device action.
func ErrorTopic(pk, dn string) string { return "/ext/error/" + pk + "/" + dn }
