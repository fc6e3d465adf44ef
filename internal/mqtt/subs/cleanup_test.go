package subs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// TestWideNodes crosses the sizes where children and subscribers move from
// slices to maps and back, against the model, and ends with an empty tree.
func TestWideNodes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ix, md := New(), model{}
	const n = 60
	for i := 0; i < n; i++ {
		c := fmt.Sprintf("c%02d", i)
		for _, f := range []string{
			fmt.Sprintf("dev/%d/+", i%20), "dev/+/cmd", "fan/" + c, "$share/g/dev/#",
		} {
			o := Options{QoS: byte(i % 3), SubscriptionID: uint32(i + 1)}
			ix.Subscribe(c, f, o)
			md[[2]string{c, f}] = o
		}
	}
	topics := []string{"dev/3/cmd", "dev/3/x", "fan/c07", "dev/99/cmd"}
	for _, tp := range topics {
		check(t, ix, md, tp, "")
	}
	// Leave in random order, half by unsubscribe and half by session end.
	for _, i := range r.Perm(n) {
		c := fmt.Sprintf("c%02d", i)
		if i%2 == 0 {
			ix.RemoveClient(c)
			for k := range md {
				if k[0] == c {
					delete(md, k)
				}
			}
		} else {
			for k := range md {
				if k[0] == c {
					ix.Unsubscribe(k[0], k[1])
					delete(md, k)
				}
			}
		}
		check(t, ix, md, topics[i%len(topics)], "")
		sameShape(t, ix, md)
	}
	if s, nodes := ix.Stats(), countNodes(&ix.root); s != (Stats{}) || nodes != 0 || !ix.root.empty() {
		t.Fatalf("%+v, %d nodes", s, nodes)
	}
}

// TestConcurrent runs matches beside subscribes and removals; it is for -race.
func TestConcurrent(t *testing.T) {
	ix := New()
	ix.Subscribe("fixed", "a/+/c", Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m Matches
			for {
				select {
				case <-stop:
					return
				default:
				}
				ix.Match("a/b/c", "", func(string) bool { return true }, &m)
				found := false
				for _, s := range m.Plain {
					found = found || s.ClientID == "fixed"
				}
				if !found {
					t.Error("lost a subscription nobody removed")
					return
				}
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		c := fmt.Sprintf("c%d", i%50)
		ix.Subscribe(c, fmt.Sprintf("a/%d/c", i%7), Options{})
		ix.Subscribe(c, "$share/g/a/#", Options{})
		if i%3 == 0 {
			ix.RemoveClient(c)
		}
	}
	close(stop)
	wg.Wait()
}

// TestMatchesReuse alternates large and small results in one Matches: each
// must equal a fresh Matches' (the by-client map is cleared between uses).
func TestMatchesReuse(t *testing.T) {
	ix := New()
	for i := 0; i < 40; i++ {
		c := fmt.Sprintf("c%02d", i)
		ix.Subscribe(c, "wide/#", Options{SubscriptionID: 1})
		ix.Subscribe(c, "wide/+", Options{SubscriptionID: uint32(i + 2), QoS: 1})
		ix.Subscribe(c, fmt.Sprintf("one/%d", i), Options{SubscriptionID: 5})
	}
	var reused Matches
	for i := 0; i < 20; i++ {
		topic := "wide/x"
		if i%2 == 1 {
			topic = fmt.Sprintf("one/%d", i)
		}
		var fresh Matches
		ix.Match(topic, "", nil, &fresh)
		ix.Match(topic, "", nil, &reused)
		if a, b := plainIDs(&fresh), plainIDs(&reused); !slices.Equal(a, b) || len(a) == 0 {
			t.Fatalf("%s: reused %q, fresh %q", topic, b, a)
		}
	}
}
