package conformance_test

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
)

// mosquittoAddr is the reference peer .ci/run starts: Mosquitto 2.0 with
// allow_anonymous, persistence on and its default limits.
const mosquittoAddr = "127.0.0.1:1883"

// Mosquitto is the suite's reference target: every case passes against it
// or is declared here as a gap of its default configuration, so every case
// is shown able to pass.
func mosquitto() conformance.Target {
	return conformance.Target{
		Name: "mosquitto",
		Addr: mosquittoAddr,
		Features: conformance.Features{
			MaxQoS:              2,
			Retain:              true,
			SharedSubscriptions: true,
			SubscriptionIDs:     true,
			WillDelay:           true,
			MaxQueued:           1000, // max_queued_messages
		},
		Gaps: map[string]string{
			// Mosquitto 2.0.11 checks keep alives from its main loop on a
			// whole-second clock: a 1 s keep alive was closed after 2.5 s to
			// more than 3 s, a 3 s one after 4.1 s to more than 6 s. The
			// lenient case (closed at all, will published) passes.
			"v3/keepalive/closed_within_1.5x": "closes late: keep alives checked on a whole-second main loop",
		},
	}
}

// TestMosquitto runs the suite against the reference peer.
func TestMosquitto(t *testing.T) {
	c, err := net.DialTimeout("tcp", mosquittoAddr, time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Mosquitto at %s, which .ci/run starts: %v", mosquittoAddr, err)
		}
		t.Skipf("no Mosquitto at %s (.ci/run starts it): %v", mosquittoAddr, err)
	}
	c.Close()
	conformance.Run(t, mosquitto())
}
