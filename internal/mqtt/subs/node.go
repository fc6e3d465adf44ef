package subs

import "strings"

// Sizes at which a node switches from a scanned slice to a map. Most nodes of
// a device-heavy tree hold one child and one subscriber, so a map (about
// 300 B empty of buckets) would cost more than everything else; a scan of up
// to eight pointers is also faster than hashing the level.
const (
	kidsMax = 8
	subsMax = 16
)

// node is one or more literal levels of one or more filters, or a '+' or
// '#' level: a chain of literal levels with no branch, no subscriber and no
// wildcard is one node ("property/set"), as in a radix tree, since most of a
// device's filters end in such chains. It is 80 bytes, a size class: most
// nodes are a device's own leaves, so everything a leaf does not need lives
// in x, the '+' and '#' children included (they have their own fields there
// so that matching never looks them up by name).
//
// Invariant: a node other than the root has a subscriber, a shared group or
// a child; the index detaches it (parent = nil) when the last one goes, so
// no empty node is kept.
type node struct {
	parent *node   // nil for the root and for a detached node
	level  string  // interned; literal levels joined by '/', or "+" or "#"
	kids   []*node // children other than '+' and '#' while few; then x.kidMap
	subs   []entry
	x      *extra // rarely needed parts, kept out of the common node
}

// extra holds what only busy or shared nodes need.
type extra struct {
	plus, hash *node
	kidMap     map[string]*node // children other than '+' and '#' by first level, past kidsMax
	subIdx     map[string]int   // client → position in subs, once more than subsMax
	groups     []*group         // shared subscriptions on this filter, one per share name
}

// firstLevel is label's first level.
func firstLevel(label string) string {
	if i := strings.IndexByte(label, '/'); i >= 0 {
		return label[:i]
	}
	return label
}

// child returns the literal child whose first level is lv. Siblings differ
// in their first level.
func (n *node) child(lv string) *node {
	if n.x != nil && n.x.kidMap != nil {
		return n.x.kidMap[lv]
	}
	for _, c := range n.kids {
		l := c.level
		if len(l) >= len(lv) && l[:len(lv)] == lv && (len(l) == len(lv) || l[len(lv)] == '/') {
			return c
		}
	}
	return nil
}

// wildChild returns the '+' or '#' child, created when missing.
func (n *node) wildChild(level string) (c *node, created bool) {
	x := n.ext()
	p := &x.plus
	if level == "#" {
		p = &x.hash
	}
	if *p == nil {
		*p, created = &node{parent: n, level: level}, true
	}
	return *p, created
}

// addKid adds the literal child c, whose first level no child has.
func (n *node) addKid(c *node) {
	c.parent = n
	if n.x != nil && n.x.kidMap != nil {
		n.x.kidMap[firstLevel(c.level)] = c
		return
	}
	if len(n.kids) < kidsMax {
		n.kids = append(n.kids, c)
		return
	}
	m := make(map[string]*node, 2*kidsMax)
	for _, k := range n.kids {
		m[firstLevel(k.level)] = k
	}
	m[firstLevel(c.level)] = c
	n.ext().kidMap, n.kids = m, nil
}

// replaceKid puts c where old was; both have the same first level.
func (n *node) replaceKid(old, c *node) {
	c.parent = n
	if n.x != nil && n.x.kidMap != nil {
		n.x.kidMap[firstLevel(c.level)] = c
		return
	}
	for i, k := range n.kids {
		if k == old {
			n.kids[i] = c
			return
		}
	}
}

// removeChild detaches c. It is a no-op when c is no longer n's child.
func (n *node) removeChild(c *node) {
	switch {
	case n.x != nil && n.x.plus == c:
		n.x.plus = nil
		n.shrinkExt()
	case n.x != nil && n.x.hash == c:
		n.x.hash = nil
		n.shrinkExt()
	case n.x != nil && n.x.kidMap != nil:
		if k := firstLevel(c.level); n.x.kidMap[k] == c {
			delete(n.x.kidMap, k)
		}
		if len(n.x.kidMap) <= kidsMax/2 {
			// Back to a slice: a node left with one child must look as
			// insert would have made it, to be folded.
			for _, k := range n.x.kidMap {
				n.kids = append(n.kids, k)
			}
			n.x.kidMap = nil
			n.shrinkExt()
		}
	default:
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

func (n *node) empty() bool {
	return len(n.subs) == 0 && len(n.kids) == 0 && n.x == nil
}

func (n *node) plus() *node {
	if n.x == nil {
		return nil
	}
	return n.x.plus
}

func (n *node) hash() *node {
	if n.x == nil {
		return nil
	}
	return n.x.hash
}

func (n *node) ext() *extra {
	if n.x == nil {
		n.x = &extra{}
	}
	return n.x
}

// shrinkExt drops x once nothing in it is in use, so that empty() holds.
func (n *node) shrinkExt() {
	if x := n.x; x != nil && x.plus == nil && x.hash == nil && x.kidMap == nil && x.subIdx == nil && len(x.groups) == 0 {
		n.x = nil
	}
}

// findSub returns the position of client's subscription in subs, or -1.
func (n *node) findSub(client string) int {
	if n.x != nil && n.x.subIdx != nil {
		if i, ok := n.x.subIdx[client]; ok {
			return i
		}
		return -1
	}
	for i := range n.subs {
		if n.subs[i].client == client {
			return i
		}
	}
	return -1
}

// setSub adds or replaces client's subscription; isNew when added.
func (n *node) setSub(e entry) (isNew bool) {
	if i := n.findSub(e.client); i >= 0 {
		n.subs[i].opts = e.opts
		return false
	}
	n.subs = append(n.subs, e)
	if n.x != nil && n.x.subIdx != nil {
		n.x.subIdx[e.client] = len(n.subs) - 1
	} else if len(n.subs) > subsMax {
		idx := make(map[string]int, 2*len(n.subs))
		for i, s := range n.subs {
			idx[s.client] = i
		}
		n.ext().subIdx = idx
	}
	return true
}

// delSub removes client's subscription; false when it had none.
func (n *node) delSub(client string) bool {
	i := n.findSub(client)
	if i < 0 {
		return false
	}
	last := len(n.subs) - 1
	n.subs[i] = n.subs[last]
	n.subs[last] = entry{}
	n.subs = n.subs[:last]
	if n.x != nil && n.x.subIdx != nil {
		delete(n.x.subIdx, client)
		if i < last {
			n.x.subIdx[n.subs[i].client] = i
		}
		if len(n.subs) <= subsMax/2 {
			n.x.subIdx = nil
			n.shrinkExt()
		}
	}
	if len(n.subs) == 0 {
		n.subs = nil
	} else if cap(n.subs) > 4*len(n.subs) && cap(n.subs) > 8 {
		// A filter everyone left should not keep its peak capacity.
		n.subs = append([]entry(nil), n.subs...)
	}
	return true
}
