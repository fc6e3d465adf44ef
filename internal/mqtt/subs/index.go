package subs

import (
	"sync"
	"unique"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Index is the subscription index. It is safe for concurrent use: Match
// takes a read lock, the other methods the write lock.
//
// Filters must be valid (packet.ValidTopicFilter): the index does not check
// them again.
type Index struct {
	mu   sync.RWMutex
	root node
	// clients lists, per client, the node of each of its subscriptions
	// (plain or shared), so that RemoveClient does not walk the tree. A node
	// appears once per subscription the client holds on it.
	clients map[string][]*node
	nodes   int // nodes below the root, for tests and memory figures
	count   int // subscriptions, shared memberships included
}

// New returns an empty index.
func New() *Index {
	return &Index{clients: make(map[string][]*node)}
}

// intern returns the one copy of s: level names such as "thing" or "post"
// and client ids recur in every device's filters, and a label sliced from a
// filter would keep the whole filter string alive. unique's table is weak,
// so strings no node uses any more are collected.
func intern(s string) string { return unique.Make(s).Value() }

// Subscribe adds client's subscription to filter, or replaces its options
// when it already has one (MQTT 5 3.8.4); isNew tells which, as Retain
// Handling 1 needs. A $share/{group}/{filter} filter joins that group.
func (ix *Index) Subscribe(client, filter string, opts Options) (isNew bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.subscribe(intern(client), filter, opts)
}

// Subscription is one filter of a SubscribeAll.
type Subscription struct {
	Filter string
	Options
}

// SubscribeAll subscribes client to every filter of subs under one lock, as
// a SUBSCRIBE's list or a stock device's server-side set comes: matches wait
// once, not once a filter. isNew, when not nil (len(subs) long), receives
// each Subscribe result.
func (ix *Index) SubscribeAll(client string, subs []Subscription, isNew []bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	client = intern(client)
	// Size the client's node list once: growing it by appends would leave
	// up to half of it unused (64 slots for a stock device's 40).
	if refs := ix.clients[client]; cap(refs)-len(refs) < len(subs) {
		grown := make([]*node, len(refs), len(refs)+len(subs))
		copy(grown, refs)
		ix.clients[client] = grown
	}
	for i, s := range subs {
		n := ix.subscribe(client, s.Filter, s.Options)
		if isNew != nil {
			isNew[i] = n
		}
	}
}

// subscribe is Subscribe with mu held and client interned.
func (ix *Index) subscribe(client, filter string, opts Options) (isNew bool) {
	group, inner, shared := packet.ParseShared(filter)
	n := ix.insert(inner)
	e := entry{client: client, opts: opts}
	if shared {
		isNew = n.setMember(intern(group), e)
	} else {
		isNew = n.setSub(e)
	}
	if isNew {
		ix.clients[client] = append(ix.clients[client], n)
		ix.count++
	}
	return isNew
}

// Unsubscribe removes client's subscription to filter; false when it had none.
func (ix *Index) Unsubscribe(client, filter string) bool {
	group, inner, shared := packet.ParseShared(filter)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.find(inner)
	if n == nil {
		return false
	}
	var ok bool
	if shared {
		ok = n.delMember(group, client)
	} else {
		ok = n.delSub(client)
	}
	if !ok {
		return false
	}
	ix.count--
	refs := ix.clients[client]
	for i, r := range refs {
		if r == n {
			refs[i] = refs[len(refs)-1]
			refs[len(refs)-1] = nil
			refs = refs[:len(refs)-1]
			break
		}
	}
	if len(refs) == 0 {
		delete(ix.clients, client)
	} else {
		ix.clients[client] = refs
	}
	ix.prune(n)
	return true
}

// RemoveClient removes every subscription of client, shared ones included,
// as when its session ends.
func (ix *Index) RemoveClient(client string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	refs, ok := ix.clients[client]
	if !ok {
		return
	}
	delete(ix.clients, client)
	for _, n := range refs {
		// A node listed twice (a plain and a shared subscription) is
		// emptied of the client the first time; the second is a no-op.
		if n.delSub(client) {
			ix.count--
		}
		if n.x != nil {
			for _, g := range n.x.groups {
				if g.find(client) >= 0 {
					ix.count--
				}
			}
			n.delClientGroups(client)
		}
		ix.prune(n)
	}
}

// Stats are the index's sizes.
type Stats struct {
	Clients       int // clients with at least one subscription
	Subscriptions int // plain subscriptions and shared memberships
	Nodes         int // tree nodes below the root
}

// Stats returns the index's sizes.
func (ix *Index) Stats() Stats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return Stats{Clients: len(ix.clients), Subscriptions: ix.count, Nodes: ix.nodes}
}
