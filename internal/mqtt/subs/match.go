package subs

import "strings"

// Subscriber is one delivery a message calls for.
type Subscriber struct {
	ClientID string
	// QoS is the highest QoS granted among the client's matching
	// subscriptions; the engine sends min(QoS, the message's QoS).
	QoS byte
	// RetainAsPublished is true when any matching subscription asks for it:
	// the specification leaves overlapping subscriptions' options open, and
	// keeping the flag loses nothing a subscriber asked for.
	RetainAsPublished bool
	// SubIDs are the subscription identifiers of all matching subscriptions
	// (MQTT 5 3.3.4), in no particular order. It aliases the Matches' buffer:
	// valid until the Matches is used again.
	SubIDs []uint32
	// Share is the share name of a shared subscription's delivery; empty for
	// plain subscriptions.
	Share string
	// Fallback is set on a shared delivery when accept refused every member:
	// this is the member whose turn it was, for the engine to queue the
	// message to or to drop (QoS 0).
	Fallback bool
}

// Matches receives the result of Match. Reuse one per goroutine (a
// connection's read loop, say): its buffers keep their capacity, so matching
// allocates nothing once they have grown.
type Matches struct {
	// Plain holds one delivery per client with a matching non-shared
	// subscription.
	Plain []Subscriber
	// Shared holds one delivery per matching shared group. A client may
	// appear both here and in Plain: MQTT 5 4.8.2 gives it both copies.
	Shared []Subscriber

	raw    []entry     // plain hits before merging per client
	shared []sharedHit // shared picks, in match order
	ids    []uint32    // every delivery's SubIDs, back to back

	// merge's scratch: each raw hit's delivery, each delivery's identifier
	// count (then write position), and the deliveries by client when there
	// are many hits.
	slot     []int32
	nids     []int32
	byClient map[string]int32
}

type sharedHit struct {
	e        entry
	share    string
	fallback bool
}

// Len is the number of deliveries.
func (m *Matches) Len() int { return len(m.Plain) + len(m.Shared) }

func (m *Matches) reset() {
	clear(m.raw) // drop client strings: the buffers outlive this message
	clear(m.shared)
	clear(m.Plain)
	clear(m.Shared)
	m.raw, m.shared, m.ids = m.raw[:0], m.shared[:0], m.ids[:0]
	m.Plain, m.Shared = m.Plain[:0], m.Shared[:0]
	m.slot, m.nids = m.slot[:0], m.nids[:0]
	if len(m.byClient) > 0 { // clear costs the map's capacity: not on every message
		clear(m.byClient)
	}
}

// Match writes into m the deliveries of a message published on topic (a valid
// topic name). publisher is the publishing client's id, for No Local; empty
// when the message has none (server-originated). accept, when not nil, says
// whether a shared group's member can take the message now (online, queue
// not full); members are offered in round-robin order until one accepts.
// accept runs under the index's read lock: it must be quick and must not
// call the Index.
func (ix *Index) Match(topic, publisher string, accept func(clientID string) bool, m *Matches) {
	m.reset()
	w := walker{publisher: publisher, accept: accept, m: m}
	ix.mu.RLock()
	w.level(&ix.root, topic, strings.HasPrefix(topic, "$"))
	ix.mu.RUnlock()
	m.merge()
}

// Any reports whether any subscription matches topic (a valid topic
// name): a plain one, No Local aside, or a shared group with a member. It
// is Match's walk stopping at the first hit, for a publisher that would
// rather not build a payload no one receives.
func (ix *Index) Any(topic string) bool {
	w := walker{probe: true}
	ix.mu.RLock()
	w.level(&ix.root, topic, strings.HasPrefix(topic, "$"))
	ix.mu.RUnlock()
	return w.found
}

// walker carries one match's state through the recursion without a closure.
type walker struct {
	publisher string
	accept    func(string) bool
	m         *Matches
	// probe: only find whether anything matches (Any); found says so.
	probe, found bool
}

// level matches the topic levels in t (at least one, possibly empty) below
// n. system is set at the root of a '$' topic, whose first level wildcards
// must not match ([MQTT-4.7.2-1]).
func (w *walker) level(n *node, t string, system bool) {
	if w.found {
		return
	}
	lv, rest, more := strings.Cut(t, "/")
	x := n.x
	if !system && x != nil && x.hash != nil {
		w.collect(x.hash) // '#' matches this level and everything below
	}
	if c := n.child(lv); c != nil {
		if len(c.level) == len(lv) {
			w.next(c, rest, more)
		} else if tail := c.level[len(lv)+1:]; more && len(rest) >= len(tail) && rest[:len(tail)] == tail {
			// A node of several levels: the topic must hold them all.
			switch {
			case len(rest) == len(tail):
				w.next(c, "", false)
			case rest[len(tail)] == '/':
				w.next(c, rest[len(tail)+1:], true)
			}
		}
	}
	if !system && x != nil && x.plus != nil {
		w.next(x.plus, rest, more)
	}
}

