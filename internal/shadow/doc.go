// Package shadow is the pure core of device shadows (issue 11): the
// document, its merge, delta, metadata and version rules, and every wire
// payload of the two dialects devices speak to it — AWS IoT's
// ($aws/things/{thing}/shadow/…) and Alibaba's (/shadow/update and
// /shadow/get/{pk}/{dn}). Both dialects work on the same Document (the
// device's classic shadow). The package does no I/O, reads no clock (the
// caller passes now) and keeps no state: the service stores what it is
// given back and publishes the payloads. The contract is
// ../shared/specs/shadow.md.
//
// Versions. One counter serves both dialects and only ever grows, so an
// AWS client's "drop what is not newer" stays right whichever dialect made
// the change:
//   - an accepted AWS update sets it to stored+1 (the request's version, when
//     given, must equal stored);
//   - an accepted Alibaba update or delete with version N > 0 sets it to N
//     (N must be greater than stored); with version 0 (no check) it sets
//     stored+1;
//   - a get never changes it; an AWS delete leaves a Tombstone holding it,
//     and a shadow recreated within VersionRetention continues from it.
//
// update/accepted and update/delta for one update carry the same (new)
// version, as AWS sends them: a client that drops a delta "not newer than
// the last version seen" must compare against the last delta's version,
// not the accepted one's.
package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Size limits of desired + reported, measured as compact JSON after the
// update is merged (metadata not counted).
const (
	DefaultMaxStateBytes = 8 << 10
	MaxMaxStateBytes     = 64 << 10
)

// MaxVersion is the largest version a request may ask for: every JSON
// client, those reading numbers as doubles included, reads it exactly, and
// stored+1 never overflows.
const MaxVersion = 1 << 53

// VersionRetention is how long a deleted shadow's version is kept: a
// shadow recreated within it continues the version, after it starts again.
const VersionRetention = 48 * time.Hour

// Limits are the configurable bounds of a document.
type Limits struct {
	// MaxStateBytes bounds desired + reported; 0 means DefaultMaxStateBytes.
	MaxStateBytes int
}

// Validate refuses limits the service must not start with.
func (l Limits) Validate() error {
	if l.MaxStateBytes < 0 || l.MaxStateBytes > MaxMaxStateBytes {
		return fmt.Errorf("shadow: max state bytes %d: want 0 (default %d) to %d", l.MaxStateBytes, DefaultMaxStateBytes, MaxMaxStateBytes)
	}
	return nil
}

func (l Limits) maxStateBytes() int {
	switch {
	case l.MaxStateBytes <= 0:
		return DefaultMaxStateBytes
	case l.MaxStateBytes > MaxMaxStateBytes:
		return MaxMaxStateBytes
	}
	return l.MaxStateBytes
}

// Metadata has the shape of the state it describes; each leaf is
// {"timestamp":T}, T in epoch seconds, the last time that leaf was set.
type Metadata struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// Document is one shadow. A nil or empty section is absent. Treat it as a
// value: functions of this package never modify the Document they are
// given and return new ones that share nothing with it.
type Document struct {
	Desired  map[string]any
	Reported map[string]any
	Metadata Metadata
	Version  int64
}

// New is the document an update starts from when no shadow is stored:
// empty, continuing a deleted shadow's version when tomb (nil when there
// is none) is younger than VersionRetention.
func New(tomb *Tombstone, now time.Time) Document {
	if tomb != nil && now.Sub(tomb.DeletedAt) < VersionRetention {
		return Document{Version: tomb.Version}
	}
	return Document{}
}

// Tombstone is what the service keeps of a deleted shadow.
type Tombstone struct {
	Version   int64
	DeletedAt time.Time
}

// Delta is every desired leaf that differs from reported, with its
// desired metadata; nil, nil when desired ⊆ reported.
func (d Document) Delta() (state, metadata map[string]any) {
	return delta(d.Desired, d.Metadata.Desired, d.Reported)
}

// Size is what the size limit measures: desired + reported as compact JSON.
func (d Document) Size() int { return size(d.Desired, d.Reported) }

// Equal reports whether two documents hold the same state, metadata and
// version.
func (d Document) Equal(o Document) bool {
	return d.Version == o.Version &&
		equalSection(d.Desired, o.Desired) && equalSection(d.Reported, o.Reported) &&
		string(marshal(d.metadata())) == string(marshal(o.metadata()))
}

// SameDesired reports whether two documents hold the same desired state.
func SameDesired(a, b Document) bool { return equalSection(a.Desired, b.Desired) }

