package retained

import (
	"testing"
	"unsafe"
)

// TestSizes keeps the per-message structures in their size classes: they
// are most of the store's memory.
func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"node", unsafe.Sizeof(node{}), 40}, // allocated as 48
		{"entry", unsafe.Sizeof(entry{}), 48},
		{"props", unsafe.Sizeof(props{}), 80},
	} {
		if tc.got != tc.want {
			t.Errorf("%s is %d bytes, want %d", tc.name, tc.got, tc.want)
		}
	}
}
