package retained

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func u32(v uint32) *uint32 { return &v }

func msg(topic, payload string) Message {
	return Message{Topic: topic, Payload: []byte(payload), Stored: t0}
}

// topics returns the topics Match gives for filter at now, sorted.
func topics(s *Store, filter string, now time.Time) []string {
	var got []string
	s.Match(filter, now, func(m *Message) bool {
		got = append(got, m.Topic)
		return true
	})
	slices.Sort(got)
	return got
}

func TestMatch(t *testing.T) {
	s := New()
	for _, tp := range []string{
		"a", "a/b", "a/b/c", "a/bc", "a/b/c/d", "/a", "/", "a/", "a//b",
		"$SYS/uptime", "$SYS/x/y", "$aws/things/t1/shadow/get",
		"/sys/pk1/dn1/thing/event/property/post", "/sys/pk1/dn2/thing/event/property/post",
		"/sys/pk2/dn1/thing/event/property/post", "/sys/pk1/dn1/thing/event/other/post",
	} {
		s.Set(msg(tp, "v"))
	}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"a", []string{"a"}},
		{"a/b", []string{"a/b"}},
		{"a/+", []string{"a/", "a/b", "a/bc"}},
		{"a/#", []string{"a", "a/", "a//b", "a/b", "a/b/c", "a/b/c/d", "a/bc"}},
		{"a/b/#", []string{"a/b", "a/b/c", "a/b/c/d"}},
		{"a/+/c", []string{"a/b/c"}},
		{"a/+/+", []string{"a//b", "a/b/c"}},
		{"+", []string{"a"}},
		{"+/+", []string{"/", "/a", "a/", "a/b", "a/bc"}},
		{"/+", []string{"/", "/a"}},
		{"+/", []string{"/", "a/"}},
		{"#", []string{
			"/", "/a", "/sys/pk1/dn1/thing/event/other/post", "/sys/pk1/dn1/thing/event/property/post",
			"/sys/pk1/dn2/thing/event/property/post", "/sys/pk2/dn1/thing/event/property/post",
			"a", "a/", "a//b", "a/b", "a/b/c", "a/b/c/d", "a/bc",
		}},
		{"$SYS/#", []string{"$SYS/uptime", "$SYS/x/y"}},
		{"$SYS/+", []string{"$SYS/uptime"}},
		{"+/uptime", nil},
		{"+/things/+/shadow/get", nil},
		{"$aws/things/+/shadow/get", []string{"$aws/things/t1/shadow/get"}},
		{"/sys/pk1/dn1/#", []string{"/sys/pk1/dn1/thing/event/other/post", "/sys/pk1/dn1/thing/event/property/post"}},
		{"/sys/+/dn1/thing/event/property/post", []string{"/sys/pk1/dn1/thing/event/property/post", "/sys/pk2/dn1/thing/event/property/post"}},
		{"/sys/pk1/+/thing/event/+/post", []string{
			"/sys/pk1/dn1/thing/event/other/post", "/sys/pk1/dn1/thing/event/property/post",
			"/sys/pk1/dn2/thing/event/property/post",
		}},
		{"/sys/pk1/dn1/thing", nil},
		{"/sys/pk1/dn1/thing/event/property/post/more", nil},
		{"/sys/pk1/dn1/thing/event/property", nil},
		{"/sys/pk1/dn1/thing/event/propert/post", nil},
		{"b/#", nil},
	} {
		if got := topics(s, tc.filter, t0); !slices.Equal(got, tc.want) {
			t.Errorf("Match(%q) = %q, want %q", tc.filter, got, tc.want)
		}
		var ref []string
		for _, n := range allTopics(s) {
			if packet.Match(tc.filter, n) {
				ref = append(ref, n)
			}
		}
		slices.Sort(ref)
		if !slices.Equal(ref, tc.want) {
			t.Errorf("table disagrees with packet.Match for %q: %q", tc.filter, ref)
		}
	}
}

// allTopics lists s's topics through Get-free means: a '#' walk that ignores
// the '$' rule.
func allTopics(s *Store) []string {
	var out []string
	var walk func(n *node)
	walk = func(n *node) {
		if n.e != nil {
			out = append(out, n.e.topic())
		}
		n.each(func(c *node) bool { walk(c); return true })
	}
	walk(&s.root)
	return out
}

