package registry

import (
	"context"
	"fmt"
	"time"
)

// Presence is one connect or disconnect of a device, as the broker saw it.
type Presence struct {
	ProductKey string
	DeviceName string
	Online     bool
	At         time.Time
	// ConnectedAt is set on an offline record that folds a connect from
	// the same batch (a short session): it counts as having been online.
	ConnectedAt time.Time
	// Reason is why a session ended (AWS IoT's disconnectReason, as the
	// broker's presence event names it); empty for a connect.
	Reason string
	// AccountID and ThingName are the device's as the broker read them at
	// CONNECT, so observers need not read the device again. The store
	// ignores them and Reason.
	AccountID string
	ThingName string
}

// Coalesce folds a batch of presence changes in order into one change per
// device: its final state, remembering a connect in between. A burst of
// short sessions then costs one row update per device, not two.
func Coalesce(ps []Presence) []Presence {
	type key struct{ pk, dn string }
	idx := make(map[key]int, len(ps))
	out := make([]Presence, 0, len(ps))
	for _, p := range ps {
		k := key{p.ProductKey, p.DeviceName}
		i, seen := idx[k]
		if !seen {
			idx[k] = len(out)
			out = append(out, p)
			continue
		}
		prev := out[i]
		if !p.Online {
			switch {
			case prev.Online:
				p.ConnectedAt = prev.At
			case !prev.ConnectedAt.IsZero():
				p.ConnectedAt = prev.ConnectedAt
			}
		}
		out[i] = p
	}
	return out
}

// PresenceStore is the part of the store that records presence in bulk.
type PresenceStore interface {
	// ApplyPresence applies changes in order in one transaction: online
	// sets status online (unless disabled), first-online if unset and
	// last-online; offline sets status offline (if online) and last-online.
	// Unknown devices are skipped.
	ApplyPresence(ctx context.Context, ps []Presence) error
	// ResetPresence marks every online device offline; run at start, when
	// no session can be live yet.
	ResetPresence(ctx context.Context, at time.Time) (int64, error)
}

// RecordPresence writes a batch of presence changes.
func (s *Service) RecordPresence(ctx context.Context, ps []Presence) error {
	ps = Coalesce(ps)
	for i := range ps {
		ps[i].At = ps[i].At.UTC().Truncate(time.Millisecond)
		if !ps[i].ConnectedAt.IsZero() {
			ps[i].ConnectedAt = ps[i].ConnectedAt.UTC().Truncate(time.Millisecond)
		}
	}
	if err := s.store.ApplyPresence(ctx, ps); err != nil {
		return fmt.Errorf("recording presence of %d devices: %w", len(ps), err)
	}
	return nil
}

// ResetPresence marks all online devices offline, for a node that starts
// with no live sessions.
func (s *Service) ResetPresence(ctx context.Context) (int64, error) {
	return s.store.ResetPresence(ctx, s.nowUTC())
}
