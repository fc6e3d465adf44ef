package subs

import "sync/atomic"

// group is one shared subscription: a share name on a filter (MQTT 5 4.8.2;
// "$share/g/a" and "$share/g/b" are two groups). Members are few next to
// plain subscribers, so they are a scanned slice.
type group struct {
	name    string
	members []entry
	// next is the round-robin cursor. It moves under the read lock, from
	// concurrent matches, hence atomic; a lost update only skews fairness
	// by one message.
	next atomic.Uint32
}

func (n *node) group(name string) (*group, int) {
	if n.x == nil {
		return nil, -1
	}
	for i, g := range n.x.groups {
		if g.name == name {
			return g, i
		}
	}
	return nil, -1
}

func (g *group) find(client string) int {
	for i := range g.members {
		if g.members[i].client == client {
			return i
		}
	}
	return -1
}

// setMember adds or replaces client's membership of the share name on n.
func (n *node) setMember(name string, e entry) (isNew bool) {
	g, _ := n.group(name)
	if g == nil {
		g = &group{name: name}
		x := n.ext()
		x.groups = append(x.groups, g)
	}
	if i := g.find(e.client); i >= 0 {
		g.members[i].opts = e.opts
		return false
	}
	g.members = append(g.members, e)
	return true
}

// delMember removes client from the share name on n, and the group once empty.
func (n *node) delMember(name, client string) bool {
	g, gi := n.group(name)
	if g == nil {
		return false
	}
	i := g.find(client)
	if i < 0 {
		return false
	}
	// Order is kept (not swap-deleted) so that round-robin stays a rotation.
	last := len(g.members) - 1
	copy(g.members[i:], g.members[i+1:])
	g.members[last] = entry{}
	g.members = g.members[:last]
	if len(g.members) == 0 {
		gs := n.x.groups
		gs[gi] = gs[len(gs)-1]
		gs[len(gs)-1] = nil
		n.x.groups = gs[:len(gs)-1]
		if len(n.x.groups) == 0 {
			n.x.groups = nil
			n.shrinkExt()
		}
	}
	return true
}

// delClientGroups removes client from every group on n.
func (n *node) delClientGroups(client string) {
	if n.x == nil {
		return
	}
	for i := len(n.x.groups) - 1; i >= 0 && n.x != nil; i-- {
		g := n.x.groups[i]
		if g.find(client) >= 0 {
			n.delMember(g.name, client)
		}
	}
}
