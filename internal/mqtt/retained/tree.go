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
// message is one node, as in a radix tree. It is 40 bytes (a 48-byte size
// class): most nodes are leaves, one a retained topic, so children live
// apart.
//
// Invariants: a node other than the root has a message or a child (the
// store detaches it when the last goes), and one without a message has two
// children or more (prune folds it into its only child). Its label is a
// slice of its own message's topic (which ends where the node ends) or, for
// a node without a message, an interned copy: so a label never keeps a
// deleted message's memory alive. kids is nil when it has no child.
type node struct {
	parent *node // nil for the root and for a detached node
	label  string
	kids   *kids
	e      *entry
}

// kids are a node's children: a scanned slice while few, a map by first
// level past kidsMax; one of the two is empty.
type kids struct {
	list []*node
	m    map[string]*node
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
	k := n.kids
	if k == nil {
		return nil
	}
	if k.m != nil {
		return k.m[lv]
	}
	for _, c := range k.list {
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
	if n.kids == nil {
		n.kids = &kids{list: make([]*node, 0, 2)}
	}
	k := n.kids
	if k.m != nil {
		k.m[firstLevel(c.label)] = c
		return
	}
	if len(k.list) < kidsMax {
		k.list = append(k.list, c)
		return
	}
	m := make(map[string]*node, 2*kidsMax)
	for _, x := range k.list {
		m[firstLevel(x.label)] = x
	}
	m[firstLevel(c.label)] = c
	k.m, k.list = m, nil
}

// replaceKid puts c where old was; both have the same first level.
func (n *node) replaceKid(old, c *node) {
	c.parent = n
	k := n.kids
	if k.m != nil {
		k.m[firstLevel(c.label)] = c
		return
	}
	for i, x := range k.list {
		if x == old {
			k.list[i] = c
			return
		}
	}
}

// removeKid detaches c.
func (n *node) removeKid(c *node) {
	k := n.kids
	if k.m != nil {
		delete(k.m, firstLevel(c.label))
		if len(k.m) <= kidsMax/2 {
			// Back to a slice, as addKid would have left it: a node left with
			// one child must look so to be folded.
			k.list = make([]*node, 0, len(k.m))
			for _, x := range k.m {
				k.list = append(k.list, x)
			}
			k.m = nil
		}
	} else {
		for i, x := range k.list {
			if x == c {
				last := len(k.list) - 1
				k.list[i], k.list[last] = k.list[last], nil
				k.list = k.list[:last]
				break
			}
		}
		if len(k.list) == 0 {
			n.kids = nil // let them go
		}
	}
	c.parent = nil
}

func (n *node) numKids() int {
	switch {
	case n.kids == nil:
		return 0
	case n.kids.m != nil:
		return len(n.kids.m)
	}
	return len(n.kids.list)
}

// only returns n's only child, or nil when it has none or more than one.
func (n *node) only() *node {
	if n.kids == nil || n.kids.m != nil || len(n.kids.list) != 1 {
		return nil
	}
	return n.kids.list[0]
}

// each calls fn for every child until fn returns false; it returns false
// then.
func (n *node) each(fn func(c *node) bool) bool {
	k := n.kids
	if k == nil {
		return true
	}
	for _, c := range k.m {
		if !fn(c) {
			return false
		}
	}
	for _, c := range k.list {
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
	n.label = e.topic()[len(e.topic())-len(n.label):]
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
	c := n.only()
	if p == nil || n.e != nil || c == nil {
		return
	}
	if l := len(n.label) + 1 + len(c.label); c.e != nil {
		c.label = c.e.topic()[len(c.e.topic())-l:]
	} else {
		c.label = intern(n.label + "/" + c.label)
	}
	p.replaceKid(n, c)
	n.parent, n.kids = nil, nil
	s.nodes--
}
