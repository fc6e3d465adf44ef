package subs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// model is the brute-force reference: every subscription in a map, matched
// one by one with packet.Match.
type model map[[2]string]Options // {client, filter} → options

// want renders what Match must return for topic, in the form plainIDs uses,
// and the shared groups ("share filter") that must each get one delivery.
func (md model) want(topic, publisher string) (plain []string, groups map[string][]string) {
	type acc struct {
		qos byte
		ids []uint32
	}
	per := map[string]*acc{}
	groups = map[string][]string{}
	for k, o := range md {
		client, f := k[0], k[1]
		share, inner, shared := packet.ParseShared(f)
		if !packet.Match(inner, topic) {
			continue
		}
		if shared {
			g := share + " " + inner
			groups[g] = append(groups[g], client)
			continue
		}
		if o.NoLocal && client == publisher {
			continue
		}
		a := per[client]
		if a == nil {
			a = &acc{}
			per[client] = a
		}
		a.qos = max(a.qos, o.QoS)
		if o.SubscriptionID != 0 {
			a.ids = append(a.ids, o.SubscriptionID)
		}
	}
	for c, a := range per {
		slices.Sort(a.ids)
		if a.ids == nil {
			a.ids = []uint32{}
		}
		plain = append(plain, fmt.Sprintf("%s:%d:%v", c, a.qos, a.ids))
	}
	slices.Sort(plain)
	return plain, groups
}

// check compares ix with md for topic and publisher.
func check(t *testing.T, ix *Index, md model, topic, publisher string) {
	t.Helper()
	var m Matches
	ix.Match(topic, publisher, nil, &m)
	wantPlain, wantGroups := md.want(topic, publisher)
	if got := plainIDs(&m); !slices.Equal(got, wantPlain) {
		t.Fatalf("topic %q publisher %q: got %q, want %q", topic, publisher, got, wantPlain)
	}
	if len(m.Shared) != len(wantGroups) {
		t.Fatalf("topic %q: %d shared deliveries, want %d (%v)", topic, len(m.Shared), len(wantGroups), wantGroups)
	}
	seen := map[string]bool{}
	for _, s := range m.Shared {
		// The group's key needs its filter, which the delivery does not
		// carry: find the group among those with this share name that has
		// the member and has not been seen.
		found := false
		for g, members := range wantGroups {
			if strings.HasPrefix(g, s.Share+" ") && !seen[g] && slices.Contains(members, s.ClientID) {
				seen[g], found = true, true
				break
			}
		}
		if !found {
			t.Fatalf("topic %q: shared delivery %+v not in %v", topic, s, wantGroups)
		}
	}
}

func randFilter(r *rand.Rand) string {
	levels := []string{"a", "b", "", "+", "$s"}
	n := 1 + r.IntN(4)
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, levels[r.IntN(len(levels))])
	}
	if r.IntN(3) == 0 {
		parts = append(parts, "#")
	}
	f := strings.Join(parts, "/")
	if r.IntN(6) == 0 {
		f = "$share/" + []string{"g", "h"}[r.IntN(2)] + "/" + f
	}
	if packet.ValidTopicFilter(f) != nil { // "" alone
		return randFilter(r)
	}
	return f
}

func randTopic(r *rand.Rand) string {
	levels := []string{"a", "b", "", "$s"}
	n := 1 + r.IntN(5)
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, levels[r.IntN(len(levels))])
	}
	if t := strings.Join(parts, "/"); t != "" {
		return t
	}
	return randTopic(r)
}

// TestMatchesBruteForce applies random subscribes, unsubscribes and client
// removals to the index and the model and compares every match, then checks
// that removing everything leaves no node.
func TestMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ix, md := New(), model{}
	clients := []string{"c0", "c1", "c2", "c3"}
	for step := 0; step < 4000; step++ {
		c := clients[r.IntN(len(clients))]
		switch op := r.IntN(20); {
		case op < 12:
			f := randFilter(r)
			if err := packet.ValidTopicFilter(f); err != nil {
				t.Fatalf("generator made %q: %v", f, err)
			}
			o := Options{QoS: byte(r.IntN(3)), NoLocal: r.IntN(3) == 0, SubscriptionID: uint32(r.IntN(4))}
			_, had := md[[2]string{c, f}]
			if isNew := ix.Subscribe(c, f, o); isNew == had {
				t.Fatalf("Subscribe(%s, %q) isNew %v, had %v", c, f, isNew, had)
			}
			md[[2]string{c, f}] = o
		case op < 17:
			f := randFilter(r)
			_, had := md[[2]string{c, f}]
			if ok := ix.Unsubscribe(c, f); ok != had {
				t.Fatalf("Unsubscribe(%s, %q) = %v, had %v", c, f, ok, had)
			}
			delete(md, [2]string{c, f})
		default:
			ix.RemoveClient(c)
			for k := range md {
				if k[0] == c {
					delete(md, k)
				}
			}
		}
		if got := ix.Stats().Subscriptions; got != len(md) {
			t.Fatalf("step %d: %d subscriptions, model has %d", step, got, len(md))
		}
		check(t, ix, md, randTopic(r), clients[r.IntN(len(clients))])
		if step%50 == 0 {
			sameShape(t, ix, md)
		}
	}
	for _, c := range clients {
		ix.RemoveClient(c)
	}
	if s := ix.Stats(); s != (Stats{}) {
		t.Fatalf("after removing every client: %+v", s)
	}
	if n := countNodes(&ix.root); n != 0 || !ix.root.empty() {
		t.Fatalf("%d nodes left", n)
	}
}

