package sqlite

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A shadow's superseded versions kept inline in its row (shadows.past,
// migration 00023), so that a write of a small document is one row write:
// a flags byte, then the versions newest first, each its version
// (uvarint), its updated_at in milliseconds (varint) and its document
// (uvarint length, bytes). Versions strictly decrease.
//
// NULL (a row last written before 00023) means the shadow's history is
// all in shadow_history, the current version included if it was kept.

// Flags of the past blob.
const (
	// pastCurrent: the current version (the row's doc) is part of the
	// history (the write kept some).
	pastCurrent byte = 1 << iota
	// pastSpilled: shadow_history may hold older superseded versions of
	// the shadow (ones that did not fit the byte budget), all older than
	// the inline ones.
	pastSpilled
	// pastPending: shadow_history is yet to change (nextPast); never
	// stored by a committed write.
	pastPending

	pastFlags = pastCurrent | pastSpilled | pastPending
)

// pastBudget bounds the encoded inline versions (bytes); an older one that
// does not fit goes to shadow_history.
const pastBudget = 4096

// pastVersion is one superseded version of a shadow.
type pastVersion struct {
	version int64
	at      int64 // updated_at, ms
	doc     []byte
}

// size is v's encoded length.
func (v pastVersion) size() int {
	return uvarintLen(uint64(v.version)) + varintLen(v.at) + uvarintLen(uint64(len(v.doc))) + len(v.doc)
}

// appendPast appends the encoding of flags and vs (newest first) to dst.
func appendPast(dst []byte, flags byte, vs []pastVersion) []byte {
	dst = append(dst, flags)
	for _, v := range vs {
		dst = binary.AppendUvarint(dst, uint64(v.version))
		dst = binary.AppendVarint(dst, v.at)
		dst = binary.AppendUvarint(dst, uint64(len(v.doc)))
		dst = append(dst, v.doc...)
	}
	return dst
}

var errPast = errors.New("malformed shadow past")

// parsePast decodes a past blob; the documents alias b.
func parsePast(b []byte) (flags byte, vs []pastVersion, err error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: empty", errPast)
	}
	flags, b = b[0], b[1:]
	if flags&^pastFlags != 0 {
		return 0, nil, fmt.Errorf("%w: flags %#x", errPast, flags)
	}
	for len(b) > 0 {
		ver, n := binary.Uvarint(b)
		if n <= 0 || ver == 0 || ver > 1<<63-1 {
			return 0, nil, fmt.Errorf("%w: version", errPast)
		}
		b = b[n:]
		at, n := binary.Varint(b)
		if n <= 0 {
			return 0, nil, fmt.Errorf("%w: time", errPast)
		}
		b = b[n:]
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return 0, nil, fmt.Errorf("%w: document length", errPast)
		}
		b = b[n:]
		if len(vs) > 0 && int64(ver) >= vs[len(vs)-1].version {
			return 0, nil, fmt.Errorf("%w: versions out of order", errPast)
		}
		vs = append(vs, pastVersion{version: int64(ver), at: at, doc: b[:l:l]})
		b = b[l:]
	}
	return flags, vs, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
