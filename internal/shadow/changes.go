package shadow

import (
	"errors"
	"fmt"
)

// ErrVersionNotKept is wrapped by ChangedSince when the history does not
// hold the version asked for: the caller answers with the whole document.
var ErrVersionNotKept = errors.New("shadow: version not kept")

// Changes is what changed from one version to another, written as an
// update: applied to the older document it yields the newer state
// (changed leaves carry their new value, removed keys null; values equal
// as JSON values do not appear). A section absent from the patch did not
// change.
type Changes struct {
	From     int64          `json:"fromVersion"`
	To       int64          `json:"version"`
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Desired) == 0 && len(c.Reported) == 0 }

// Update is the changes as an AWS update request body (no version, no
// clientToken): applied to the document of version From it yields the
// state of version To.
func (c Changes) Update() []byte {
	return marshal(struct {
		State wireState `json:"state"`
	}{wireState{Desired: c.Desired, Reported: c.Reported}})
}

// ChangedSince answers "what changed since version since" from the
// versions the caller kept (in any order; the newest is the current one).
// A since at or past the current version gives empty Changes.
func ChangedSince(history []Document, since int64) (Changes, error) {
	if len(history) == 0 {
		return Changes{}, fmt.Errorf("%w: %d (no history)", ErrVersionNotKept, since)
	}
	cur := history[0]
	var old *Document
	for i := range history {
		if history[i].Version > cur.Version {
			cur = history[i]
		}
		if history[i].Version == since {
			old = &history[i]
		}
	}
	if since >= cur.Version {
		return Changes{From: cur.Version, To: cur.Version}, nil
	}
	if old == nil {
		return Changes{}, fmt.Errorf("%w: %d", ErrVersionNotKept, since)
	}
	return Changes{
		From:     since,
		To:       cur.Version,
		Desired:  diff(old.Desired, cur.Desired),
		Reported: diff(old.Reported, cur.Reported),
	}, nil
}

// diff is the merge patch turning old into new; nil when they are equal.
func diff(old, new map[string]any) map[string]any {
	var out map[string]any
	set := func(k string, v any) {
		if out == nil {
			out = map[string]any{}
		}
		out[k] = v
	}
	for k := range old {
		if _, ok := new[k]; !ok {
			set(k, nil)
		}
	}
	for k, n := range new {
		o, had := old[k]
		nm, nIsMap := n.(map[string]any)
		om, oIsMap := o.(map[string]any)
		switch {
		case nIsMap && oIsMap:
			if d := diff(om, nm); d != nil {
				set(k, d)
			}
		case !had || !equal(o, n):
			set(k, clone(n))
		}
	}
	return out
}
