package engine

import (
	"fmt"

	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/subs"
)

// SubscriptionHooks are optional Hooks: when the Hooks given to New
// implement them, the engine also calls these for a client's SUBSCRIBE.
type SubscriptionHooks interface {
	// SubscriptionOptions may change the options of a subscription
	// MaySubscribe granted, before it is made (say, No Local on a topic
	// that carries a request and its answer).
	SubscriptionOptions(c *Client, filter string, o subs.Options) subs.Options
	// Subscribed is called once the granted filters of a SUBSCRIBE are
	// subscribed and its SUBACK queued, with no engine lock held.
	Subscribed(c *Client, filters []string)
}

// PublishTo writes m to clientID's live connection at QoS 0, ahead of its
// queue, whatever it subscribed to: no MayReceive, no router. For answers
// meant for one connection alone (a registration's credential) and for
// messages a connection must get whatever its subscriptions. ErrNoSession
// when clientID has no live connection.
func (s *Server) PublishTo(clientID string, m Message) error {
	if err := packet.ValidTopicName(m.Topic); err != nil {
		return fmt.Errorf("mqtt engine: publish to %s: %w", clientID, err)
	}
	s.mu.RLock()
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return fmt.Errorf("mqtt engine: publish to %s: %w", clientID, ErrNoSession)
	}
	p := &packet.Publish{Topic: m.Topic, Payload: m.Payload, Retain: m.Retain, Properties: m.Props.properties()}
	if e := p.Properties.MessageExpiry; e != nil && *e == 0 {
		return nil // expired already
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	c := ss.conn
	if c == nil || c.closing {
		return fmt.Errorf("mqtt engine: publish to %s: %w", clientID, ErrNoSession)
	}
	if c.version != packet.V5 {
		p.Properties = packet.Properties{}
	}
	if c.maxPacket > 0 {
		if b, err := p.Append(nil, c.version); err != nil || len(b) > c.maxPacket {
			return fmt.Errorf("mqtt engine: publish to %s: larger than the client's maximum packet size", clientID)
		}
	}
	c.appendCtrlLocked(p)
	s.count.sent.Add(1)
	return nil
}

// UnsubscribeClient removes filters from clientID's session, online or
// offline, as if it had sent UNSUBSCRIBE; a filter it does not hold is
// skipped. ErrNoSession when it has no session.
func (s *Server) UnsubscribeClient(clientID string, filters []string) error {
	s.mu.RLock()
	ss := s.sessions[clientID]
	s.mu.RUnlock()
	if ss == nil {
		return fmt.Errorf("mqtt engine: unsubscribe %s: %w", clientID, ErrNoSession)
	}
	for _, f := range filters {
		s.router.Unsubscribe(clientID, f)
		ss.mu.Lock()
		ss.removeSubLocked(f)
		ss.mu.Unlock()
		s.storeUnsubscribe(ss, f)
	}
	return nil
}

// Discard ends clientID's session if it has no live connection: its
// subscriptions, queued and in-flight messages go, and a will waiting for
// its delay is dropped unpublished (for a client that lost its rights). It
// reports whether a session was discarded; a connected one is left alone
// (Kick it first, then Discard once it has ended).
func (s *Server) Discard(clientID string) bool {
	s.mu.Lock()
	ss := s.sessions[clientID]
	if ss == nil {
		s.mu.Unlock()
		return false
	}
	ss.mu.Lock()
	if ss.conn != nil || ss.ended {
		ss.mu.Unlock()
		s.mu.Unlock()
		return false
	}
	ss.ended = true
	ss.will = nil
	ss.stopTimersLocked()
	ss.queue, ss.qhead, ss.queueBytes, ss.inflight, ss.inQoS2 = nil, 0, 0, nil, nil
	delete(s.sessions, clientID)
	s.count.sessions.Add(-1)
	ss.mu.Unlock()
	s.mu.Unlock()
	s.removeSubs(clientID)
	if s.dur != nil {
		// The stored session is deleted on a goroutine of its own: the
		// delete waits for batches holding its copies, and Discard may be
		// called by an in-process handler whose publisher's batch is open.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.syncSession(clientID)
		}()
	}
	return true
}
