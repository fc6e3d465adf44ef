package engine

import (
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
)

// TestConformance runs the conformance suite (internal/mqtt/conformance)
// against the engine on a :0 port, with every feature the engine has.
func TestConformance(t *testing.T) {
	runConformance(t, "engine", 0)
}

// runConformance runs the suite against an engine parking after parkIdle
// (0: never), and returns it.
func runConformance(t *testing.T, name string, parkIdle time.Duration) *Server {
	s, addr := start(t, Options{MaxKeepAlive: 60, ParkIdle: parkIdle,
		Hooks: &hooks{denySub: "forbidden/#", denyPublish: "forbidden"}})
	conformance.Run(t, conformance.Target{
		Name: name,
		Addr: addr,
		Features: conformance.Features{
			MaxQoS:              2,
			Retain:              true,
			SharedSubscriptions: true,
			SubscriptionIDs:     true,
			WillDelay:           true,
			RefusedFilter:       "forbidden/#",
			RefusedTopic:        "forbidden",
			MaxPacketSize:       1 << 20,
			MaxQueued:           1000,
			MaxKeepAlive:        60,
		},
	})
	return s
}