// countNodes walks the tree, so that a node the counter forgot shows.
func countNodes(n *node) int {
	total := 0
	visit := func(c *node) {
		if c != nil {
			if c.parent != n {
				panic("child with a wrong parent")
			}
			total += 1 + countNodes(c)
		}
	}
	for _, c := range n.kids {
		visit(c)
	}
	if n.x != nil {
		for _, c := range n.x.kidMap {
			visit(c)
		}
	}
	visit(n.plus())
	visit(n.hash())
	return total
}

// FuzzMatch subscribes each valid line of filters (three clients in turn,
// identifiers 1, 2, …) and compares the match for topic with the model, then
// unsubscribes them all and expects an empty tree.
func FuzzMatch(f *testing.F) {
	f.Add("a/+\n#\n+/b\na/b\n$share/g/a/#", "a/b", "c1")
	f.Add("+/+\n$SYS/#\n#", "$SYS/x", "")
	f.Add("/+\n//\n+/#", "//", "c0")
	f.Add("a/#\na/+/#\na", "a", "c2")
	f.Fuzz(func(t *testing.T, filters, topic, publisher string) {
		if packet.ValidTopicName(topic) != nil {
			return
		}
		ix, md := New(), model{}
		for i, fl := range strings.Split(filters, "\n") {
			if packet.ValidTopicFilter(fl) != nil {
				continue
			}
			c := fmt.Sprintf("c%d", i%3)
			o := Options{QoS: byte(i % 3), NoLocal: i%4 == 1, SubscriptionID: uint32(i + 1)}
			ix.Subscribe(c, fl, o)
			md[[2]string{c, fl}] = o
		}
		check(t, ix, md, topic, publisher)
		for k := range md {
			if !ix.Unsubscribe(k[0], k[1]) {
				t.Fatalf("Unsubscribe(%q, %q) found nothing", k[0], k[1])
			}
		}
		if s, n := ix.Stats(), countNodes(&ix.root); s != (Stats{}) || n != 0 {
			t.Fatalf("after unsubscribing all: %+v, %d nodes", s, n)
		}
	})
}

// sameShape checks that ix has the nodes an index built afresh from md has:
// splits made by filters since removed have been folded back.
func sameShape(t *testing.T, ix *Index, md model) {
	t.Helper()
	fresh := New()
	for k, o := range md {
		fresh.Subscribe(k[0], k[1], o)
	}
	got, want := countNodes(&ix.root), countNodes(&fresh.root)
	if got != want || ix.Stats().Nodes != got {
		t.Fatalf("%d nodes (counter %d), built afresh %d", got, ix.Stats().Nodes, want)
	}
}

// TestRadixShape: a device's filters share nodes up to where they branch,
// and chains are one node.
func TestRadixShape(t *testing.T) {
	ix := New()
	ix.Subscribe("c", "/sys/pk/dn/thing/service/property/set", Options{})
	if n := ix.Stats().Nodes; n != 1 {
		t.Fatalf("one filter: %d nodes", n)
	}
	ix.Subscribe("c", "/sys/pk/dn/thing/service/+", Options{})
	// "/sys/pk/dn/thing/service", "property/set", "+".
	if n := ix.Stats().Nodes; n != 3 {
		t.Fatalf("two filters: %d nodes", n)
	}
	ix.Subscribe("c", "/sys/pk/dn/thing/event/+/post_reply", Options{})
	// "/sys/pk/dn/thing", "service", "property/set", "+", "event", "+", "post_reply".
	if n := ix.Stats().Nodes; n != 7 {
		t.Fatalf("three filters: %d nodes", n)
	}
	var m Matches
	for topic, want := range map[string]int{
		"/sys/pk/dn/thing/service/property/set": 1, "/sys/pk/dn/thing/service/property": 1,
		"/sys/pk/dn/thing/service/property/set/x": 0, "/sys/pk/dn/thing/service": 0,
		"/sys/pk/dn/thing/event/x/post_reply": 1, "/sys/pk/dn/thing/event/x/post": 0,
		"/sys/pk/dn": 0, "/sys/pk/dnx/thing/service/a": 0,
	} {
		ix.Match(topic, "", nil, &m)
		if m.Len() != want {
			t.Errorf("%s: %d deliveries, want %d", topic, m.Len(), want)
		}
	}
	ix.Unsubscribe("c", "/sys/pk/dn/thing/event/+/post_reply")
	ix.Unsubscribe("c", "/sys/pk/dn/thing/service/+")
	if n := ix.Stats().Nodes; n != 1 || ix.root.kids[0].level != "/sys/pk/dn/thing/service/property/set" {
		t.Fatalf("folded back: %d nodes", n)
	}
}
