package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/pending"
)

// Desired property values: what an application wants a device's writable
// properties to be, kept with a version per property until the device (or
// an operator) deletes it, so that a command set while the device is away
// is not lost. The device reads them with thing.property.desired.get and
// clears them with thing.property.desired.delete; corral also delivers
// the ones the device has not acknowledged as a property set when it comes
// online (see internal/thing).

// DesiredValue is one desired property value.
type DesiredValue struct {
	Identifier string          `json:"identifier"`
	Value      json.RawMessage `json:"value"`
	// Version counts the sets of this property's desired value, from 1;
	// a set or delete that names a version succeeds only on that version.
	Version int64     `json:"version"`
	Time    time.Time `json:"time"`
	// Delivered is the version the device acknowledged in a property set
	// (0: none): corral does not send that version again.
	Delivered int64 `json:"deliveredVersion"`
}

// DesiredStore persists desired values.
type DesiredStore interface {
	// UpdateDesired replaces a device's desired values with what fn makes
	// of the current ones (sorted by identifier), atomically; an error
	// from fn leaves them as they were and is returned.
	UpdateDesired(ctx context.Context, pk, dn string, fn func(cur []DesiredValue) ([]DesiredValue, error)) error
	// Desired returns a device's desired values, sorted by identifier.
	Desired(ctx context.Context, pk, dn string) ([]DesiredValue, error)
	// UndeliveredDesired calls add for every device holding a desired
	// value whose version it has not acknowledged.
	UndeliveredDesired(ctx context.Context, add func(pk, dn string)) error
}

// MaxDesired bounds the desired values a device holds.
const MaxDesired = 128

// ErrVersionConflict means a desired value's version was not the one
// named: someone else set it meanwhile.
var ErrVersionConflict = fmt.Errorf("desired value version mismatch: %w", ErrConflict)

// DesiredSet is a change of desired values: values to set, and the
// versions they must have now (optional, per property; 0 means the
// property has no desired value yet).
type DesiredSet struct {
	Values   map[string]json.RawMessage `json:"values"`
	Versions map[string]int64           `json:"versions,omitempty"`
}

// DesiredObserver is told when desired values were set, so that an
// online device gets them at once.
type DesiredObserver interface {
	DesiredChanged(ctx context.Context, pk, dn string)
}

// AddDesiredObserver registers an observer of desired value changes.
func (s *Service) AddDesiredObserver(o DesiredObserver) { s.desired = append(s.desired, o) }

// DesiredProperties returns the desired values of a device of the
// caller's account.
func (s *Service) DesiredProperties(ctx context.Context, p Principal, pk, dn string) ([]DesiredValue, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	if _, err := s.device(ctx, p, pk, dn); err != nil {
		return nil, err
	}
	return s.store.Desired(ctx, pk, dn)
}

// SetDesired sets desired values of a device of the caller's account.
// check validates the values (against the product's thing model: writable
// properties of the right type); it names the property it refuses.
func (s *Service) SetDesired(ctx context.Context, p Principal, pk, dn string, set DesiredSet, check func(map[string]json.RawMessage) error) ([]DesiredValue, error) {
	if err := need(p, RoleOperator); err != nil {
		return nil, err
	}
	if _, err := s.device(ctx, p, pk, dn); err != nil {
		return nil, err
	}
	if len(set.Values) == 0 {
		return nil, invalid("values", "give at least one property value")
	}
	for id := range set.Versions {
		if _, ok := set.Values[id]; !ok {
			return nil, invalid("versions."+id, "a version for a property with no value in values")
		}
	}
	if check != nil {
		if err := check(set.Values); err != nil {
			return nil, err
		}
	}
	now := s.nowUTC()
	var out []DesiredValue
	err := s.updateDesired(ctx, pk, dn, func(cur []DesiredValue) ([]DesiredValue, error) {
		byID := make(map[string]DesiredValue, len(cur)+len(set.Values))
		for _, v := range cur {
			byID[v.Identifier] = v
		}
		for id, val := range set.Values {
			have := byID[id]
			if want, ok := set.Versions[id]; ok && want != have.Version {
				return nil, fmt.Errorf("%s is at version %d, not %d: %w", id, have.Version, want, ErrVersionConflict)
			}
			byID[id] = DesiredValue{Identifier: id, Value: val, Version: have.Version + 1, Time: now}
		}
		if len(byID) > MaxDesired {
			return nil, invalid("values", "a device holds at most %d desired values", MaxDesired)
		}
		out = sortedDesired(byID)
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.desired.set", Target: pk + "/" + dn, Outcome: "ok",
		Reason: fmt.Sprintf("%d properties", len(set.Values))})
	for _, o := range s.desired {
		o.DesiredChanged(ctx, pk, dn)
	}
	return out, nil
}

