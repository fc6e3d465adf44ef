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
	if !strings.HasPrefix(topic, "/") {
		return t, false
	}
	segs := strings.Split(topic[1:], "/")
	// at reads the names at pk and dn; a family with a tail needs one.
	at := func(pk, dn int) (deviceTopic, bool) {
		t := deviceTopic{pk: segs[pk], dn: segs[dn]}
		tail := dn+1 == len(segs) || strings.Join(segs[dn+1:], "") != ""
		return t, validName(t.pk) && validName(t.dn) && tail
	}
	n := len(segs)
	switch {
	case segs[0] == "sys" && n > 3:
		return at(1, 2)
	case segs[0] == "ext" && n > 4 && (segs[1] == "session" || segs[1] == "ntp"):
		return at(2, 3)
	case segs[0] == "ext" && n == 4 && segs[1] == "error",
		segs[0] == "shadow" && n == 4 && (segs[1] == "update" || segs[1] == "get"):
		return at(2, 3)
	case segs[0] == "ota" && n == 5 && segs[1] == "device" && otaKinds[segs[2]]:
		return at(3, 4)
	case segs[0] == "ext" && n > 3 && segs[1] == "rrpc":
		if segs[2] == "" || segs[2] == "#" {
			return t, false
		}
		inner, ok := parseDeviceTopic("/" + strings.Join(segs[3:], "/"))
		if !ok || (!inner.user && segs[3] != "sys") {
			return t, false
		}
		inner.rrpc = true
		return inner, true
	case n > 3 && segs[2] == "user":
		t, ok := at(0, 1)
		t.user, t.suffix = true, strings.Join(segs[3:], "/")
		return t, ok && t.suffix != "" && segs[0] != "sys" && segs[0] != "ext"
	}
	return t, false
}

// validName: a ProductKey or DeviceName position holds a name or "+".
func validName(s string) bool { return s != "" && (s == "+" || !strings.ContainsAny(s, "+#")) }

// hasWildcard reports whether a topic is a filter with wildcards; a
// delivery's topic never has one.
func hasWildcard(topic string) bool { return strings.ContainsAny(topic, "+#") }