func TestMatchStops(t *testing.T) {
	s := New()
	for _, tp := range []string{"a/1", "a/2", "a/3", "a/4/x"} {
		s.Set(msg(tp, "v"))
	}
	calls := 0
	s.Match("#", t0, func(*Message) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("fn called %d times after asking to stop", calls)
	}
}

func TestSetReplaceDelete(t *testing.T) {
	s := New()
	for i, step := range []struct {
		topic, payload string
		deleted        bool
		len            int
		bytes          int64
	}{
		{"a/b", "one", false, 1, 6},
		{"a/b", "three", false, 1, 8}, // replaced
		{"a/c", "x", false, 2, 12},
		{"a/b", "", true, 1, 4}, // empty payload: delete
		{"a/b", "", false, 1, 4},
		{"zz", "", false, 1, 4},
		{"a/c", "", true, 0, 0},
	} {
		if got := s.Set(msg(step.topic, step.payload)); got != step.deleted {
			t.Fatalf("step %d: deleted %v, want %v", i, got, step.deleted)
		}
		if s.Len() != step.len || s.Bytes() != step.bytes {
			t.Fatalf("step %d: Len %d Bytes %d, want %d %d", i, s.Len(), s.Bytes(), step.len, step.bytes)
		}
		checkTree(t, s)
	}
	if s.nodes != 0 {
		t.Fatalf("%d nodes left in an empty store", s.nodes)
	}
}