// DeleteDesired deletes desired values of a device of the caller's
// account: the named identifiers (all when none are named).
func (s *Service) DeleteDesired(ctx context.Context, p Principal, pk, dn string, ids []string) error {
	if err := need(p, RoleOperator); err != nil {
		return err
	}
	if _, err := s.device(ctx, p, pk, dn); err != nil {
		return err
	}
	versions := make(map[string]int64, len(ids))
	for _, id := range ids {
		versions[id] = 0
	}
	if _, err := s.DeviceDeleteDesired(ctx, pk, dn, versions, len(ids) == 0); err != nil {
		return err
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.desired.delete", Target: pk + "/" + dn, Outcome: "ok"})
	return nil
}

// LookupDesired returns a device's desired values (for the device's own
// requests; no principal).
func (s *Service) LookupDesired(ctx context.Context, pk, dn string) ([]DesiredValue, error) {
	return s.store.Desired(ctx, pk, dn)
}

// DeviceDeleteDesired deletes desired values as a device asks: each named
// property whose version is the one given (0: any version), or every one
// when all is set. It returns the identifiers deleted; a version that does
// not match leaves that property (Alibaba's rule: the device clears only
// the value it has applied).
func (s *Service) DeviceDeleteDesired(ctx context.Context, pk, dn string, versions map[string]int64, all bool) ([]string, error) {
	var deleted []string
	err := s.updateDesired(ctx, pk, dn, func(cur []DesiredValue) ([]DesiredValue, error) {
		keep := cur[:0:0]
		for _, v := range cur {
			want, named := versions[v.Identifier]
			if all || named && (want == 0 || want == v.Version) {
				deleted = append(deleted, v.Identifier)
				continue
			}
			keep = append(keep, v)
		}
		return keep, nil
	})
	return deleted, err
}

// MarkDesiredDelivered records that the device acknowledged the given
// versions in a property set.
func (s *Service) MarkDesiredDelivered(ctx context.Context, pk, dn string, versions map[string]int64) error {
	return s.updateDesired(ctx, pk, dn, func(cur []DesiredValue) ([]DesiredValue, error) {
		out := append([]DesiredValue(nil), cur...)
		for i, v := range out {
			if ver, ok := versions[v.Identifier]; ok && ver == v.Version {
				out[i].Delivered = ver
			}
		}
		return out, nil
	})
}

// updateDesired is the store's UpdateDesired, kept in the index of
// devices with undelivered values: every write of desired values goes
// through it.
func (s *Service) updateDesired(ctx context.Context, pk, dn string, fn func(cur []DesiredValue) ([]DesiredValue, error)) error {
	return s.undelivered.Update(pending.Key{pk, dn}, func() (bool, error) {
		var next []DesiredValue
		err := s.store.UpdateDesired(ctx, pk, dn, func(cur []DesiredValue) ([]DesiredValue, error) {
			out, err := fn(cur)
			next = out
			return out, err
		})
		return undelivered(next), err
	})
}

func undelivered(vs []DesiredValue) bool {
	for _, v := range vs {
		if v.Delivered < v.Version {
			return true
		}
	}
	return false
}

// MaybeUndeliveredDesired reports whether a device may hold desired
// values it has not acknowledged: false only when it is known to hold
// none, so that its session start reads nothing. The first call loads
// the index from the store (a failure is logged and answers true).
func (s *Service) MaybeUndeliveredDesired(ctx context.Context, pk, dn string) bool {
	if !s.undelivered.Loaded() {
		s.loadUndelivered(ctx)
	}
	return s.undelivered.Maybe(pending.Key{pk, dn})
}

// loadUndelivered loads the index of devices with undelivered desired
// values, once.
func (s *Service) loadUndelivered(ctx context.Context) {
	s.undeliveredLoad.Lock()
	defer s.undeliveredLoad.Unlock()
	if s.undelivered.Loaded() {
		return
	}
	err := s.undelivered.Load(func(add func(pending.Key)) error {
		return s.store.UndeliveredDesired(ctx, func(pk, dn string) { add(pending.Key{pk, dn}) })
	})
	if err != nil {
		s.log.Warn("loading the devices with undelivered desired values", "err", err)
	}
}

func sortedDesired(m map[string]DesiredValue) []DesiredValue {
	out := make([]DesiredValue, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identifier < out[j].Identifier })
	return out
}
