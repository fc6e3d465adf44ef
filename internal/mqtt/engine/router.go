package engine

import (
	"sync"

	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// Router carries published messages to the subscriptions of their topic.
// The engine calls it for every subscription change and every message; a
// cluster implements it to route between nodes. Methods are called
// concurrently.
type Router interface {
	// Subscribe adds or replaces clientID's subscription (clientID may name
	// an in-process handler); isNew as subs.Index.Subscribe.
	Subscribe(clientID, filter string, o subs.Options) (isNew bool)
	Unsubscribe(clientID, filter string) bool
	RemoveClient(clientID string)
	// Route delivers m to every matching subscription through the
	// Deliverer it was bound to, and returns how many deliveries it made.
	Route(m *Message) int
	// Bind gives the router the local deliverer; called once by New.
	Bind(d Deliverer)
}

// Deliverer is the engine's side of a Router: local sessions and handlers.
type Deliverer interface {
	// Deliver gives m to clientID's session or handler as s says.
	Deliver(clientID string, m *Message, s *subs.Subscriber)
	// Accepts says whether clientID can take a shared subscription's
	// message now (online, queue not full). Quick; no locks of the router
	// may be taken.
	Accepts(clientID string) bool
}

// LocalRouter routes within this process over a subs.Index.
type LocalRouter struct {
	ix      *subs.Index
	d       Deliverer
	matches sync.Pool // *subs.Matches
}

// NewLocalRouter returns a router over a new index.
func NewLocalRouter() *LocalRouter {
	return &LocalRouter{ix: subs.New(), matches: sync.Pool{New: func() any { return new(subs.Matches) }}}
}

// Bind sets the deliverer.
func (r *LocalRouter) Bind(d Deliverer) { r.d = d }

// Subscribe subscribes in the index.
func (r *LocalRouter) Subscribe(clientID, filter string, o subs.Options) bool {
	return r.ix.Subscribe(clientID, filter, o)
}

// Unsubscribe unsubscribes in the index.
func (r *LocalRouter) Unsubscribe(clientID, filter string) bool {
	return r.ix.Unsubscribe(clientID, filter)
}

// RemoveClient removes every subscription of clientID.
func (r *LocalRouter) RemoveClient(clientID string) { r.ix.RemoveClient(clientID) }

// Route matches m's topic and delivers to each match, outside the index's
// lock.
func (r *LocalRouter) Route(m *Message) int {
	ms := r.matches.Get().(*subs.Matches)
	defer r.matches.Put(ms)
	r.ix.Match(m.Topic, m.Publisher, r.d.Accepts, ms)
	for i := range ms.Plain {
		r.d.Deliver(ms.Plain[i].ClientID, m, &ms.Plain[i])
	}
	for i := range ms.Shared {
		r.d.Deliver(ms.Shared[i].ClientID, m, &ms.Shared[i])
	}
	return ms.Len()
}

// Any reports whether any subscription matches topic.
func (r *LocalRouter) Any(topic string) bool { return r.ix.Any(topic) }

// Subscribed reports whether a message published on topic now would
// reach anyone: a client's subscription (shared ones included) or an
// in-process handler's. True when the router cannot tell (it has no Any
// method), so a publisher that skips building a payload on false never
// loses one. A subscription made just after the answer is as if made just
// after the publish.
func (s *Server) Subscribed(topic string) bool {
	a, ok := s.router.(interface{ Any(topic string) bool })
	return !ok || a.Any(topic)
}
