package retained

import (
	"strings"
	"time"
)

// Match calls fn with every retained message whose topic the filter matches
// (packet.Match: '+' one level, '#' the parent level and all below, a topic
// starting with '$' unmatched by a filter starting with a wildcard), skipping
// those expired at now, until fn returns false. filter must be a valid,
// unshared topic filter (the engine passes a shared subscription's inner
// filter, if it sends it retained messages at all).
//
// Only the part of the tree the filter can reach is visited. Messages come
// in no particular order. Each *Message is new and the caller's; its payload
// and properties are shared with the store and must not be modified. fn runs
// under the store's read lock: it must not call the store's other methods,
// and it holds back Set while it runs, so it should only queue the message.
func (s *Store) Match(filter string, now time.Time, fn func(m *Message) bool) {
	s.match(filter, now, fn)
}

// match is Match; it returns the number of nodes it visited, for tests.
func (s *Store) match(filter string, now time.Time, fn func(m *Message) bool) (visited int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w := walker{now: now.UnixNano(), fn: fn}
	w.kids(&s.root, filter, true)
	return w.visited
}

// walker is one Match. Its methods return false once fn has asked to stop.
type walker struct {
	now     int64
	fn      func(m *Message) bool
	visited int // nodes
}

// kids matches the filter levels f against n's children; top is true at
// the root, where the '$' rule applies.
func (w *walker) kids(n *node, f string, top bool) bool {
	switch lv := firstLevel(f); lv {
	case "+", "#":
		return n.each(func(c *node) bool {
			if top && strings.HasPrefix(c.label, "$") {
				return true
			}
			return w.node(c, f)
		})
	default:
		if c := n.child(lv); c != nil {
			return w.node(c, f)
		}
		return true
	}
}

// node matches the filter levels f against c's label and goes on below c.
func (w *walker) node(c *node, f string) bool {
	w.visited++
	l := c.label
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return w.all(c)
		}
		ll, lrest, lmore := strings.Cut(l, "/")
		if fl != "+" && fl != ll {
			return true
		}
		switch {
		case !lmore && !fmore: // the filter ends at c
			return w.emit(c)
		case !lmore && frest == "#": // "a/#" matches "a" too
			return w.all(c)
		case !lmore:
			return w.kids(c, frest, false)
		case !fmore: // the topics go on past the filter
			return true
		}
		f, l = frest, lrest
	}
}

// all emits c's message and every one below it.
func (w *walker) all(c *node) bool {
	w.visited++
	return w.emit(c) && c.each(w.all)
}

func (w *walker) emit(c *node) bool {
	if c.e == nil || c.e.expired(w.now) {
		return true
	}
	return w.fn(c.e.message())
}
