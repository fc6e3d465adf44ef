// Package conformance is corral's MQTT conformance suite (issue 13): one test
// per behaviour of MQTT 3.1.1 and 5.0 that the engine spec lists, runnable
// against any broker address.
//
// A broker is described by a Target: how to reach it, what it implements or
// advertises (Features), and the cases it is known not to pass with a reason
// (Gaps). Run runs every case as a subtest named "v3/…" or "v5/…"; a case
// skips itself only when the target declares it lacks the feature the case
// needs. Cases speak raw packets through corral's codec (internal/mqtt/packet)
// so that reason codes, properties, DUP flags, packet identifiers and
// malformed packets are exact, and a few go through the Paho client, which
// nobody here wrote.
//
// Every case uses topics and client ids under a prefix unique to the run,
// and removes the retained messages and persistent sessions it creates.
//
// A broker's test declares it and runs the suite:
//
//	func TestConformance(t *testing.T) {
//		addr := startBroker(t) // a real listener on 127.0.0.1:0
//		conformance.Run(t, conformance.Target{
//			Name: "corral",
//			Addr: addr,
//			Features: conformance.Features{MaxQoS: 2, Retain: true, SharedSubscriptions: true,
//				SubscriptionIDs: true, WillDelay: true, MaxPacketSize: 256 << 10, MaxQueued: 1000},
//			Gaps: map[string]string{"v5/…": "why, until when"},
//		})
//	}
//
// RunDurable runs the restart cases (Target.Restart) one at a time, apart
// from Run. The cases mostly wait on timers: run with -parallel 32 (or set
// it in TestMain, as this package's tests do) for the suite to take about
// 10 s rather than a minute.
package conformance
