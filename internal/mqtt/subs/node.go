package subs

// Sizes at which a node switches from a scanned slice to a map. Most nodes of
// a device-heavy tree hold one child and one subscriber, so a map (about
// 300 B empty of buckets) would cost more than everything else; a scan of up
// to eight pointers is also faster than hashing the level.
const (
	kidsMax = 8
	subsMax = 16
)

// node is one level of one or more filters. It is 80 bytes, a size class:
// most nodes are a device's own leaves, so everything a leaf does not need
// lives in x, the '+' and '#' children included (they have their own
// fields there so that matching never looks them up by name).
//
// Invariant: a node other than the root has a subscriber, a shared group or
// a child; the index detaches it (parent = nil) when the last one goes, so
// no empty node is kept.
type node struct {
	parent *node   // nil for the root and for a detached node
	level  string  // interned
	kids   []*node // children other than '+' and '#' while few; then x.kidMap
	subs   []entry
	x      *extra // rarely needed parts, kept out of the common node
}

// extra holds what only busy or shared nodes need.
type extra struct {
	plus, hash *node
	kidMap     map[string]*node // every child other than '+' and '#', once more than kidsMax
	subIdx     map[string]int   // client → position in subs, once more than subsMax
	groups     []*group         // shared subscriptions on this filter, one per share name
}

func (n *node) child(level string) *node {
	if n.x != nil && n.x.kidMap != nil {
		return n.x.kidMap[level]
	}
	for _, c := range n.kids {
		if c.level == level {
			return c
		}
	}
	return nil
}

// addChild returns the child for level, created when missing.
func (n *node) addChild(level string, intern func(string) string) (c *node, created bool) {
	switch level {
	case "+":
		x := n.ext()
		if x.plus == nil {
			x.plus, created = &node{parent: n, level: "+"}, true
		}
		return x.plus, created
	case "#":
		x := n.ext()
		if x.hash == nil {
			x.hash, created = &node{parent: n, level: "#"}, true
		}
		return x.hash, created
	}
	if c = n.child(level); c != nil {
		return c, false
	}
	c = &node{parent: n, level: intern(level)}
	if n.x != nil && n.x.kidMap != nil {
		n.x.kidMap[c.level] = c
		return c, true
	}
	if len(n.kids) < kidsMax {
		n.kids = append(n.kids, c)
		return c, true
	}
	m := make(map[string]*node, 2*kidsMax)
	for _, k := range n.kids {
		m[k.level] = k
	}
	m[c.level] = c
	n.ext().kidMap, n.kids = m, nil
	return c, true
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
		if n.x.kidMap[c.level] == c {
			delete(n.x.kidMap, c.level)
		}
		if len(n.x.kidMap) == 0 {
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
