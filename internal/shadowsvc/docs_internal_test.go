package shadowsvc

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/corral-iot/corral/internal/shadow"
)

// The kept documents stay within their bound in bytes, whatever is set,
// replaced or deleted, and what is kept is what was set last.
func TestDocCacheBound(t *testing.T) {
	key := func(i int) shadow.Key { return shadow.Key{ProductKey: "pk", DeviceName: fmt.Sprintf("d%04d", i)} }
	doc := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	one := entrySize(key(0), doc(100))
	tests := []struct {
		name     string
		max      int
		sets     int // keys 0..sets-1, each a 100-byte document
		replace  []byte
		del      int // deletes keys 0..del-1 after the sets
		wantLen  int
		wantKept bool // key sets-1 is kept with its document
	}{
		{"all fit", 10 * one, 10, nil, 0, 10, true},
		{"full: the newest kept", 10 * one, 25, nil, 0, 10, true},
		{"replaced in place", 10 * one, 10, bytes.Repeat([]byte("y"), 100), 0, 10, true},
		{"replaced by a larger one: room made", 10 * one, 10, doc(150), 0, 9, true},
		{"a document larger than the cache", one - 1, 3, nil, 0, 0, false},
		{"deleted", 10 * one, 10, nil, 4, 6, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newDocCache(tt.max)
			for i := range tt.sets {
				c.set(key(i), doc(100))
			}
			last := doc(100)
			if tt.replace != nil {
				last = tt.replace
				c.set(key(tt.sets-1), last)
			}
			for i := range tt.del {
				c.delete(key(i))
			}
			sum := 0
			for k, b := range c.m {
				sum += entrySize(k, b)
			}
			if sum != c.bytes || c.bytes > tt.max {
				t.Fatalf("bytes %d, counted %d, bound %d", c.bytes, sum, tt.max)
			}
			if len(c.m) != tt.wantLen {
				t.Fatalf("%d entries, want %d", len(c.m), tt.wantLen)
			}
			b, ok := c.get(key(tt.sets - 1))
			if ok != tt.wantKept || (ok && !bytes.Equal(b, last)) {
				t.Fatalf("last key kept %v (%d bytes), want %v", ok, len(b), tt.wantKept)
			}
		})
	}
}
