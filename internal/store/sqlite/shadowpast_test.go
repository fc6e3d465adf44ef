package sqlite

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestPastRoundTrip(t *testing.T) {
	vs := []pastVersion{{version: 1 << 40, at: 1765000000123, doc: []byte(`{"a":1}`)}, {version: 300, at: -5, doc: nil}, {version: 1, at: 0, doc: bytes.Repeat([]byte("x"), 200)}}
	for _, flags := range []byte{0, pastCurrent, pastSpilled, pastFlags} {
		for n := range len(vs) + 1 {
			b := appendPast(nil, flags, vs[:n])
			size := 1
			for _, v := range vs[:n] {
				size += v.size()
			}
			if len(b) != size {
				t.Fatalf("%d versions encode to %d bytes; size says %d", n, len(b), size)
			}
			f, got, err := parsePast(b)
			if err != nil || f != flags || len(got) != n {
				t.Fatalf("parsePast(%x) = %d %v %v", b, f, got, err)
			}
			for i := range got {
				if got[i].version != vs[i].version || got[i].at != vs[i].at || !bytes.Equal(got[i].doc, vs[i].doc) {
					t.Fatalf("version %d: %+v; want %+v", i, got[i], vs[i])
				}
			}
		}
	}
}

func TestPastMalformed(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		{8},                   // unknown flag
		{1, 0, 0, 0},          // version 0
		{1, 1, 0, 5, 'a'},     // document past the end
		{1, 1},                // no time
		{1, 1, 0, 0, 2, 0, 0}, // versions increasing
		{1, 2, 0, 0, 2, 0, 0}, // repeated
		{1, 0x80},             // truncated varint
		{1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // huge length
	} {
		if _, _, err := parsePast(b); !errors.Is(err, errPast) {
			t.Errorf("parsePast(%x) = %v; want errPast", b, err)
		}
	}
}

// FuzzPast: parsing never panics, what parses is valid (versions
// decreasing, documents inside the input) and encodes back to bytes that
// parse to the same.
func FuzzPast(f *testing.F) {
	f.Add([]byte{0})
	f.Add(appendPast(nil, pastCurrent, []pastVersion{{version: 7, at: 1765000000000, doc: []byte(`{}`)}, {version: 3, at: 1, doc: []byte("x")}}))
	f.Add([]byte{3, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		flags, vs, err := parsePast(b)
		if err != nil {
			return
		}
		for i, v := range vs {
			if v.version <= 0 || i > 0 && v.version >= vs[i-1].version {
				t.Fatalf("versions %+v", vs)
			}
		}
		again := appendPast(nil, flags, vs)
		if len(again) > len(b) {
			t.Fatalf("re-encoded %d bytes from %d", len(again), len(b))
		}
		f2, vs2, err := parsePast(again)
		if err != nil || f2 != flags || fmt.Sprint(vs2) != fmt.Sprint(vs) {
			t.Fatalf("round trip: %v %v %v; want %v %v", f2, vs2, err, flags, vs)
		}
	})
}
