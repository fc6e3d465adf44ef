package retained

import (
	"strings"
	"unique"
)

// kidsMax is the number of children a node scans as a slice before it
// switches to a map: most nodes have one or two, and a scan of a few
// pointers costs less than hashing the level (and a map far more memory).
const kidsMax = 8

// node is one or more topic levels: a chain of levels with no branch and no
// message is one node, as in a radix tree. It is 64 bytes.
//
// Invariants: a node other than the root has a message or a child (the
// store detaches it when the last goes), and one without a message has
// either two children or more, or none of them folded into it (prune folds
// it into its only child). Its label is a slice of its own message's topic
// (which ends where the node ends) or, for a node without a message, an
// interned copy: so a label never keeps a deleted message's memory alive.
type node struct {
	parent *node // nil for the root and for a detached node
	label  string
	kids   []*node          // while few; then kidMap
	kidMap map[string]*node // children by first level, past kidsMax
	e      *entry
}

// intern returns the one copy of s: labels of interior nodes ("sys",
// "thing", a ProductKey) recur. unique's table is weak: a label no node uses
// any more is collected.
func intern(s string) string { return unique.Make(s).Value() }

// firstLevel is label's first level.
func firstLevel(label string) string {
	if i := strings.IndexByte(label, '/'); i >= 0 {
		return label[:i]
	}
	return label
}

// child returns the child whose first level is lv. Siblings differ in their
// first level.
func (n *node) child(lv string) *node {
	if n.kidMap != nil {
		return n.kidMap[lv]
	}
	for _, c := range n.kids {
		l := c.label
		if len(l) >= len(lv) && l[:len(lv)] == lv && (len(l) == len(lv) || l[len(lv)] == '/') {
			return c
		}
	}
	return nil
}

// addKid adds c, whose first level no child has.
func (n *node) addKid(c *node) {
	c.parent = n
	if n.kidMap != nil {
		n.kidMap[firstLevel(c.label)] = c
		return
	}
	if len(n.kids) < kidsMax {
		n.kids = append(n.kids, c)
		return
	}
	m := make(map[string]*node, 2*kidsMax)
	for _, k := range n.kids {
		m[firstLevel(k.label)] = k
	}
	m[firstLevel(c.label)] = c
	n.kidMap, n.kids = m, nil
}

// replaceKid puts c where old was; both have the same first level.
func (n *node) replaceKid(old, c *node) {
	c.parent = n
	if n.kidMap != nil {
		n.kidMap[firstLevel(c.label)] = c
		return
	}
	for i, k := range n.kids {
		if k == old {
			n.kids[i] = c
			return
		}
	}
}

// removeKid detaches c.
func (n *node) removeKid(c *node) {
	if n.kidMap != nil {
		delete(n.kidMap, firstLevel(c.label))
		if len(n.kidMap) <= kidsMax/2 {
			// Back to a slice, as addKid would have left it: a node left with
			// one child must look so to be folded.
			n.kids = make([]*node, 0, len(n.kidMap))
			for _, k := range n.kidMap {
				n.kids = append(n.kids, k)
			}
			n.kidMap = nil
		}
	} else {
		for i, k := range n.kids {
			if k == c {
				last := len(n.kids) - 1
				n.kids[i], n.kids[last] = n.kids[last], nil
				n.kids = n.kids[:last]
				break
			}
		}
		if len(n.kids) == 0 {
			n.kids = nil // let the backing array go
		}
	}
	c.parent = nil
}

func (n *node) numKids() int {
	if n.kidMap != nil {
		return len(n.kidMap)
	}
	return len(n.kids)
}

// each calls fn for every child until fn returns false; it returns false
// then.
func (n *node) each(fn func(c *node) bool) bool {
	if n.kidMap != nil {
		for _, c := range n.kidMap {
			if !fn(c) {
				return false
			}
		}
		return true
	}
	for _, c := range n.kids {
		if !fn(c) {
			return false
		}
	}
	return true
}

// The tree's shape. All of these must hold s.mu for writing.

// insert returns the node of topic t, creating nodes and splitting labels as
// needed. t is the stored topic (or its tail): a new node's label is a slice
// of it.
func (s *Store) insert(t string) *node {
	n := &s.root
	for {
		c := n.child(firstLevel(t))
		if c == nil {
			// A new branch: all its levels in one node.
			c = &node{label: t}
			n.addKid(c)
			s.nodes++
			return c
		}
		k := commonLevels(c.label, t) // ≥ 0: the first levels are equal
		if k < len(c.label) {
			// t leaves c's label after k bytes: split c there.
			mid := &node{label: intern(c.label[:k])}
			n.replaceKid(c, mid)
			if c.label = c.label[k+1:]; c.e == nil {
				c.label = intern(c.label)
			}
			mid.addKid(c)
			s.nodes++
			c = mid
		}
		if k == len(t) {
			return c
		}
		n, t = c, t[k+1:]
	}
}

// find returns the node of topic t, or nil.
func (s *Store) find(t string) *node {
	n := &s.root
	for {
		c := n.child(firstLevel(t))
		if c == nil {
			return nil
		}
		l := c.label
		switch {
		case t == l:
			return c
		case len(t) > len(l) && t[:len(l)] == l && t[len(l)] == '/':
			n, t = c, t[len(l)+1:]
		default:
			return nil
		}
	}
}

// commonLevels is the length of the whole levels a and b begin with in
// common (0 for an empty first level in common, -1 for none).
func commonLevels(a, b string) int {
	k := -1
	for i := 0; ; i++ {
		aEnd := i == len(a) || a[i] == '/'
		bEnd := i == len(b) || b[i] == '/'
		if aEnd || bEnd {
			if !aEnd || !bEnd {
				return k
			}
			k = i
			if i == len(a) || i == len(b) {
				return k
			}
			continue
		}
		if a[i] != b[i] {
			return k
		}
	}
}

// setEntry gives n the message e, whose topic is n's: n's label becomes a
// slice of it, so that the previous message's memory goes with it.
func setEntry(n *node, e *entry) {
	n.e = e
	n.label = e.topic[len(e.topic)-len(n.label):]
}

// clear removes n's message and the nodes left with nothing.
func (s *Store) clear(n *node) {
	n.e = nil
	if n.numKids() > 0 {
		n.label = intern(n.label) // not the deleted message's topic any more
	}
	s.prune(n)
}

// prune detaches n and its ancestors while they hold nothing, then folds the
// first one left into its only child when it has no message, so that the
// tree keeps the shape insert would give it.
func (s *Store) prune(n *node) {
	for n.parent != nil && n.e == nil && n.numKids() == 0 {
		p := n.parent
		p.removeKid(n)
		s.nodes--
		n = p
	}
	s.fold(n)
}

// fold merges n into its only child when n has no message.
func (s *Store) fold(n *node) {
	p := n.parent
	if p == nil || n.e != nil || n.kidMap != nil || len(n.kids) != 1 {
		return
	}
	c := n.kids[0]
	if l := len(n.label) + 1 + len(c.label); c.e != nil {
		c.label = c.e.topic[len(c.e.topic)-l:]
	} else {
		c.label = intern(n.label + "/" + c.label)
	}
	p.replaceKid(n, c)
	n.parent, n.kids = nil, nil
	s.nodes--
}
