package engine

import (
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
)

// TestConformance runs the conformance suite (internal/mqtt/conformance)
// against the engine on a :0 port, with every feature the engine has.
func TestConformance(t *testing.T) {
	_, addr := start(t, Options{MaxKeepAlive: 60, Hooks: &hooks{denySub: "forbidden/#", denyPublish: "forbidden"}})
	conformance.Run(t, conformance.Target{
		Name: "engine",
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
}
