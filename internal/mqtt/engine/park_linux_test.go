package engine

import (
	"testing"
	"time"
)

// TestConformanceParked runs the conformance suite again with connections
// parked after 1 ms without a packet: nearly every wait of the suite parks.
func TestConformanceParked(t *testing.T) {
	var s *Server
	// The suite's subtests run in parallel, after this function returns:
	// count the parks once they are done (this cleanup runs last).
	t.Cleanup(func() {
		if s.poll.total.Load() == 0 {
			t.Error("no connection was parked")
		}
		t.Logf("%d parks", s.poll.total.Load())
	})
	s = runConformance(t, "engine-parked", time.Millisecond)
}
