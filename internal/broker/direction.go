package broker

import (
	"strings"

	"github.com/corral-iot/corral/internal/registry"
)

// direction says who may publish on a device topic. The table is in
// topicDirection, one place, so topic classes can extend it.
type direction int

const (
	// dirBoth: the device and its account's applications (custom
	// /user/ topics, shadows, v4 RRPC whose request and reply share a topic).
	dirBoth direction = iota
	// dirUp: uplinks, only from the device's own session (or its
	// logged-in gateway's): posts, topo and session requests,
	// registrations, deviceinfo, OTA reports, replies to downlinks.
	dirUp
	// dirDown: downlinks, from applications (and corral): property sets,
	// service calls, RRPC requests, notifications to gateways.
	dirDown
	// dirCorral: corral's own answers to uplinks (…_reply of a request
	// a device made, NTP responses, errors): no client publishes them,
	// so an answer a device reads is corral's.
	dirCorral
	// dirNone: a custom topic that matches none of its product's topic
	// classes; no device may use it (an empty class list means no
	// custom topics at all).
	dirNone
)

func (d direction) String() string {
	return [...]string{"both", "up", "down", "corral", "none"}[d]
}

// downlinkRequests are the /sys/{pk}/{dn}/… requests the platform sends
// to a device; the device answers each on {request}_reply. Every other
// /sys/ request is an uplink, answered by corral.
var downlinkRequests = []string{
	"thing/service/",         // property/set, property/get, {serviceId}
	"rrpc/request/",          // v3 sync services
	"thing/topo/change",      // topology changes told to a gateway
	"thing/topo/add/notify",  // "please add these sub-devices"
	"thing/gateway/permit",   // "you may add devices of this product"
	"thing/disable",          // sub-device lifecycle, through the gateway
	"thing/enable",           //
	"thing/delete",           //
	"thing/config/push",      // remote configuration
	"thing/model/down_raw",   // raw downlink
	"thing/bootstrap/notify", // distribution

	// distribution, v3 SDK: the new endpoint
	"thing/bootstrap/config/push",
}

// topicDirection classifies a device topic (a topic name, or a filter
// whose wildcards stand in the ProductKey or DeviceName positions).
// Topics it does not know are dirBoth: rights decide who may use them at
// all.
func topicDirection(topic string) direction {
	switch {
	case strings.HasPrefix(topic, "/sys/"):
		rest, ok := afterDevice(topic[len("/sys/"):])
		if !ok {
			return dirBoth
		}
		if after, ok := strings.CutPrefix(rest, "rrpc/response/"); ok && after != "" {
			return dirUp
		}
		for _, p := range downlinkRequests {
			if strings.HasPrefix(rest, p) {
				if strings.HasSuffix(rest, "_reply") {
					return dirUp // the device's answer
				}
				return dirDown
			}
		}
		if strings.HasSuffix(rest, "_reply") {
			return dirCorral
		}
		return dirUp
	case strings.HasPrefix(topic, "/ext/session/"):
		if strings.HasSuffix(topic, "_reply") {
			return dirCorral
		}
		return dirUp // combine/login, logout, batch_login, batch_logout
	case strings.HasPrefix(topic, "/ext/ntp/"):
		if strings.HasSuffix(topic, "/request") {
			return dirUp
		}
		return dirCorral
	case strings.HasPrefix(topic, "/ext/error/"):
		return dirCorral
	case strings.HasPrefix(topic, "/ext/rrpc/"):
		return dirBoth // v4 RRPC: the request and its reply share the topic
	case strings.HasPrefix(topic, "/ota/device/"):
		if strings.HasPrefix(topic, "/ota/device/upgrade/") {
			return dirDown
		}
		return dirUp // inform, progress, request
	case strings.HasPrefix(topic, "/shadow/update/"):
		return dirUp
	case strings.HasPrefix(topic, "/shadow/get/"):
		return dirCorral // the shadow service's replies and control pushes
	case strings.HasPrefix(topic, thingsPrefix):
		return shadowDirection(topic[len(thingsPrefix):])
	}
	return dirBoth
}

// shadowDirection classifies {thingName}/… : the shadow service's
// answers (…/accepted, …/rejected, update/delta, update/documents) are
// corral's; requests (get, update, delete) come from the device and its
// account's applications alike, as in AWS IoT.
func shadowDirection(rest string) direction {
	_, rest, _ = strings.Cut(rest, "/")
	if !strings.HasPrefix(rest, "shadow/") {
		return dirBoth
	}
	i := strings.LastIndexByte(rest, '/')
	switch rest[i+1:] {
	case "accepted", "rejected":
		return dirCorral
	case "delta", "documents":
		if strings.HasSuffix(rest[:i], "/update") {
			return dirCorral
		}
	}
	return dirBoth
}

// isShadowGet reports whether a topic is a shadow get request:
// $aws/things/{thing}/shadow/get or …/shadow/name/{name}/get.
func isShadowGet(topic string) bool {
	rest, ok := strings.CutPrefix(topic, thingsPrefix)
	if !ok {
		return false
	}
	thing, rest, _ := strings.Cut(rest, "/")
	if thing == "" || rest == "shadow/get" {
		return thing != ""
	}
	name, ok := strings.CutPrefix(rest, "shadow/name/")
	if !ok {
		return false
	}
	name, op, _ := strings.Cut(name, "/")
	return name != "" && op == "get"
}

// afterDevice skips "{pk}/{dn}/" and returns the rest.
func afterDevice(s string) (string, bool) {
	_, s, ok := strings.Cut(s, "/")
	if !ok {
		return "", false
	}
	_, s, ok = strings.Cut(s, "/")
	return s, ok && s != ""
}

// classDirection is a custom topic's direction by its product's topic
// classes (suffix is what follows "user/"). nil classes are a product whose
// classes were never configured: the legacy rule, /user/ both ways, so
// devices keep working until classes are stored.
func classDirection(classes []registry.TopicClass, suffix string) direction {
	if classes == nil {
		return dirBoth
	}
	c, ok := registry.MatchTopicClass(classes, suffix)
	if !ok {
		return dirNone
	}
	switch c.Operation {
	case registry.TopicPub:
		return dirUp
	case registry.TopicSub:
		return dirDown
	case registry.TopicAll:
		return dirBoth
	}
	return dirNone
}

// devicePublishes reports whether a device publishes on topics of this
// direction: uplinks and shared topics.
func (d direction) devicePublishes() bool { return d == dirUp || d == dirBoth }

// deviceReceives reports whether a device is delivered messages on
// topics of this direction: downlinks, corral's answers, shared topics;
// never its own uplinks.
func (d direction) deviceReceives() bool { return d == dirDown || d == dirCorral || d == dirBoth }

// appMayPublishDirection reports whether an application may publish on a
// topic of this direction: downlinks and shared topics only.
func appMayPublishDirection(topic string) bool { return topicDirection(topic).appPublishes() }

// appPublishes reports whether an application publishes on topics of
// this direction.
func (d direction) appPublishes() bool { return d == dirDown || d == dirBoth }
