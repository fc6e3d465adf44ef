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
			RefusedTopic:        "$SYS/corral-conformance", // clients may not publish to $SYS
			MaxKeepAlive:        65535,                     // max_keepalive
			MaxQueued:           1000,                      // max_queued_messages
			// No RefusedFilter: anonymous clients without an ACL may
			// subscribe to anything. No MaxPacketSize: max_packet_size is
			// unset by default, so none is advertised.
		},
		Gaps: map[string]string{
			// Mosquitto 2.0.11 checks keep alives from its main loop on a
			// whole-second clock: a 1 s keep alive was closed after 2.5 s to
			// more than 3 s, a 3 s one after 4.1 s to more than 6 s. The
			// lenient case (closed at all, will published) passes.
			"v3/keepalive/closed_within_1.5x": "closes late: keep alives checked on a whole-second main loop",
			// Mosquitto 2.0.11 closes the old connection of a taken-over
			// MQTT 5 session without DISCONNECT 0x8E (measured: EOF).
			"v5/session/takeover_disconnect_0x8e": "closes the old connection without DISCONNECT 0x8E",
			// It answers every QoS 2 PUBLISH with PUBREC whatever the
			// number unreleased: 21 against its Receive Maximum of 20.
			"v5/flow_control/server_receive_maximum_exceeded_0x93": "does not enforce its Receive Maximum",
			// It treats a syntactically invalid filter as a malformed
			// packet (DISCONNECT 0x81), which MQTT 5.0 4.13 allows; corral
			// answers per subscription with SUBACK 0x8F.
			"v5/subscribe/bad_filter_0x8f": "answers an invalid filter with DISCONNECT 0x81",
			// It grants No Local on a shared subscription, a protocol
			// error by [MQTT-3.8.3-4].
			"v5/malformed/subscribe_no_local_on_shared": "grants No Local on a shared subscription",
			// It resends a resumed session's whole in-flight window
			// (measured: 4 with a new Receive Maximum of 2, MQTT 5 4.9).
			"v5/flow_control/resend_within_new_receive_maximum": "resends the whole in-flight window past a smaller Receive Maximum",
			// Reason strings are optional; Mosquitto sends none.
			"v5/refusals/reason_string": "sends no reason strings",
		},
	}
}

// needMosquitto skips the test when Mosquitto is unreachable, but under
// CI, which starts it (.ci/run), fails it.
func needMosquitto(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", mosquittoAddr, time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Mosquitto at %s, which .ci/run starts: %v", mosquittoAddr, err)
		}
		t.Skipf("no Mosquitto at %s (.ci/run starts it): %v", mosquittoAddr, err)
	}
	c.Close()
}

// TestMosquitto runs the suite against the reference peer.
func TestMosquitto(t *testing.T) {
	needMosquitto(t)
	t.Parallel()
	conformance.Run(t, mosquitto())
}
