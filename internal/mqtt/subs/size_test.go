package subs

import (
	"testing"
	"unsafe"
)

// TestNodeSize keeps the node in its size class: it is most of the index's
// memory.
func TestNodeSize(t *testing.T) {
	if s := unsafe.Sizeof(node{}); s != 80 {
		t.Fatalf("node is %d bytes, want 80", s)
	}
	if s := unsafe.Sizeof(entry{}); s != 24 {
		t.Fatalf("entry is %d bytes, want 24", s)
	}
}
