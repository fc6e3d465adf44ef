package hostile_test

import (
	"encoding/json"
	"testing"
)

// Attacks on device shadows over MQTT (issue 11): the shadow service acts
// on what the broker lets through, so each attack here is a request that
// must change nothing: another account's application or same-named
// device, a readonly key updating or deleting, a device writing another
// device's Alibaba shadow.

// shadowVersion reads a shadow's version through account 1's readonly
// key (a get is the one shadow request a readonly key may publish).
func (w *world) shadowVersion(t *testing.T, thing string) (int64, map[string]any) {
	t.Helper()
	ro := w.app(t, w.T1.Readonly)
	in := newInbox()
	sh := "$aws/things/" + thing + "/shadow"
	mustSubscribe(t, ro, sh+"/get/+", in)
	publish(t, ro, sh+"/get", `{"clientToken":"probe"}`)
	m := in.next(t)
	if m.Topic() != sh+"/get/accepted" {
		t.Fatalf("readonly get: %s %s", m.Topic(), m.Payload())
	}
	var doc struct {
		State   map[string]any `json:"state"`
		Version int64          `json:"version"`
	}
	if err := json.Unmarshal(m.Payload(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Version, doc.State
}

// TestShadowWritesOutsideRightsChangeNothing: every write that is not the
// operator's or the device's own is dropped before the shadow service,
// and no answer is published for it.
func TestShadowWritesOutsideRightsChangeNothing(t *testing.T) {
	w := newWorld(t)
	thing := rightsThing(w.T1.DevA)
	sh := "$aws/things/" + thing + "/shadow"
	op := w.app(t, w.T1.Operator)
	answers := newInbox()
	mustSubscribe(t, op, sh+"/#", answers)
	publish(t, op, sh+"/update", `{"state":{"desired":{"valve":"closed"}}}`)
	answers.until(t, sh+"/update/accepted")
	before, _ := w.shadowVersion(t, thing)
	if before < 1 {
		t.Fatalf("the operator's update was not applied (version %d)", before)
	}

	ro := w.app(t, w.T1.Readonly)
	publish(t, ro, sh+"/update", `{"state":{"desired":{"valve":"open"}}}`)
	publish(t, ro, sh+"/delete", ``)
	op2 := w.app(t, w.T2.Operator)
	publish(t, op2, sh+"/update", `{"state":{"desired":{"valve":"open"}}}`)
	publish(t, op2, sh+"/delete", ``)
	twin := w.device(t, w.T2.DevA) // account 2's devA
	publish(t, twin, sh+"/update", `{"state":{"reported":{"valve":"open"}}}`)
	publish(t, twin, "/shadow/update/"+w.T1.Direct.ProductKey+"/devA", `{"method":"update","state":{"reported":{"valve":"open"}},"version":0}`)
	sibling := w.device(t, w.T1.DevB) // same account, another device
	publish(t, sibling, sh+"/delete", ``)
	publish(t, sibling, "/shadow/update/"+w.T1.Direct.ProductKey+"/devA", `{"method":"delete","state":{"reported":"null"},"version":0}`)
	rightsSettle(t, ro)
	rightsSettle(t, op2)
	rightsSettle(t, twin)
	rightsSettle(t, sibling)

	after, state := w.shadowVersion(t, thing)
	if after != before {
		t.Errorf("version moved from %d to %d: %v", before, after, state)
	}
	if d, _ := state["desired"].(map[string]any); d["valve"] != "closed" || state["reported"] != nil {
		t.Errorf("state changed: %v", state)
	}
	publish(t, op, sh+"/fence", "fence")
	for _, m := range answers.until(t, sh+"/fence") {
		switch m.Topic() {
		case sh + "/update/accepted", sh + "/update/documents", sh + "/update/delta", sh + "/get", sh + "/get/accepted", sh + "/update":
			// the operator's own update (paho here delivers out of order) and the probes' gets
		default:
			t.Errorf("answered: %s %s", m.Topic(), m.Payload())
		}
	}
}