func TestGetKeepsMessage(t *testing.T) {
	s := New()
	payload := []byte("hello")
	m := Message{
		Topic: "t/1", Payload: payload, QoS: 1, Stored: t0,
		Properties: packet.Properties{
			PayloadFormat: 1, MessageExpiry: u32(60), ContentType: "text/plain",
			ResponseTopic: "r/1", CorrelationData: []byte{1, 2},
			User:       []packet.UserProperty{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"}},
			TopicAlias: 7, SubscriptionIDs: []uint32{4},
		},
	}
	s.Set(m)
	payload[0] = 'X' // the caller reuses its buffer
	m.Properties.CorrelationData[0] = 9
	m.Properties.User[0].Key = "changed"
	*m.Properties.MessageExpiry = 1
	got, ok := s.Get("t/1")
	if !ok {
		t.Fatal("not found")
	}
	p := got.Properties
	switch {
	case got.Topic != "t/1" || string(got.Payload) != "hello" || got.QoS != 1 || !got.Stored.Equal(t0):
		t.Fatalf("got %+v", got)
	case p.PayloadFormat != 1 || p.MessageExpiry == nil || *p.MessageExpiry != 60 || p.ContentType != "text/plain" ||
		p.ResponseTopic != "r/1" || !slices.Equal(p.CorrelationData, []byte{1, 2}):
		t.Fatalf("properties %+v", p)
	case !slices.Equal(p.User, []packet.UserProperty{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"}}):
		t.Fatalf("user properties %v: order and repeats are kept", p.User)
	case p.TopicAlias != 0 || p.SubscriptionIDs != nil:
		t.Fatalf("per-hop properties kept: alias %d ids %v", p.TopicAlias, p.SubscriptionIDs)
	}
	if _, ok := s.Get("t"); ok {
		t.Fatal("Get of a prefix found a message")
	}
	if _, ok := s.Get("t/1/2"); ok {
		t.Fatal("Get of a longer topic found a message")
	}
}

func TestRefused(t *testing.T) {
	s := New()
	s.Set(msg("keep", "v"))
	for _, m := range []Message{
		msg("", "v"), msg("a/+", "v"), msg("a/#", "v"), {Topic: "a", Payload: []byte("v"), QoS: 3},
	} {
		if _, err := s.Retain(m); err == nil {
			t.Fatalf("Retain(%q, QoS %d) accepted", m.Topic, m.QoS)
		}
		s.Set(m)
	}
	if s.Len() != 1 || s.Refused() != 4 {
		t.Fatalf("Len %d Refused %d, want 1 and 4", s.Len(), s.Refused())
	}
	var perr *packet.Error
	if _, err := s.Retain(msg("a/+", "v")); !errors.As(err, &perr) || perr.Code != packet.TopicNameInvalid {
		t.Fatalf("error %v does not carry the topic name reason code", err)
	}
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lim   Limits
		steps []Message
		// wantErr[i]: step i refused with this limit ("" accepted)
		wantErr []string
		len     int
	}{
		{
			name:    "messages",
			lim:     Limits{MaxMessages: 2},
			steps:   []Message{msg("a", "1"), msg("b", "1"), msg("c", "1"), msg("a", "22"), msg("b", ""), msg("c", "1")},
			wantErr: []string{"", "", "max messages", "", "", ""},
			len:     2,
		},
		{
			name:    "bytes",
			lim:     Limits{MaxBytes: 10},
			steps:   []Message{msg("a", "1234"), msg("b", "1234"), msg("a", "123456"), msg("a", "12")},
			wantErr: []string{"", "", "max bytes", ""},
			len:     2,
		},
		{
			name: "expired messages make room",
			lim:  Limits{MaxMessages: 1},
			steps: []Message{
				{Topic: "a", Payload: []byte("1"), Stored: t0, Properties: packet.Properties{MessageExpiry: u32(10)}},
				{Topic: "b", Payload: []byte("1"), Stored: t0.Add(5 * time.Second)},
				{Topic: "b", Payload: []byte("1"), Stored: t0.Add(10 * time.Second)},
			},
			wantErr: []string{"", "max messages", ""},
			len:     1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewLimited(tc.lim)
			for i, m := range tc.steps {
				before := allTopics(s)
				_, err := s.Retain(m)
				var le *LimitError
				switch {
				case tc.wantErr[i] == "" && err != nil:
					t.Fatalf("step %d refused: %v", i, err)
				case tc.wantErr[i] != "" && (!errors.As(err, &le) || le.Limit != tc.wantErr[i] || !errors.Is(err, ErrLimit)):
					t.Fatalf("step %d: error %v, want the %s limit", i, err, tc.wantErr[i])
				case err != nil && !strings.Contains(err.Error(), "retained message store full: "+tc.wantErr[i]):
					t.Fatalf("step %d: error %q does not say which limit", i, err)
				case err != nil && !slices.Equal(before, allTopics(s)):
					t.Fatalf("step %d: refused but the store changed", i)
				}
				checkTree(t, s)
			}
			if s.Len() != tc.len {
				t.Fatalf("Len %d, want %d", s.Len(), tc.len)
			}
		})
	}
}

func TestRemaining(t *testing.T) {
	for _, tc := range []struct {
		expiry        *uint32
		after         time.Duration
		secs          uint32
		ok, isExpired bool
	}{
		{nil, time.Hour, 0, false, false},
		{u32(60), 0, 60, true, false},
		{u32(60), 500 * time.Millisecond, 60, true, false}, // rounded up
		{u32(60), time.Second, 59, true, false},
		{u32(60), 59*time.Second + time.Nanosecond, 1, true, false},
		{u32(60), 60 * time.Second, 0, true, true},
		{u32(60), time.Hour, 0, true, true},
		{u32(0), 0, 0, true, true},
		{u32(4294967295), 0, 4294967295, true, false},
	} {
		m := Message{Stored: t0, Properties: packet.Properties{MessageExpiry: tc.expiry}}
		secs, ok, exp := m.Remaining(t0.Add(tc.after))
		if secs != tc.secs || ok != tc.ok || exp != tc.isExpired {
			t.Errorf("expiry %v after %v: %d %v %v, want %d %v %v", tc.expiry, tc.after, secs, ok, exp, tc.secs, tc.ok, tc.isExpired)
		}
	}
}

func TestExpire(t *testing.T) {
	s := New()
	for i, exp := range []uint32{30, 10, 20, 40} {
		s.Set(Message{Topic: "e/" + string(rune('a'+i)), Payload: []byte("v"), Stored: t0,
			Properties: packet.Properties{MessageExpiry: u32(exp)}})
	}
	s.Set(msg("e/forever", "v"))
	// Replaced before it expires: the new message's expiry counts.
	s.Set(Message{Topic: "e/c", Payload: []byte("w"), Stored: t0.Add(15 * time.Second),
		Properties: packet.Properties{MessageExpiry: u32(100)}})
	if got := topics(s, "e/+", t0.Add(25*time.Second)); !slices.Equal(got, []string{"e/a", "e/c", "e/d", "e/forever"}) {
		t.Fatalf("Match skips expired messages: got %q", got)
	}
	for _, step := range []struct {
		at   time.Duration
		n    int
		left []string
	}{
		{9 * time.Second, 0, []string{"e/a", "e/b", "e/c", "e/d", "e/forever"}},
		{10 * time.Second, 1, []string{"e/a", "e/c", "e/d", "e/forever"}},
		{35 * time.Second, 1, []string{"e/c", "e/d", "e/forever"}},
		{200 * time.Second, 2, []string{"e/forever"}},
	} {
		if n := s.Expire(t0.Add(step.at)); n != step.n {
			t.Fatalf("Expire at %v: %d, want %d", step.at, n, step.n)
		}
		if got := topics(s, "#", t0); !slices.Equal(got, step.left) {
			t.Fatalf("after Expire at %v: %q, want %q", step.at, got, step.left)
		}
		checkTree(t, s)
	}
	if len(s.heap) != 0 {
		t.Fatalf("heap holds %d entries", len(s.heap))
	}
}

func TestZeroStored(t *testing.T) {
	s := New()
	before := time.Now()
	s.Set(Message{Topic: "a", Payload: []byte("v")})
	m, _ := s.Get("a")
	if m.Stored.Before(before.Truncate(time.Nanosecond)) || m.Stored.After(time.Now()) {
		t.Fatalf("Stored %v not the arrival", m.Stored)
	}
}

// TestLabelsOwnTheirMemory: a node's label is a slice of its own message's
// topic, or interned, so a replaced or deleted message's buffer is not kept.
func TestLabelsOwnTheirMemory(t *testing.T) {
	s := New()
	s.Set(msg("a/b/c", "1"))
	s.Set(msg("a/b/d", "2")) // splits "a/b/c" into "a/b" and "c"
	s.Set(msg("a/b/c", "3")) // replaces
	s.Set(msg("a/b", "4"))   // the interior node gets a message
	s.Delete("a/b/d")        // "a/b" keeps "c": no fold (it has a message)
	s.Delete("a/b")          // now folded into "a/b/c"
	checkTree(t, s)
	if s.nodes != 1 {
		t.Fatalf("%d nodes, want 1", s.nodes)
	}
}

// checkTree checks the tree's invariants: counts, no empty or foldable
// node, labels on their message's topic, parents, the heap.
func checkTree(t *testing.T, s *Store) {
	t.Helper()
	count, nodes, heaped := 0, 0, 0
	var bytes int64
	var interior []*node
	var buffers []string // the messages' topics
	var walk func(n *node, path string)
	walk = func(n *node, path string) {
		if k := n.kids; k != nil {
			if k.m != nil && len(k.list) != 0 {
				t.Fatalf("node %q has both a slice and a map of children", path)
			}
			if k.m != nil && len(k.m) <= kidsMax/2 {
				t.Fatalf("node %q keeps a map of %d children", path, len(k.m))
			}
			if n.numKids() == 0 {
				t.Fatalf("node %q keeps an empty set of children", path)
			}
		}
		n.each(func(c *node) bool {
			nodes++
			if c.parent != n {
				t.Fatalf("node %q: wrong parent", c.label)
			}
			p := c.label
			if n != &s.root {
				p = path + "/" + c.label
			}
			if c.e == nil && c.numKids() == 0 {
				t.Fatalf("empty node %q kept", p)
			}
			if c.e == nil && c.numKids() == 1 {
				t.Fatalf("node %q not folded into its only child", p)
			}
			if c.e != nil {
				buffers = append(buffers, c.e.topic())
				count++
				bytes += c.e.size()
				if c.e.topic() != p {
					t.Fatalf("node %q holds the message of %q", p, c.e.topic())
				}
				end := unsafe.StringData(c.e.topic())
				lab := unsafe.StringData(c.label)
				// (An empty label, sliced at the end, points at the start:
				// Go never makes a pointer past an allocation.)
				if c.label != "" && uintptr(unsafe.Pointer(lab))+uintptr(len(c.label)) != uintptr(unsafe.Pointer(end))+uintptr(len(c.e.topic())) {
					t.Fatalf("node %q: label not a slice of its message's topic", p)
				}
				if _, ok := c.e.deadline(); ok != (c.e.hidx >= 0) {
					t.Fatalf("node %q: heap index %d", p, c.e.hidx)
				}
				if c.e.hidx >= 0 {
					heaped++
					if s.heap[c.e.hidx] != c.e {
						t.Fatalf("node %q: not at its heap index", p)
					}
				}
			} else if c.label != "" {
				interior = append(interior, c)
			}
			walk(c, p)
			return true
		})
	}
	walk(&s.root, "")
	// An interior node's label is its own copy (interned), never a slice of
	// a message's buffer, which it would keep alive after the message.
	for _, n := range interior {
		l := uintptr(unsafe.Pointer(unsafe.StringData(n.label)))
		for _, b := range buffers {
			start := uintptr(unsafe.Pointer(unsafe.StringData(b)))
			if l >= start && l < start+uintptr(len(b)) {
				t.Fatalf("interior node %q: label a slice of the message buffer of %q", n.label, b)
			}
		}
	}
	if count != s.count || bytes != s.bytes || nodes != s.nodes || heaped != len(s.heap) {
		t.Fatalf("counted %d messages %d bytes %d nodes %d heaped; store says %d %d %d %d",
			count, bytes, nodes, heaped, s.count, s.bytes, s.nodes, len(s.heap))
	}
	for i := 1; i < len(s.heap); i++ {
		if s.heap.less(i, (i-1)/2) {
			t.Fatalf("heap out of order at %d", i)
		}
	}
}

// TestConcurrent runs writers, readers and Expire together under -race.
func TestConcurrent(t *testing.T) {
	s := New()
	var wg sync.WaitGroup
	topicsOf := func(g int) []string {
		return []string{"c/" + string(rune('a'+g)) + "/x", "c/" + string(rune('a'+g)) + "/y", "c/shared"}
	}
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				for _, tp := range topicsOf(g) {
					m := msg(tp, "v")
					if i%3 == 0 {
						m.Payload = nil
					}
					m.Properties.MessageExpiry = u32(uint32(i % 5))
					s.Set(m)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s.Match("c/#", t0, func(m *Message) bool {
					_ = *m // a copy reads every field
					return true
				})
				s.Get("c/shared")
				if i%50 == 0 {
					s.Expire(t0.Add(time.Duration(i) * time.Millisecond * 10))
				}
			}
		}()
	}
	wg.Wait()
	checkTree(t, s)
}

