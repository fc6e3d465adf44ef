package thing_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"
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
	// Through the device's own connection, as the Go device SDK asks.
	before := time.Now()
	at, err := e.c.ServerTime(context.Background())
	if err != nil {
		t.Fatalf("ServerTime through the device's session: %v", err)
	}
	if at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("server time %v, asked at %v", at, before)
	}
}
