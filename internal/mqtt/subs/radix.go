package subs

import "strings"

// The tree's shape: a literal node holds one or more levels (a radix tree),
// split when a filter branches inside it and folded back when a branch goes.
// Wildcard levels are always nodes of their own. All must hold mu.

// insert returns the node of the (unshared) filter f, creating nodes and
// splitting labels as needed.
func (ix *Index) insert(f string) *node {
	n := &ix.root
	for {
		lv, rest, more := strings.Cut(f, "/")
		if lv == "+" || lv == "#" {
			var created bool
			if n, created = n.wildChild(lv); created {
				ix.nodes++
			}
			if !more {
				return n
			}
			f = rest
			continue
		}
		c := n.child(lv)
		if c == nil {
			// A new branch: its literal levels in one node.
			e := literalEnd(f)
			c = &node{level: intern(f[:e])}
			n.addKid(c)
			ix.nodes++
			if e == len(f) {
				return c
			}
			n, f = c, f[e+1:]
			continue
		}
		k := commonLevels(c.level, f)
		if k < len(c.level) {
			// f leaves c's label after k bytes: split c there.
			mid := &node{level: intern(c.level[:k])}
			n.replaceKid(c, mid)
			c.level = intern(c.level[k+1:])
			mid.addKid(c)
			ix.nodes++
			c = mid
		}
		if k == len(f) {
			return c
		}
		n, f = c, f[k+1:]
	}
}

// find returns the node of the (unshared) filter f, or nil.
func (ix *Index) find(f string) *node {
	n := &ix.root
	for {
		lv, rest, more := strings.Cut(f, "/")
		var c *node
		switch lv {
		case "+":
			c = n.plus()
		case "#":
			c = n.hash()
		default:
			c = n.child(lv)
			if c == nil {
				return nil
			}
			l := c.level
			switch {
			case f == l:
				return c
			case len(f) > len(l) && f[:len(l)] == l && f[len(l)] == '/':
				n, f = c, f[len(l)+1:]
				continue
			}
			return nil
		}
		if c == nil || !more {
			return c
		}
		n, f = c, rest
	}
}

// literalEnd is the length of f's leading literal levels. f's first level
// is literal.
func literalEnd(f string) int {
	for i := 0; ; {
		j := strings.IndexByte(f[i:], '/')
		if j < 0 {
			if lv := f[i:]; i > 0 && (lv == "+" || lv == "#") {
				return i - 1
			}
			return len(f)
		}
		if lv := f[i : i+j]; i > 0 && (lv == "+" || lv == "#") {
			return i - 1
		}
		i += j + 1
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

// prune detaches n and its ancestors while they are empty, then folds the
// first one left into its only child when nothing else holds it, so the tree
// keeps the shape insert would give it.
func (ix *Index) prune(n *node) {
	for n.parent != nil && n.empty() {
		p := n.parent
		p.removeChild(n)
		ix.nodes--
		n = p
	}
	ix.fold(n)
}

// fold merges n into its only child when n has nothing else: no subscriber,
// no wildcard child, no shared group. The child survives (clients' lists may
// point to it); n, which no list points to, goes.
func (ix *Index) fold(n *node) {
	p := n.parent
	if p == nil || n.level == "+" || n.level == "#" || len(n.subs) != 0 || n.x != nil || len(n.kids) != 1 {
		return
	}
	c := n.kids[0]
	c.level = intern(n.level + "/" + c.level)
	p.replaceKid(n, c)
	n.parent, n.kids = nil, nil
	ix.nodes--
}
