package subs

import (
	"fmt"
	"slices"
	"testing"
)

// plainIDs renders m.Plain as "client:qos:ids" sorted, for comparisons.
func plainIDs(m *Matches) []string {
	var out []string
	for _, s := range m.Plain {
		ids := slices.Clone(s.SubIDs)
		slices.Sort(ids)
		out = append(out, fmt.Sprintf("%s:%d:%v", s.ClientID, s.QoS, ids))
	}
	slices.Sort(out)
	return out
}

func clients(m *Matches) []string {
	var out []string
	for _, s := range m.Plain {
		out = append(out, s.ClientID)
	}
	slices.Sort(out)
	return out
}

func TestMatchTable(t *testing.T) {
	filters := []string{
		"a/b/c", "a/+/c", "a/#", "#", "+", "+/+", "/+", "+/b/#", "a/b/c/#",
		"$SYS/#", "$SYS/+", "+/monitor", "a//c", "/sys/pk/dn/thing/service/+",
		"/sys/pk/+/thing/#", "/sys/#",
	}
	ix := New()
	for _, f := range filters {
		ix.Subscribe(f, f, Options{}) // the client is named after its filter
	}
	tests := []struct {
		topic string
		want  []string
	}{
		{"a/b/c", []string{"#", "+/b/#", "a/#", "a/+/c", "a/b/c", "a/b/c/#"}},
		{"a", []string{"#", "+", "a/#"}},
		{"a/b", []string{"#", "+/+", "+/b/#", "a/#"}},
		{"a//c", []string{"#", "a/#", "a/+/c", "a//c"}},
		{"/x", []string{"#", "+/+", "/+"}},
		{"$SYS/monitor", []string{"$SYS/#", "$SYS/+"}},
		{"$SYS", []string{"$SYS/#"}},
		{"$other/x", nil},
		{"/sys/pk/dn/thing/service/property/set", []string{"#", "/sys/#", "/sys/pk/+/thing/#"}},
		{"/sys/pk/dn/thing/service/x", []string{"#", "/sys/#", "/sys/pk/+/thing/#", "/sys/pk/dn/thing/service/+"}},
	}
	var m Matches
	for _, tt := range tests {
		ix.Match(tt.topic, "", nil, &m)
		if got := clients(&m); !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %q, want %q", tt.topic, got, tt.want)
		}
	}
}

func TestOverlappingSubscriptionIdentifiers(t *testing.T) {
	ix := New()
	ix.Subscribe("c1", "a/+", Options{QoS: 0, SubscriptionID: 1})
	ix.Subscribe("c1", "a/b", Options{QoS: 2, SubscriptionID: 2})
	ix.Subscribe("c1", "#", Options{QoS: 1}) // no identifier
	ix.Subscribe("c1", "a/#", Options{QoS: 1, SubscriptionID: 7, RetainAsPublished: true})
	ix.Subscribe("c2", "a/b", Options{QoS: 1, SubscriptionID: 2})
	var m Matches
	ix.Match("a/b", "", nil, &m)
	want := []string{"c1:2:[1 2 7]", "c2:1:[2]"}
	if got := plainIDs(&m); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, s := range m.Plain {
		if s.RetainAsPublished != (s.ClientID == "c1") {
			t.Errorf("%s: RetainAsPublished %v", s.ClientID, s.RetainAsPublished)
		}
	}
	// A second match reuses the buffers without disturbing the result shape.
	ix.Match("a/c", "", nil, &m)
	if got, want := plainIDs(&m), []string{"c1:1:[1 7]"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Resubscribing replaces the options.
	if ix.Subscribe("c1", "a/+", Options{QoS: 2, SubscriptionID: 9}) {
		t.Fatal("resubscribe reported new")
	}
	ix.Match("a/c", "", nil, &m)
	if got, want := plainIDs(&m), []string{"c1:2:[7 9]"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNoLocal(t *testing.T) {
	ix := New()
	ix.Subscribe("me", "t/+", Options{NoLocal: true})
	ix.Subscribe("me", "t/#", Options{SubscriptionID: 3})
	ix.Subscribe("other", "t/x", Options{NoLocal: true})
	var m Matches
	ix.Match("t/x", "me", nil, &m)
	// "me" still gets the copy of its subscription without No Local.
	if got, want := plainIDs(&m), []string{"me:0:[3]", "other:0:[]"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	ix.Unsubscribe("me", "t/#")
	ix.Match("t/x", "me", nil, &m)
	if got, want := clients(&m), []string{"other"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	ix.Match("t/x", "", nil, &m)
	if got, want := clients(&m), []string{"me", "other"}; !slices.Equal(got, want) {
		t.Fatalf("server publish: got %q, want %q", got, want)
	}
}

func TestSubscribeIsNew(t *testing.T) {
	ix := New()
	for _, f := range []string{"a", "$share/g/a"} {
		if !ix.Subscribe("c", f, Options{}) {
			t.Errorf("%s: first subscribe not new", f)
		}
		if ix.Subscribe("c", f, Options{QoS: 1}) {
			t.Errorf("%s: second subscribe new", f)
		}
	}
	if s := ix.Stats(); s.Subscriptions != 2 || s.Clients != 1 {
		t.Fatalf("stats %+v", s)
	}
	if ix.Unsubscribe("c", "b") || ix.Unsubscribe("d", "a") || ix.Unsubscribe("c", "$share/h/a") {
		t.Fatal("unsubscribed what was not subscribed")
	}
}

func TestSharedFilterIsNotPlain(t *testing.T) {
	ix := New()
	ix.Subscribe("c", "$share/g/a/+", Options{QoS: 1, SubscriptionID: 4})
	var m Matches
	ix.Match("a/b", "", nil, &m)
	if len(m.Plain) != 0 || len(m.Shared) != 1 {
		t.Fatalf("plain %v shared %v", m.Plain, m.Shared)
	}
	s := m.Shared[0]
	if s.ClientID != "c" || s.Share != "g" || s.QoS != 1 || !slices.Equal(s.SubIDs, []uint32{4}) || s.Fallback {
		t.Fatalf("%+v", s)
	}
	ix.Match("$share/g/a/b", "", nil, &m) // a topic, not a filter: no match
	if m.Len() != 0 {
		t.Fatalf("%+v", m)
	}
}

func TestSubscribeAll(t *testing.T) {
	ix := New()
	ix.Subscribe("c", "a/b", Options{})
	isNew := make([]bool, 3)
	ix.SubscribeAll("c", []Subscription{
		{Filter: "a/b", Options: Options{QoS: 2}},
		{Filter: "a/+", Options: Options{SubscriptionID: 5}},
		{Filter: "$share/g/a/#"},
	}, isNew)
	if !slices.Equal(isNew, []bool{false, true, true}) {
		t.Fatalf("isNew %v", isNew)
	}
	var m Matches
	ix.Match("a/b", "", nil, &m)
	if got, want := plainIDs(&m), []string{"c:2:[5]"}; !slices.Equal(got, want) || len(m.Shared) != 1 {
		t.Fatalf("got %q (%d shared), want %q", got, len(m.Shared), want)
	}
	ix.RemoveClient("c")
	if s := ix.Stats(); s != (Stats{}) {
		t.Fatalf("%+v", s)
	}
}
