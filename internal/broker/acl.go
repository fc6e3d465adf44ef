package broker

import (
	"strings"

	"github.com/corral-iot/corral/internal/registry"
)

// identity is who a session belongs to.
//
// The flags are kept together, so that a session (which holds one for the
// connection's life) takes 176 B rather than 192.
type identity struct {
	accountID  string // owning account
	productKey string // devices only
	deviceName string // devices only
	thingName  string // devices only: its $aws/things/{thingName}/ name ("": the default)
	keyID      string // application clients only
	// role is an application key's role: readonly keys subscribe only.
	role     registry.Role
	clientID string // canonical session id
	// register is set on a dynamic-registration session: the answer to
	// send before closing it.
	register *registerAnswer
	// clientId flags of a device (see the protocol spec): serverSubs
	// (_ss=1) asks corral to subscribe its downlinks, gateway (gw=1) to
	// add its logged-in sub-devices' too, rrpcExt (ext=3) for v4 RRPC.
	serverSubs, gateway, rrpcExt bool
	app                          bool // an application client (API key), not a device
	// first is set on a device's first session: it had never been online
	// when it connected (registry.Presence.First).
	first bool
}

// withFlags reads a device's clientId flags; unknown ones are ignored.
func (id identity) withFlags(params map[string]string) identity {
	id.serverSubs = params["_ss"] == "1"
	id.gateway = params["gw"] == "1"
	id.rrpcExt = params["ext"] == "3"
	return id
}

type registerAnswer struct {
	topic   string
	payload []byte
}

// deviceKey names a device in maps.
func deviceKey(pk, dn string) string { return pk + "/" + dn }

// thing is the device's thing name, its default when none was set.
func (id identity) thing() string {
	if id.thingName != "" {
		return id.thingName
	}
	return registry.DefaultThingName(id.productKey, id.deviceName)
}

// thingsPrefix starts the topics of AWS-style things (shadows).
const thingsPrefix = "$aws/things/"

// deviceMay reports whether a device may use a topic or filter: one of
// its own device topics (parseDeviceTopic; a "+" in the ProductKey or
// DeviceName position stands for its own, and each delivery is checked
// against the concrete topic), or one of its thing's. Its thing name,
// unlike its DeviceName, is unique across the instance.
func deviceMay(id identity, topic string) bool {
	if t, ok := parseDeviceTopic(topic); ok {
		return t.names(id.productKey, id.deviceName)
	}
	rest, ok := strings.CutPrefix(topic, thingsPrefix)
	if !ok {
		return false
	}
	if id.thingName != "" {
		rest, ok = strings.CutPrefix(rest, id.thingName)
	} else { // the default name, {pk}.{dn}, not built for each check
		rest, ok = strings.CutPrefix(rest, id.productKey)
		if ok {
			rest, ok = strings.CutPrefix(rest, ".")
		}
		if ok {
			rest, ok = strings.CutPrefix(rest, id.deviceName)
		}
	}
	return ok && len(rest) > 1 && rest[0] == '/'
}

// productOfTopic returns the ProductKey of a device topic of any device,
// for application clients' rights: every family parseDeviceTopic reads,
// and /sys/{pk}/…, /{pk}/…, /ext/session/{pk}/… filters. Wildcards in the
// ProductKey position are refused.
func productOfTopic(topic string) (string, bool) {
	if t, ok := parseDeviceTopic(topic); ok {
		if t.pk == "+" {
			return "", false
		}
		return t.pk, true
	}
	var rest string
	switch {
	case strings.HasPrefix(topic, "/sys/"):
		rest = topic[len("/sys/"):]
	case strings.HasPrefix(topic, "/ext/session/"):
		rest = topic[len("/ext/session/"):]
	case strings.HasPrefix(topic, "/"):
		rest = topic[1:]
	default:
		return "", false
	}
	pk, after, ok := strings.Cut(rest, "/")
	if !ok || pk == "" || after == "" || strings.ContainsAny(pk, "+#") {
		return "", false
	}
	return pk, true
}

// thingOfTopic returns the thing name of a $aws/things/{thingName}/…
// topic or filter; wild is set when a wildcard stands in its place (only
// a delivery, whose topic is concrete, can then be checked). ok is false
// for other topics and for a thing topic with nothing after the name.
func thingOfTopic(topic string) (name string, wild, ok bool) {
	rest, found := strings.CutPrefix(topic, thingsPrefix)
	if !found {
		return "", false, false
	}
	if rest == "#" {
		return "", true, true
	}
	name, after, found := strings.Cut(rest, "/")
	if !found || after == "" || name == "" {
		return "", false, false
	}
	if name == "+" {
		return "", true, true
	}
	if strings.ContainsAny(name, "+#") {
		return "", false, false
	}
	return name, false, true
}

// presencePrefix is where presence events are published.
const presencePrefix = "$aws/events/presence/"

// eventsPrefix is where corral publishes its own events.
const eventsPrefix = "$corral/events/"

// eventProduct reads the ProductKey from an event topic or filter:
// $aws/events/presence/{type}/{pk}.{dn} and
// $corral/events/{kind}/{pk}/…. ok is false for other topics; pk is ""
// when a wildcard stands where the ProductKey would be (or nothing does),
// so only a delivery, whose topic is concrete, can be checked.
func eventProduct(topic string) (pk string, ok bool) {
	var seg string
	switch {
	case strings.HasPrefix(topic, presencePrefix):
		parts := strings.SplitN(topic[len(presencePrefix):], "/", 3)
		if len(parts) < 2 {
			return "", parts[0] == "#"
		}
		if len(parts) == 3 {
			return "", false // presence topics have exactly two levels more
		}
		seg, _, _ = strings.Cut(parts[1], ".")
	case strings.HasPrefix(topic, eventsPrefix):
		parts := strings.SplitN(topic[len(eventsPrefix):], "/", 3)
		if len(parts) < 2 {
			return "", parts[0] == "#"
		}
		seg = parts[1]
	default:
		return "", false
	}
	if seg == "+" || seg == "#" {
		return "", true
	}
	if seg == "" || strings.ContainsAny(seg, "+#") {
		return "", false
	}
	return seg, true
}