func equalSection(a, b map[string]any) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return equal(a, b)
}

func (d Document) clone() Document {
	return Document{
		Desired:  cloneMap(d.Desired),
		Reported: cloneMap(d.Reported),
		Metadata: Metadata{Desired: cloneMap(d.Metadata.Desired), Reported: cloneMap(d.Metadata.Reported)},
		Version:  d.Version,
	}
}

// wireState is {"desired","reported"} with absent sections left out.
type wireState struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
	Delta    map[string]any `json:"delta,omitempty"`
}

func (d Document) state() wireState { return wireState{Desired: d.Desired, Reported: d.Reported} }

func (d Document) metadata() Metadata {
	return Metadata{Desired: d.Metadata.Desired, Reported: d.Metadata.Reported}
}

// stored is the form a Document is kept in, and the {state, metadata,
// version} of update/documents.
type stored struct {
	State    wireState `json:"state"`
	Metadata Metadata  `json:"metadata"`
	Version  int64     `json:"version"`
}

// MarshalJSON is the stored form: {"state":{…},"metadata":{…},"version":N},
// keys sorted, so equal documents are equal bytes.
func (d Document) MarshalJSON() ([]byte, error) {
	return marshal(stored{State: d.state(), Metadata: d.metadata(), Version: d.Version}), nil
}

// storedForm is d.MarshalJSON(), with the size of its state's sections
// as encoded (d.Size()), written in one buffer: the size limit is checked
// on the bytes the store keeps.
func storedForm(d Document) (b []byte, stateBytes int) {
	e := encoders.Get().(*encoder)
	defer e.put()
	b = append(e.scratch[:0], `{"state":{`...)
	if len(d.Desired) > 0 {
		b = append(b, `"desired":`...)
		at := len(b)
		b = appendMarshal(b, d.Desired)
		stateBytes += len(b) - at
		if len(d.Reported) > 0 {
			b = append(b, ',')
		}
	}
	if len(d.Reported) > 0 {
		b = append(b, `"reported":`...)
		at := len(b)
		b = appendMarshal(b, d.Reported)
		stateBytes += len(b) - at
	}
	b = append(b, `},"metadata":`...)
	b = appendMarshal(b, d.metadata())
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, d.Version, 10)
	e.scratch = append(b, '}')
	return bytes.Clone(e.scratch), stateBytes
}

// appendMarshal appends v as marshal encodes it.
func appendMarshal(b []byte, v any) []byte {
	if out, ok := appendJSON(b, v); ok {
		return out
	}
	return append(b, marshal(v)...)
}

// ErrStored is wrapped by every error of Parse.
var ErrStored = errors.New("shadow: stored document")

// Parse reads a document written by MarshalJSON. Metadata is rebuilt in
// the shape of the state, so a document that went through a hand edit
// still holds to the merge's invariants. It reads the first JSON value of
// b as a json.Decoder does (what follows an object is ignored), in one
// pass (decode.go); a b that is not JSON or not an object is read again by
// encoding/json, whose error the result wraps.
func Parse(b []byte) (Document, error) {
	if doc, ok, err := storedDoc(b); ok {
		return doc, err
	}
	top, ok := decodeStored(b)
	if !ok { // not JSON or not an object: encoding/json's words for which
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return Document{}, fmt.Errorf("%w: %w", ErrStored, err)
		}
		if top, ok = v.(map[string]any); !ok {
			return Document{}, fmt.Errorf("%w: not an object", ErrStored)
		}
	}
	return parseStored(top)
}

// storedVersion is a stored document's version from its "version"
// member: 0 when it is not a number, an error when it is a number but
// not a version.
func storedVersion(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, nil
	}
	ver, err := n.Int64()
	if err != nil || ver < 0 {
		return 0, fmt.Errorf("%w: version %s", ErrStored, n)
	}
	return ver, nil
}

// parseStored reads a stored document's decoded top-level object.
func parseStored(top map[string]any) (Document, error) {
	st, _ := top["state"].(map[string]any)
	md, _ := top["metadata"].(map[string]any)
	var d Document
	var err error
	if d.Version, err = storedVersion(top["version"]); err != nil {
		return Document{}, err
	}
	section := func(name string) (map[string]any, map[string]any) {
		s, _ := st[name].(map[string]any)
		m, _ := md[name].(map[string]any)
		return normalize(s, m)
	}
	d.Desired, d.Metadata.Desired = section("desired")
	d.Reported, d.Metadata.Reported = section("reported")
	return d, nil
}
