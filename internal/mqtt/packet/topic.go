package packet

import "strings"

// Topic names and filters (MQTT 5.0 4.7, 4.8.2; 3.1.1 4.7). Lengths and
// UTF-8 are checked where strings are decoded; these helpers check the
// structure.

const sharePrefix = "$share/"

func topicNameErr(msg string) error { return &Error{Code: TopicNameInvalid, Msg: msg} }

func topicFilterErr(msg string) error { return &Error{Code: TopicFilterInvalid, Msg: msg} }

// ValidTopicName reports whether t may name a published message: at least
// one character, no wildcard. The error carries TopicNameInvalid.
func ValidTopicName(t string) error {
	if t == "" {
		return topicNameErr("empty topic name")
	}
	if len(t) > 65535 {
		return topicNameErr("topic name longer than 65,535 bytes")
	}
	// Two byte scans: strings.ContainsAny builds a set per call, and this
	// runs on every PUBLISH.
	if strings.IndexByte(t, '+') >= 0 || strings.IndexByte(t, '#') >= 0 {
		return topicNameErr("wildcard in topic name " + quote(t))
	}
	return nil
}

// ValidTopicFilter reports whether f may be subscribed to: at least one
// character, '+' only as a whole level, '#' only as the whole last level, and
// a shared subscription ($share/{group}/{filter}) with a non-empty group
// free of wildcards and a valid filter. The error carries TopicFilterInvalid
// (SUBACK 0x8F).
func ValidTopicFilter(f string) error {
	if f == "" {
		return topicFilterErr("empty topic filter")
	}
	if len(f) > 65535 {
		return topicFilterErr("topic filter longer than 65,535 bytes")
	}
	if strings.HasPrefix(f, sharePrefix) {
		rest := f[len(sharePrefix):]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return topicFilterErr("shared subscription without a filter: " + quote(f))
		}
		group, inner := rest[:i], rest[i+1:]
		if group == "" || strings.ContainsAny(group, "+#") {
			return topicFilterErr("invalid share name in " + quote(f))
		}
		if inner == "" {
			return topicFilterErr("shared subscription without a filter: " + quote(f))
		}
		f = inner
	}
	for rest := f; ; {
		level, tail, more := strings.Cut(rest, "/")
		switch {
		case level == "#":
			if more {
				return topicFilterErr("'#' not the last level in " + quote(f))
			}
		case level == "+":
		case strings.ContainsAny(level, "+#"):
			return topicFilterErr("wildcard inside a level in " + quote(f))
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// ParseShared splits a shared subscription $share/{group}/{filter}; shared
// is false for any other filter. It does not validate: ValidTopicFilter does.
func ParseShared(f string) (group, filter string, shared bool) {
	if !strings.HasPrefix(f, sharePrefix) {
		return "", f, false
	}
	group, filter, _ = strings.Cut(f[len(sharePrefix):], "/")
	return group, filter, true
}

// IsSystemTopic reports whether t starts with '$' ($SYS/…, $aws/…): such
// topics are not matched by a filter starting with a wildcard
// ([MQTT-4.7.2-1]).
func IsSystemTopic(t string) bool { return strings.HasPrefix(t, "$") }

// Match reports whether the valid topic name t matches the valid (unshared)
// topic filter f, with the rule for '$' topics. It is the reference the
// engine's subscription tree is tested against.
func Match(f, t string) bool {
	if IsSystemTopic(t) && (strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true // matches the parent level too: "a/#" matches "a"
		}
		tl, trest, tmore := strings.Cut(t, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#"
		case !fmore:
			return false
		}
		f, t = frest, trest
	}
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return "\"" + s + "\""
}
