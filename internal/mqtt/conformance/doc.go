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
package conformance
