package registry

import "strings"

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
