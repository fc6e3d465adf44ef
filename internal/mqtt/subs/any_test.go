package subs

import (
	"math/rand/v2"
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

func TestAny(t *testing.T) {
	for _, tc := range []struct {
		name  string
		subs  []string // client:filter is c:filter; "-filter" unsubscribes c from it
		noLoc bool
		topic string
		want  bool
	}{
		{name: "empty index", topic: "a/b", want: false},
		{name: "exact", subs: []string{"a/b"}, topic: "a/b", want: true},
		{name: "other topic", subs: []string{"a/c", "b/#"}, topic: "a/b", want: false},
		{name: "plus", subs: []string{"a/+"}, topic: "a/b", want: true},
		{name: "hash below", subs: []string{"a/#"}, topic: "a", want: true},
		{name: "longer filter", subs: []string{"a/b/c"}, topic: "a/b", want: false},
		{name: "multi-level node prefix", subs: []string{"a/b/c/d"}, topic: "a/b/c", want: false},
		{name: "shared", subs: []string{"$share/g/a/+/c"}, topic: "a/b/c", want: true},
		{name: "shared, other filter", subs: []string{"$share/g/a/+/d"}, topic: "a/b/c", want: false},
		{name: "unsubscribed", subs: []string{"a/b", "-a/b"}, topic: "a/b", want: false},
		{name: "shared left", subs: []string{"$share/g/a/b", "-$share/g/a/b"}, topic: "a/b", want: false},
		{name: "wildcard not on $ topic", subs: []string{"#", "+/x"}, topic: "$corral/x", want: false},
		{name: "$ topic by its name", subs: []string{"$corral/#"}, topic: "$corral/events/shadow/p/d", want: true},
		{name: "no local still counts", subs: []string{"a/b"}, noLoc: true, topic: "a/b", want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := New()
			for _, f := range tc.subs {
				if f[0] == '-' {
					ix.Unsubscribe("c", f[1:])
					continue
				}
				ix.Subscribe("c", f, Options{NoLocal: tc.noLoc})
			}
			if got := ix.Any(tc.topic); got != tc.want {
				t.Fatalf("Any(%q) = %v, want %v", tc.topic, got, tc.want)
			}
		})
	}
}

// TestAnyBruteForce compares Any with the model over random
// subscriptions: true exactly when some filter, shared or not, matches.
func TestAnyBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ix, md := New(), model{}
	clients := []string{"c0", "c1", "c2"}
	for step := 0; step < 3000; step++ {
		c := clients[r.IntN(len(clients))]
		f := randFilter(r)
		if r.IntN(3) == 0 {
			ix.Unsubscribe(c, f)
			delete(md, [2]string{c, f})
		} else {
			ix.Subscribe(c, f, Options{NoLocal: r.IntN(2) == 0})
			md[[2]string{c, f}] = Options{}
		}
		topic := randTopic(r)
		want := false
		for k := range md {
			if _, inner, _ := packet.ParseShared(k[1]); packet.Match(inner, topic) {
				want = true
			}
		}
		if got := ix.Any(topic); got != want {
			t.Fatalf("step %d: Any(%q) = %v, want %v (%d subscriptions)", step, topic, got, want, len(md))
		}
	}
}