// TestManyChildren takes a node past kidsMax children (a map) and back (a
// slice, then folded), matching all the while.
func TestManyChildren(t *testing.T) {
	s := New()
	var want []string
	for i := range 3 * kidsMax {
		tp := fmt.Sprintf("p/%02d/x", i)
		s.Set(msg(tp, "v"))
		want = append(want, tp)
		checkTree(t, s)
	}
	for len(want) > 0 {
		if got := topics(s, "p/+/x", t0); !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		if got := topics(s, "p/07/#", t0); len(got) != btoi(slices.Contains(want, "p/07/x")) {
			t.Fatalf("p/07/#: %q", got)
		}
		s.Delete(want[0])
		want = want[1:]
		checkTree(t, s)
	}
	if s.nodes != 0 {
		t.Fatalf("%d nodes left", s.nodes)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestMatchVisitsOnlyReachable: among 10,000 devices' messages, a filter
// visits the nodes on its way and those it matches, not the store.
func TestMatchVisitsOnlyReachable(t *testing.T) {
	s := New()
	for i := range 10_000 {
		pk, dn := device(i)
		for _, suffix := range []string{"thing/event/property/post", "thing/event/alarm/post", "user/status"} {
			s.Set(msg("/sys/"+pk+"/"+dn+"/"+suffix, "v"))
		}
	}
	pk, dn := device(4242)
	for _, tc := range []struct {
		filter           string
		hits, maxVisited int
	}{
		{"/sys/" + pk + "/" + dn + "/#", 3, 8},
		{"/sys/" + pk + "/" + dn + "/thing/event/property/post", 1, 8},
		{"/sys/+/" + dn + "/thing/event/+/post", 2, 20}, // '+' visits the ten ProductKeys
		{"/sys/" + pk + "/nobody/#", 0, 4},
		{"+/nothing", 0, 2},
	} {
		hits := 0
		visited := s.match(tc.filter, t0, func(*Message) bool { hits++; return true })
		if hits != tc.hits || visited > tc.maxVisited {
			t.Errorf("%q: %d messages visiting %d nodes, want %d visiting at most %d (the store has %d)",
				tc.filter, hits, visited, tc.hits, tc.maxVisited, s.nodes)
		}
	}
}
