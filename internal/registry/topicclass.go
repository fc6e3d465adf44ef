package registry

import (
	"fmt"
	"strings"
)

// TopicOperation is what a device may do on the topics of a custom topic
// class, as Alibaba's topic classes say it.
type TopicOperation string

// Topic class operations.
const (
	TopicPub TopicOperation = "pub" // the device publishes (uplink)
	TopicSub TopicOperation = "sub" // the device subscribes (downlink)
	TopicAll TopicOperation = "all" // both
)

// TopicClass is a product's custom topic class:
// /{productKey}/${deviceName}/user/{Suffix}, where Suffix is what follows
// "user/" (it may hold MQTT wildcards as a filter does, e.g. "cmd/+").
type TopicClass struct {
	Suffix      string         `json:"suffix"`
	Operation   TopicOperation `json:"operation"`
	Description string         `json:"description,omitempty"`
}

// Template is the class as the console shows it:
// /{pk}/${deviceName}/user/{suffix}.
func (c TopicClass) Template(pk string) string {
	return "/" + pk + "/${deviceName}/user/" + c.Suffix
}

// DefaultTopicClasses are the classes a new product starts with, as on
// Alibaba's platform.
func DefaultTopicClasses() []TopicClass {
	return []TopicClass{
		{Suffix: "update", Operation: TopicPub, Description: "the device reports data"},
		{Suffix: "update/error", Operation: TopicPub, Description: "the device reports errors"},
		{Suffix: "get", Operation: TopicSub, Description: "the device receives data"},
	}
}

// MatchTopicClass returns the first class whose suffix (a filter) matches
// the part of a /{pk}/{dn}/user/… topic after "user/".
func MatchTopicClass(classes []TopicClass, suffix string) (TopicClass, bool) {
	for _, c := range classes {
		if matchFilter(c.Suffix, suffix) {
			return c, true
		}
	}
	return TopicClass{}, false
}

// matchFilter reports whether an MQTT topic filter matches a topic name.
func matchFilter(filter, topic string) bool {
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !tmore {
			return !fmore || frest == "#" // "a/#" matches "a" too
		}
		if !fmore {
			return false
		}
		filter, topic = frest, trest
	}
}

// Limits of topic classes.
const (
	MaxTopicClasses        = 50
	MaxTopicSuffixLen      = 128
	MaxTopicDescriptionLen = 100
)

// ValidateTopicClasses checks a product's set of classes: each class, at
// most MaxTopicClasses, no suffix twice, and none that an earlier class
// hides (the first class matching a topic decides, so a later one it
// covers would never apply). field names the list, e.g. "topicClasses".
func ValidateTopicClasses(field string, cs []TopicClass) error {
	if len(cs) > MaxTopicClasses {
		return invalid(field, "at most %d topic classes, got %d", MaxTopicClasses, len(cs))
	}
	for i, c := range cs {
		at := fmt.Sprintf("%s[%d]", field, i)
		if err := ValidateTopicClass(at+".", c); err != nil {
			return err
		}
		for j, prev := range cs[:i] {
			switch {
			case prev.Suffix == c.Suffix:
				return invalid(at+".suffix", "%q is already %s[%d]", c.Suffix, field, j)
			case coversFilter(prev.Suffix, c.Suffix):
				return invalid(at+".suffix", "%q would never apply: %s[%d] (%q) comes first and matches all its topics", c.Suffix, field, j, prev.Suffix)
			}
		}
	}
	return nil
}

// ValidateTopicClass checks one class; prefix goes before the field names
// ("topicClasses[2]." or "" for a class on its own).
func ValidateTopicClass(prefix string, c TopicClass) error {
	if err := ValidateTopicSuffix(prefix+"suffix", c.Suffix); err != nil {
		return err
	}
	switch c.Operation {
	case TopicPub, TopicSub, TopicAll:
	default:
		return invalid(prefix+"operation", "must be pub (the device publishes), sub (the device subscribes) or all, got %q", c.Operation)
	}
	return validateText(prefix+"description", c.Description, MaxTopicDescriptionLen, false)
}

// ValidateTopicSuffix checks what follows /{pk}/${deviceName}/user/ in a
// class: up to MaxTopicSuffixLen bytes of '/'-separated segments, each of
// letters, digits, '_' and '-', or a whole-segment MQTT wildcard: '+', or
// '#' as the last segment.
func ValidateTopicSuffix(field, s string) error {
	switch {
	case s == "":
		return invalid(field, "is required (what follows /{productKey}/${deviceName}/user/, e.g. cmd/+)")
	case len(s) > MaxTopicSuffixLen:
		return invalid(field, "must be at most %d bytes, got %d", MaxTopicSuffixLen, len(s))
	case strings.Contains(s, "${"):
		return invalid(field, "must not hold a ${…} placeholder: it is only what follows /{productKey}/${deviceName}/user/")
	case s[0] == '/' || s[len(s)-1] == '/':
		return invalid(field, "must not start or end with '/'")
	}
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		if err := validateTopicSegment(field, seg, i == len(segs)-1); err != nil {
			return err
		}
	}
	return nil
}

func validateTopicSegment(field, seg string, last bool) error {
	switch seg {
	case "":
		return invalid(field, "must not have an empty segment ('//')")
	case "+":
		return nil
	case "#":
		if !last {
			return invalid(field, "'#' may only be the last segment")
		}
		return nil
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return invalid(field, "segment %q: use letters, digits, _ and -, or a whole segment + (one level) or # (the rest, last)", seg)
		}
	}
	return nil
}

// coversFilter reports whether every topic the filter specific matches is
// also matched by the filter general.
func coversFilter(general, specific string) bool {
	g, s := strings.Split(general, "/"), strings.Split(specific, "/")
	for i, gs := range g {
		if gs == "#" {
			return true
		}
		if i >= len(s) || s[i] == "#" {
			return false
		}
		if gs != "+" && gs != s[i] {
			return false
		}
	}
	return len(g) == len(s)
}

// insertTopicClass adds c to cs ahead of the first class that covers it,
// so that it applies (a product migrated with a catch-all '#' keeps it
// last); otherwise at the end.
func insertTopicClass(cs []TopicClass, c TopicClass) []TopicClass {
	out := make([]TopicClass, 0, len(cs)+1)
	for i, prev := range cs {
		if coversFilter(prev.Suffix, c.Suffix) {
			out = append(append(append(out, cs[:i]...), c), cs[i:]...)
			return out
		}
	}
	return append(append(out, cs...), c)
}
