package persist

import (
	"fmt"
	"math"
)

// Validate checks a session record before it is stored.
func (s Session) Validate() error {
	if s.ClientID == "" {
		return fmt.Errorf("%w: session without a client id", ErrInvalid)
	}
	if s.Version != 4 && s.Version != 5 {
		return fmt.Errorf("%w: session protocol level %d (want 4 or 5)", ErrInvalid, s.Version)
	}
	return nil
}

// ValidateSubscriptions checks subscriptions given to Subscribe for
// clientID: each names that client (or none) and a filter, with QoS and
// Retain Handling in range.
func ValidateSubscriptions(clientID string, subs []Subscription) error {
	if clientID == "" {
		return fmt.Errorf("%w: subscriptions without a client id", ErrInvalid)
	}
	for i, s := range subs {
		switch {
		case s.ClientID != "" && s.ClientID != clientID:
			return fmt.Errorf("%w: subscription %d names another client", ErrInvalid, i)
		case s.Filter == "":
			return fmt.Errorf("%w: subscription %d has an empty filter", ErrInvalid, i)
		case s.QoS > 2:
			return fmt.Errorf("%w: subscription %d has QoS %d", ErrInvalid, i, s.QoS)
		case s.RetainHandling > 2:
			return fmt.Errorf("%w: subscription %d has retain handling %d", ErrInvalid, i, s.RetainHandling)
		}
	}
	return nil
}

// messageKey names a message in a client's queue.
type messageKey struct {
	ClientID string
	Seq      uint64
}

// Validate checks a batch before it is written: every record names a
// client, enqueued messages carry PUBLISH bytes and a state short of Done,
// transitions a known state, and no (ClientID, Seq) is enqueued twice.
func (b Batch) Validate() error {
	seen := make(map[messageKey]struct{}, len(b.Enqueue))
	for i, m := range b.Enqueue {
		switch {
		case m.ClientID == "":
			return fmt.Errorf("%w: message %d without a client id", ErrInvalid, i)
		case len(m.Publish) == 0:
			return fmt.Errorf("%w: message %d without PUBLISH bytes", ErrInvalid, i)
		case m.State >= Done:
			return fmt.Errorf("%w: message %d enqueued in state %s", ErrInvalid, i, m.State)
		case m.Seq > math.MaxInt64:
			return fmt.Errorf("%w: message %d has a sequence number past 2^63-1", ErrInvalid, i)
		}
		k := messageKey{m.ClientID, m.Seq}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%w: message %d repeats a sequence number of the batch", ErrDuplicate, i)
		}
		seen[k] = struct{}{}
	}
	for i, t := range b.Transitions {
		switch {
		case t.ClientID == "":
			return fmt.Errorf("%w: transition %d without a client id", ErrInvalid, i)
		case t.State > Done:
			return fmt.Errorf("%w: transition %d to state %d", ErrInvalid, i, t.State)
		}
	}
	for i, in := range b.AddInbound {
		if in.ClientID == "" || in.PacketID == 0 {
			return fmt.Errorf("%w: inbound id %d without a client id or packet id", ErrInvalid, i)
		}
	}
	for i, in := range b.RemoveInbound {
		if in.ClientID == "" {
			return fmt.Errorf("%w: released inbound id %d without a client id", ErrInvalid, i)
		}
	}
	for _, r := range b.SetRetained {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	for i, topic := range b.ClearRetained {
		if topic == "" {
			return fmt.Errorf("%w: retained message %d to clear has no topic", ErrInvalid, i)
		}
	}
	return nil
}

// Validate checks a retained message before it is stored.
func (r Retained) Validate() error {
	if r.Topic == "" {
		return fmt.Errorf("%w: retained message without a topic", ErrInvalid)
	}
	if len(r.Publish) == 0 {
		return fmt.Errorf("%w: retained message without PUBLISH bytes (clear it instead)", ErrInvalid)
	}
	return nil
}
