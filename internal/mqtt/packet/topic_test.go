package packet

import (
	"errors"
	"strings"
	"testing"
)

func TestValidTopicName(t *testing.T) {
	cases := []struct {
		topic string
		ok    bool
	}{
		{"a", true},
		{"a/b/c", true},
		{"/", true},
		{"//", true},
		{"a//b", true},
		{"$SYS/broker/uptime", true},
		{"sport/tennis player1", true},
		{"/sys/pk/dn/thing/event/property/post", true},
		{"ünïcödé/✓", true},
		{"", false},
		{"a/+", false},
		{"a/#", false},
		{"+", false},
		{"#", false},
		{"a+b", false},
		{strings.Repeat("a", 65536), false},
	}
	for _, tc := range cases {
		err := ValidTopicName(tc.topic)
		if (err == nil) != tc.ok {
			t.Errorf("ValidTopicName(%.20q) = %v, want ok=%v", tc.topic, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrTopicNameInvalid) {
			t.Errorf("ValidTopicName(%.20q): %v does not carry TopicNameInvalid", tc.topic, err)
		}
	}
}

func TestValidTopicFilter(t *testing.T) {
	cases := []struct {
		filter string
		ok     bool
	}{
		{"a", true},
		{"#", true},
		{"+", true},
		{"/", true},
		{"+/+", true},
		{"/+", true},
		{"a/#", true},
		{"a/+/c", true},
		{"+/tennis/#", true},
		{"a//#", true},
		{"$SYS/#", true},
		{"$share/g/a/b", true},
		{"$share/g/#", true},
		{"$share/g//", true},
		{"$shared/a", true}, // not a share: an ordinary filter
		{"$share", true},    // idem
		{"", false},
		{"a#", false},
		{"a/#/b", false},
		{"#/a", false},
		{"a/b#", false},
		{"a+", false},
		{"a/+b/c", false},
		{"++", false},
		{"$share/", false},
		{"$share/g", false},
		{"$share/g/", false},
		{"$share//a", false},
		{"$share/g+/a", false},
		{"$share/#/a", false},
		{"$share/g/a#", false},
		{strings.Repeat("a", 65536), false},
	}
	for _, tc := range cases {
		err := ValidTopicFilter(tc.filter)
		if (err == nil) != tc.ok {
			t.Errorf("ValidTopicFilter(%.20q) = %v, want ok=%v", tc.filter, err, tc.ok)
		}
		if err != nil && Reason(err) != TopicFilterInvalid {
			t.Errorf("ValidTopicFilter(%.20q): %v does not carry TopicFilterInvalid", tc.filter, err)
		}
	}
}

func TestParseShared(t *testing.T) {
	cases := []struct {
		in, group, filter string
		shared            bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/consumer1/sport/tennis/+", "consumer1", "sport/tennis/+", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g", "g", "", true},
		{"a/b", "", "a/b", false},
		{"$SYS/#", "", "$SYS/#", false},
		{"$sharex/g/a", "", "$sharex/g/a", false},
	}
	for _, tc := range cases {
		g, f, ok := ParseShared(tc.in)
		if g != tc.group || f != tc.filter || ok != tc.shared {
			t.Errorf("ParseShared(%q) = %q, %q, %v", tc.in, g, f, ok)
		}
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		filter, topic string
		match         bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a/b", "a/b", true},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"a/#", "a", true}, // the parent level too
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"+/+", "/", true},
		{"/+", "/a", true},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"+/b/#", "a/b", true},
		{"a//b", "a//b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"/sys/+/+/thing/#", "/sys/pk/dn/thing/event/property/post", true},
	}
	for _, tc := range cases {
		if got := Match(tc.filter, tc.topic); got != tc.match {
			t.Errorf("Match(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}

func TestV311ConnackCode(t *testing.T) {
	for in, want := range map[ReasonCode]byte{Success: 0, UnsupportedProtocolVersion: 1, ClientIdentifierNotValid: 2,
		ServerUnavailable: 3, BadUsernameOrPassword: 4, NotAuthorized: 5} {
		if got, ok := V311ConnackCode(in); !ok || got != want {
			t.Errorf("V311ConnackCode(0x%02X) = %d, %v", byte(in), got, ok)
		}
	}
	if _, ok := V311ConnackCode(MalformedPacket); ok {
		t.Error("malformed packet has a 3.1.1 return code")
	}
}
