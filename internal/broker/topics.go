package broker

import "strings"

// A device topic names its device by ProductKey and DeviceName in a
// position that depends on its family. deviceTopic is a topic (or a
// filter) read that way, so rights compare the device it names instead of
// string prefixes, and a "+" in either position can be checked against
// the concrete topic of each delivery.
type deviceTopic struct {
	pk, dn string
	// user is set for a custom topic /{pk}/{dn}/user/{suffix}; suffix is
	// what follows "user/" (product topic classes apply to it).
	user   bool
	suffix string
	// rrpc is set for /ext/rrpc/{rrpcId}/…: request and reply share the
	// topic.
	rrpc bool
	// session is set for /ext/session/{pk}/{dn}/…: a gateway's own
	// sub-device sessions, never used for a sub-device.
	session bool
}

// wild reports whether a wildcard stands for the ProductKey or DeviceName.
func (t deviceTopic) wild() bool { return t.pk == "+" || t.dn == "+" }

// names reports whether the topic names device pk/dn, a "+" standing
// for any.
func (t deviceTopic) names(pk, dn string) bool {
	return (t.pk == "+" || t.pk == pk) && (t.dn == "+" || t.dn == dn)
}

// otaKinds are the /ota/device/{kind}/{pk}/{dn} topics.
var otaKinds = map[string]bool{"inform": true, "progress": true, "upgrade": true, "request": true}

// parseDeviceTopic reads the device a topic or filter names, for every
// family of device topics:
//
//	/sys/{pk}/{dn}/…             /{pk}/{dn}/user/…
//	/ext/session/{pk}/{dn}/…     /ext/ntp/{pk}/{dn}/…
//	/ext/error/{pk}/{dn}         /shadow/{update|get}/{pk}/{dn}
//	/ota/device/{inform|progress|upgrade|request}/{pk}/{dn}
//	/ext/rrpc/{rrpcId}/sys/{pk}/{dn}/…   /ext/rrpc/{rrpcId}/{pk}/{dn}/user/…
//
// ProductKey and DeviceName are concrete or "+"; a "#" in their place, an
// empty segment there, or a family without its tail is not a device topic
// (ok false), so "#" can stand only after the device is named.
// ($aws/things/{thing}/… are named by thing, see thingOfTopic.)
func parseDeviceTopic(topic string) (t deviceTopic, ok bool) {
	rest, found := strings.CutPrefix(topic, "/")
	if !found {
		return t, false
	}
	return parseFamily(rest, false)
}

// parseFamily reads a topic without its leading "/". Inside a v4 RRPC
// topic (inRRPC) only /sys/ and custom topics may follow the rrpcId. It
// cuts rather than splits: it runs on every delivery.
func parseFamily(s string, inRRPC bool) (deviceTopic, bool) {
	first, rest, _ := strings.Cut(s, "/")
	switch {
	case first == "sys":
		return named(rest, true)
	case first == "ext" && !inRRPC:
		return parseExt(rest)
	case first == "ext":
		return deviceTopic{}, false
	case first == "shadow" && !inRRPC:
		if kind, r, _ := strings.Cut(rest, "/"); (kind == "update" || kind == "get") && strings.Count(r, "/") == 1 {
			return named(r, false)
		}
	case first == "ota" && !inRRPC:
		if dev, r, _ := strings.Cut(rest, "/"); dev == "device" {
			if kind, r, _ := strings.Cut(r, "/"); otaKinds[kind] && strings.Count(r, "/") == 1 {
				return named(r, false)
			}
		}
	}
	return parseUser(s)
}

// parseExt reads the /ext/… families after "ext/".
func parseExt(s string) (deviceTopic, bool) {
	kind, rest, _ := strings.Cut(s, "/")
	switch kind {
	case "session":
		t, ok := named(rest, true)
		t.session = true
		return t, ok
	case "ntp":
		return named(rest, true)
	case "error":
		return named(rest, false)
	case "rrpc":
		id, inner, ok := strings.Cut(rest, "/")
		if !ok || id == "" || id == "#" {
			return deviceTopic{}, false
		}
		t, ok := parseFamily(inner, true)
		t.rrpc = true
		return t, ok
	}
	return deviceTopic{}, false
}

// parseUser reads a custom topic {pk}/{dn}/user/{suffix}.
func parseUser(s string) (deviceTopic, bool) {
	pk, rest, _ := strings.Cut(s, "/")
	dn, rest, _ := strings.Cut(rest, "/")
	u, suffix, _ := strings.Cut(rest, "/")
	t := deviceTopic{pk: pk, dn: dn, user: true, suffix: suffix}
	return t, u == "user" && suffix != "" && pk != "sys" && pk != "ext" && validName(pk) && validName(dn)
}

// named reads "{pk}/{dn}" followed, withTail, by a tail that is not only
// slashes, or else by nothing.
func named(s string, withTail bool) (deviceTopic, bool) {
	pk, s, _ := strings.Cut(s, "/")
	dn, tail, more := strings.Cut(s, "/")
	t := deviceTopic{pk: pk, dn: dn}
	if !validName(pk) || !validName(dn) {
		return t, false
	}
	if withTail {
		return t, more && strings.Trim(tail, "/") != ""
	}
	return t, !more
}

// validName: a ProductKey or DeviceName position holds a name or "+".
// A plain loop: strings.ContainsAny builds a set each call, and this runs
// on every delivery.
func validName(s string) bool {
	if s == "+" {
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '+' || s[i] == '#' {
			return false
		}
	}
	return s != ""
}

// hasWildcard reports whether a topic is a filter with wildcards; a
// delivery's topic never has one.
func hasWildcard(topic string) bool { return strings.ContainsAny(topic, "+#") }