func (w *walker) next(c *node, rest string, more bool) {
	if more {
		w.level(c, rest, false)
		return
	}
	w.collect(c)
	if h := c.hash(); h != nil {
		w.collect(h) // "a/#" matches "a" too
	}
}

func (w *walker) collect(n *node) {
	if w.probe {
		w.found = w.found || len(n.subs) > 0 || n.x != nil && hasMember(n.x.groups)
		return
	}
	for _, e := range n.subs {
		if e.opts.NoLocal && e.client == w.publisher {
			continue
		}
		w.m.raw = append(w.m.raw, e)
	}
	if n.x != nil {
		for _, g := range n.x.groups {
			w.pick(g)
		}
	}
}

// hasMember reports whether any of groups has a member.
func hasMember(groups []*group) bool {
	for _, g := range groups {
		if len(g.members) > 0 {
			return true
		}
	}
	return false
}

// pick chooses g's member for this message: the next in turn that accept
// takes, else the one whose turn it was.
func (w *walker) pick(g *group) {
	k := len(g.members)
	if k == 0 {
		return
	}
	start := int(g.next.Add(1)-1) % k
	for i := 0; i < k; i++ {
		e := g.members[(start+i)%k]
		if w.accept == nil || w.accept(e.client) {
			if i > 0 {
				// The turn passes to the member after the one that took it,
				// not back to a member that just got a message.
				g.next.Add(uint32(i))
			}
			w.m.shared = append(w.m.shared, sharedHit{e: e, share: g.name})
			return
		}
	}
	w.m.shared = append(w.m.shared, sharedHit{e: g.members[start], share: g.name, fallback: true})
}

// mergeScanMax is the number of plain hits up to which merge finds a
// client's delivery by scanning; past it, by a map. A device's downlink has
// one or two hits; an application's wildcard can have thousands.
const mergeScanMax = 16

// merge folds the plain hits into one delivery per client and copies the
// shared picks out. It is linear in the hits: a sort by client would cost
// more than the walk once there are a thousand.
func (m *Matches) merge() {
	// Every hit contributes at most one identifier: size ids once, so the
	// SubIDs slices taken below are never moved by a growing append.
	if need := len(m.raw) + len(m.shared); cap(m.ids) < need {
		m.ids = make([]uint32, 0, need+need/2)
	}
	useMap := len(m.raw) > mergeScanMax
	if useMap && m.byClient == nil {
		m.byClient = make(map[string]int32, len(m.raw))
	}
	// First pass: a delivery per client with its QoS, and how many
	// identifiers each will carry (in nids), and each hit's delivery.
	for _, e := range m.raw {
		j := -1
		if useMap {
			if v, ok := m.byClient[e.client]; ok {
				j = int(v)
			}
		} else {
			for k := range m.Plain {
				if m.Plain[k].ClientID == e.client {
					j = k
					break
				}
			}
		}
		if j < 0 {
			j = len(m.Plain)
			m.Plain = append(m.Plain, Subscriber{ClientID: e.client})
			m.nids = append(m.nids, 0)
			if useMap {
				m.byClient[e.client] = int32(j)
			}
		}
		s := &m.Plain[j]
		s.QoS = max(s.QoS, e.opts.QoS)
		s.RetainAsPublished = s.RetainAsPublished || e.opts.RetainAsPublished
		if e.opts.SubscriptionID != 0 {
			m.nids[j]++
		}
		m.slot = append(m.slot, int32(j))
	}
	// Lay the identifiers out per delivery; nids becomes each delivery's
	// next write position.
	off := int32(0)
	for j := range m.Plain {
		n := m.nids[j]
		m.nids[j] = off
		m.Plain[j].SubIDs = m.ids[off : off+n : off+n]
		off += n
	}
	m.ids = m.ids[:off]
	for i, e := range m.raw {
		if id := e.opts.SubscriptionID; id != 0 {
			j := m.slot[i]
			m.ids[m.nids[j]] = id
			m.nids[j]++
		}
	}
	for _, h := range m.shared {
		from := len(m.ids)
		if h.e.opts.SubscriptionID != 0 {
			m.ids = append(m.ids, h.e.opts.SubscriptionID)
		}
		m.Shared = append(m.Shared, Subscriber{
			ClientID:          h.e.client,
			QoS:               h.e.opts.QoS,
			RetainAsPublished: h.e.opts.RetainAsPublished,
			SubIDs:            m.ids[from:len(m.ids):len(m.ids)],
			Share:             h.share,
			Fallback:          h.fallback,
		})
	}
}
