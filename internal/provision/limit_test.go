package provision

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestLimitersKeepBusyBucketsPastTheirSize: a full limiter map sweeps out
// only buckets that have refilled, so a client that has spent its burst
// does not get a fresh one because many other keys arrived (the old
// wholesale reset did exactly that), while idle keys do not pile up.
func TestLimitersKeepBusyBucketsPastTheirSize(t *testing.T) {
	now := time.Unix(1700000000, 0)
	s := &Service{o: Options{Now: func() time.Time { return now }}}
	ls := limiters{m: map[string]*rate.Limiter{}}
	const r = 1.0 // burst 3
	for i := 0; i < 3; i++ {
		if !s.allow(&ls, "attacker", r) {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if s.allow(&ls, "attacker", r) {
		t.Fatal("a request past the burst allowed")
	}
	// Many other keys arrive at once, each spending a token: the map fills.
	for i := 0; len(ls.m) < maxLimiters; i++ {
		s.allow(&ls, fmt.Sprintf("k%d", i), r)
	}
	s.allow(&ls, "one-more", r)
	if s.allow(&ls, "attacker", r) {
		t.Fatal("the attacker got a fresh burst when the map filled up")
	}
	if len(ls.m) <= maxLimiters {
		t.Fatalf("busy buckets were dropped: %d left", len(ls.m))
	}
	// Once they have all refilled (burst / rate = 3 s), the next sweep
	// (at twice the size, or maxLimiters) drops them.
	now = now.Add(3 * time.Second)
	for i := 0; len(ls.m) < max(ls.sweep, maxLimiters); i++ {
		s.allow(&ls, fmt.Sprintf("later%d", i), r)
	}
	s.allow(&ls, "after-the-sweep", r)
	if len(ls.m) > maxLimiters {
		t.Fatalf("%d buckets after everything refilled, want the idle ones swept", len(ls.m))
	}
	if !s.allow(&ls, "attacker", r) {
		t.Fatal("after its bucket refilled the attacker is still refused")
	}
}
