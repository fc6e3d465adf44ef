package subs

import (
	"fmt"
	"testing"
)

func TestSharedRoundRobin(t *testing.T) {
	ix := New()
	members := []string{"m0", "m1", "m2"}
	for _, c := range members {
		ix.Subscribe(c, "$share/g/jobs/+", Options{QoS: 1})
		ix.Subscribe(c, "$share/h/jobs/#", Options{})
	}
	ix.Subscribe("m0", "jobs/+", Options{}) // a plain copy too
	got := map[string]map[string]int{"g": {}, "h": {}}
	var m Matches
	const msgs = 300
	for i := 0; i < msgs; i++ {
		ix.Match("jobs/x", "", nil, &m)
		if len(m.Shared) != 2 || len(m.Plain) != 1 {
			t.Fatalf("message %d: shared %+v plain %+v", i, m.Shared, m.Plain)
		}
		for _, s := range m.Shared {
			got[s.Share][s.ClientID]++
		}
	}
	for share, per := range got {
		for _, c := range members {
			if per[c] != msgs/len(members) {
				t.Errorf("group %s: %v, want %d each", share, per, msgs/len(members))
			}
		}
	}
}

// TestSharedAccept: members accept refuses are skipped, the turn moves on
// past the one that took the message, and when none accepts the member whose
// turn it was is returned as a fallback.
func TestSharedAccept(t *testing.T) {
	ix := New()
	for i := 0; i < 4; i++ {
		ix.Subscribe(fmt.Sprintf("m%d", i), "$share/g/t", Options{})
	}
	offline := map[string]bool{"m1": true}
	accept := func(c string) bool { return !offline[c] }
	count := map[string]int{}
	var m Matches
	for i := 0; i < 300; i++ {
		ix.Match("t", "", accept, &m)
		if len(m.Shared) != 1 || m.Shared[0].Fallback {
			t.Fatalf("%+v", m.Shared)
		}
		count[m.Shared[0].ClientID]++
	}
	if count["m1"] != 0 {
		t.Fatalf("offline member got %d", count["m1"])
	}
	for _, c := range []string{"m0", "m2", "m3"} {
		if count[c] < 90 || count[c] > 110 {
			t.Errorf("unfair: %v", count)
		}
	}
	ix.Match("t", "", func(string) bool { return false }, &m)
	if len(m.Shared) != 1 || !m.Shared[0].Fallback {
		t.Fatalf("none accepting: %+v", m.Shared)
	}
}

// TestSharedLeave: members leaving by unsubscribe and by session end keep the
// rotation going among those left, and the group goes with the last.
func TestSharedLeave(t *testing.T) {
	ix := New()
	for i := 0; i < 3; i++ {
		ix.Subscribe(fmt.Sprintf("m%d", i), "$share/g/a/b", Options{})
	}
	ix.Subscribe("m0", "a/b", Options{})
	ix.Unsubscribe("m1", "$share/g/a/b")
	ix.RemoveClient("m0")
	var m Matches
	for i := 0; i < 5; i++ {
		ix.Match("a/b", "", nil, &m)
		if len(m.Plain) != 0 || len(m.Shared) != 1 || m.Shared[0].ClientID != "m2" {
			t.Fatalf("%+v", m)
		}
	}
	ix.RemoveClient("m2")
	if s, n := ix.Stats(), countNodes(&ix.root); s != (Stats{}) || n != 0 {
		t.Fatalf("%+v, %d nodes", s, n)
	}
}
