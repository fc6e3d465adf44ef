package hostile_test

import "testing"

// TestFixtureDevicesShareNames pins what every attack relies on: the two
// accounts hold devices of the same names in different products, and each
// can connect and reach its own topics.
func TestFixtureDevicesShareNames(t *testing.T) {
	w := newWorld(t)
	if w.T1.DevB.DeviceName != w.T2.DevB.DeviceName || w.T1.DevB.ProductKey == w.T2.DevB.ProductKey {
		t.Fatalf("want devB in two products, got %+v and %+v", w.T1.DevB, w.T2.DevB)
	}
	for _, d := range []struct {
		name string
		t    tenant
	}{{"account 1", w.T1}, {"account 2", w.T2}} {
		c := w.device(t, d.t.DevB)
		in := newInbox()
		own := "/" + d.t.DevB.ProductKey + "/devB/user/echo"
		mustSubscribe(t, c, own, in)
		publish(t, c, own, "hello")
		if m := in.next(t); string(m.Payload()) != "hello" {
			t.Fatalf("%s: got %q", d.name, m.Payload())
		}
	}
}
