package hostile_test

import (
	"context"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/mqtttest"
)

// TestDistributedDeviceRefusedOnEveryPath: a device a distribution job
// moved away is refused at its old instance on every way in, not only the
// signature CONNECT: a registration-free device's token (connwl), a
// certificate bound to the device, and dynamic registration's
// register-or-query (HTTPS and MQTT), which must not hand out its secret
// here. A wrong token or a stranger learns only "not authorised"; each
// refusal is counted and audited with the distribution reason.
func TestDistributedDeviceRefusedOnEveryPath(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	reg := w.S.App.Registry()
	mark := func(pk, dn string) {
		t.Helper()
		if err := reg.MarkDistributed(ctx, pk, dn, "ap-southeast-1"); err != nil {
			t.Fatal(err)
		}
	}

	// Register-or-query: the product returns an issued secret to a
	// device that registers again, but not once the device moved.
	p := w.S.CreateProduct("auto-return", map[string]any{"dynamicRegistration": "auto", "provisioning": map[string]any{"reRegister": "return"}})
	st, first := w.provRegister(t, w.httpsBase(), provForm(p, "moved-01", "r1"))
	if st != 200 || first.Data.DeviceSecret == "" {
		t.Fatalf("first registration: %d %+v", st, first)
	}
	if st, again := w.provRegister(t, w.httpsBase(), provForm(p, "moved-01", "r2")); st != 200 || again.Data.DeviceSecret != first.Data.DeviceSecret {
		t.Fatalf("re-registration before the move: %d", st)
	}
	mark(p.ProductKey, "moved-01")
	st, again := w.provRegister(t, w.httpsBase(), provForm(p, "moved-01", "r3"))
	if st != 403 || again.Data.DeviceSecret != "" || !strings.Contains(again.Message, "distributed") {
		t.Fatalf("HTTPS re-registration of a distributed device: %d %+v", st, again)
	}
	if ans, err := w.provMQTTRegister(t, "tls", p, "moved-01", "r4"); err == nil || ans["deviceSecret"] != "" {
		t.Fatalf("MQTT re-registration of a distributed device answered %v", ans)
	}
	// A wrong product signature still learns nothing about the move.
	bad := provForm(p, "moved-01", "r5")
	bad.Set("sign", strings.Repeat("0", 64))
	if st, ans := w.provRegister(t, w.httpsBase(), bad); st != 401 || strings.Contains(ans.Message, "distributed") {
		t.Fatalf("badly signed registration of a distributed device: %d %q", st, ans.Message)
	}

	// connwl: the token of a registration-free device.
	ans, err := w.provMQTTRegisterAs(t, "tls", "regnwl", p, "tok-01", "r1")
	if err != nil || ans["deviceToken"] == "" || ans["clientId"] == "" {
		t.Fatalf("regnwl: %v %v", err, ans)
	}
	tcp := w.S.App.Broker().Addr("tcp")
	cid := ans["clientId"] + "|securemode=-2,authType=connwl|"
	user := "tok-01&" + p.ProductKey
	if got := connConnack(t, connDial(t, tcp, ""), connConnect(5, cid, user, ans["deviceToken"])); got != 0 {
		t.Fatalf("connwl before the move: CONNACK %#x", got)
	}
	mark(p.ProductKey, "tok-01")
	for _, tc := range []struct {
		name  string
		level byte
		token string
		want  byte
	}{
		{"MQTT 5, right token", 5, ans["deviceToken"], 0x9D},
		{"MQTT 3.1.1, right token", 4, ans["deviceToken"], 5},
		{"MQTT 5, wrong token", 5, strings.Repeat("0", len(ans["deviceToken"])), 0x87},
	} {
		t.Run("connwl "+tc.name, func(t *testing.T) {
			if got := connConnack(t, connDial(t, tcp, ""), connConnect(tc.level, cid, user, tc.token)); got != tc.want {
				t.Fatalf("CONNACK %#x, want %#x", got, tc.want)
			}
		})
	}

	// A certificate bound to the device.
	leaf := certIssue(t, nil, "dist-cert", "ecdsa")
	w.do(w.T1.Operator, "PUT", certPath(w.T1.DevB), map[string]any{"certificatePem": leaf.pem}, 200)
	if err := w.certDial(t, leaf, ""); err != nil {
		t.Fatalf("certificate CONNECT before the move: %v", err)
	}
	mark(w.T1.DevB.ProductKey, w.T1.DevB.DeviceName)
	if err := w.certDial(t, leaf, ""); err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authori") {
		t.Fatalf("certificate CONNECT of a distributed device: %v", err)
	}
	// The other account's same-named device is not affected.
	if got := connConnack(t, connDial(t, tcp, ""), connConnect(5, mqtttest.DeviceCreds(w.T2.DevB.ProductKey, w.T2.DevB.DeviceName, w.T2.DevB.DeviceSecret).ClientID,
		w.T2.DevB.DeviceName+"&"+w.T2.DevB.ProductKey, mqtttest.DeviceCreds(w.T2.DevB.ProductKey, w.T2.DevB.DeviceName, w.T2.DevB.DeviceSecret).Password)); got != 0 {
		t.Fatalf("the other account's devB: CONNACK %#x", got)
	}

	// connwl twice (5 and 3.1.1) and the certificate (paho, refused at
	// 3.1.1, tries 3.1 as well): counted and audited.
	metrics := string(w.S.Do("", "GET", "/metrics", nil).Body)
	if !strings.Contains(metrics, `corral_mqtt_auth_failures_total{reason="distributed"} 4`) {
		t.Errorf("distributed refusals not counted 4 times:\n%s", grepLines(metrics, "auth_failures"))
	}
	found := false
	for _, tn := range []tenant{w.T1} {
		var page struct {
			Entries []connAuditEntry `json:"entries"`
		}
		w.do(tn.Admin, "GET", "/v1/audit?action=mqtt.connect&limit=1000", nil, 200).JSON(t, &page)
		for _, e := range page.Entries {
			found = found || e.Reason == "device distributed to another instance; bootstrap again"
		}
	}
	if !found {
		t.Error("no audit entry for the distributed device's refusals")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
