package shadow

import (
	"context"
	"errors"
	"time"
)

// The store port: how the shadow service keeps documents. It is declared
// here, beside the document it stores, so that every adapter (SQLite now,
// PostgreSQL with the scale-out) passes the same conformance cases
// (internal/store/storetest). Adapters store documents as the opaque
// bytes of Document.MarshalJSON; the version rules live in this package.

// Key names one shadow: a device's classic shadow (Name "") or a named one.
type Key struct {
	ProductKey string
	DeviceName string
	Name       string
}

// Stored is a shadow as kept: its document and version, or, once deleted,
// a tombstone (Deleted) carrying the version a re-creation continues.
type Stored struct {
	Doc       []byte // Document.MarshalJSON; nil for a tombstone
	Version   int64
	UpdatedAt time.Time
	Deleted   bool // a tombstone: DeletedAt is UpdatedAt
}

// Errors of the store port.
var (
	// ErrNoShadow: neither a shadow nor a tombstone is stored.
	ErrNoShadow = errors.New("shadow: none stored")
	// ErrStale: the stored version is not the one the write was based on
	// (another writer came first); read again and reapply.
	ErrStale = errors.New("shadow: stored version changed")
)

// NoneStored is the prev of a write that creates a shadow where neither
// a shadow nor a tombstone is stored, made without reading (a device's
// first session): anything stored makes it ErrStale, so the writer reads
// and writes again, a tombstone's version continuing.
const NoneStored int64 = -1

// Store keeps shadows and their recent history.
type Store interface {
	// GetShadow returns a shadow or its tombstone; ErrNoShadow if neither.
	GetShadow(ctx context.Context, k Key) (Stored, error)
	// PutShadow stores s if the stored version is prev (0: nothing stored,
	// or a tombstone at any version; NoneStored: nothing at all, not even a
	// tombstone), else ErrStale; it appends s to the shadow's history,
	// keeping the newest keep versions (0: none). s.Doc is the store's
	// once passed: the caller must not change it afterwards.
	PutShadow(ctx context.Context, k Key, prev int64, s Stored, keep int) error
	// PutShadows is PutShadow of several shadows (distinct keys) in one
	// transaction: errs[i] is puts[i]'s own outcome (ErrStale alone
	// stores nothing of it, the others are stored); err, a failure of the
	// whole, stores none.
	PutShadows(ctx context.Context, puts []Put) (errs []error, err error)
	// DeleteShadow replaces a shadow at version prev by a tombstone
	// carrying that version (ErrStale if the version moved, ErrNoShadow if
	// none is stored) and drops its history.
	DeleteShadow(ctx context.Context, k Key, prev int64, at time.Time) error
	// ListShadows lists a device's named shadows (not the classic one, not
	// tombstones) in name order after the name after, at most limit.
	ListShadows(ctx context.Context, pk, dn, after string, limit int) ([]string, error)
	// ShadowHistory returns the stored versions of a shadow newer than
	// since, oldest first.
	ShadowHistory(ctx context.Context, k Key, since int64) ([]Stored, error)
}

// Put is one write of PutShadows: s stored at version prev, keeping the
// newest keep versions in its history.
type Put struct {
	Key  Key
	Prev int64
	S    Stored
	Keep int
}

// Tomb returns the tombstone of a stored record (nil when it is a live
// shadow), for New.
func (s Stored) Tomb() *Tombstone {
	if !s.Deleted {
		return nil
	}
	return &Tombstone{Version: s.Version, DeletedAt: s.UpdatedAt}
}
