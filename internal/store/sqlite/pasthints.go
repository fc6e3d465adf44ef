package sqlite

import (
	"sync"
	"sync/atomic"

	"github.com/corral-iot/corral/internal/shadow"
)

// pastHints remembers, for the shadows this process wrote lately, what
// its last write left in their rows: version, kept and the past list. An
// update whose previous version matches the hint skips the read of
// kept/past (qShadowPast, about a quarter of a store write's cost at
// 10,000 shadows): its statements check in their WHERE clauses that the
// row still holds what the hint says, so a hint gone wrong (a delete, a
// group rolled back, a write by another process) changes nothing and
// costs only the read it meant to spare (updateOne then reads). Bounded
// in entries; a full set forgets one at random (the map's order).
type pastHints struct {
	mu  sync.Mutex
	m   map[shadow.Key]pastHint
	max int
	// hits counts the updates that used a hint (tests); apart from mu, so
	// that a hinted update takes the lock once.
	hits atomic.Uint64
}

// pastHint is a shadow row as its last write here left it.
type pastHint struct {
	version int64
	kept    int
	past    string // the past column as written; "" is NULL
	// doc and at are the row's document and updated_at (ms), which an
	// update that supersedes it copies to the log from here instead of
	// from the row (logWork); doc is nil for one over maxHintDoc.
	doc []byte
	at  int64
}

// maxHintDoc bounds the documents hints hold (they share them with the
// caller, whose shadow service caches the same ones): a larger one is
// copied to the log from its row.
const maxHintDoc = 1 << 10

// hintOf is the hint a write of st leaves.
func hintOf(st shadow.Stored, kept int, past string) pastHint {
	h := pastHint{version: st.Version, kept: kept, past: past, at: ms(st.UpdatedAt)}
	if len(st.Doc) <= maxHintDoc {
		h.doc = st.Doc
	}
	return h
}

// maxPastHints bounds the hints kept: ~150 B each with a full list, and
// the documents they share (at most maxHintDoc each).
const maxPastHints = 1 << 16

func newPastHints(max int) *pastHints {
	return &pastHints{m: map[shadow.Key]pastHint{}, max: max}
}

func (h *pastHints) get(k shadow.Key) (pastHint, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.m[k]
	return e, ok
}

func (h *pastHints) set(k shadow.Key, e pastHint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.m[k]; !ok && len(h.m) >= h.max {
		for old := range h.m {
			delete(h.m, old)
			break
		}
	}
	h.m[k] = e
}

func (h *pastHints) forget(k shadow.Key) {
	h.mu.Lock()
	delete(h.m, k)
	h.mu.Unlock()
}

func (h *pastHints) hit() { h.hits.Add(1) }
