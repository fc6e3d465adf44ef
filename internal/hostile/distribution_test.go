package hostile_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/config"
)

// TestDistributionTenants: a tenant can neither read, list, set nor
// delete another account's provisioning records, nor see or use its
// instances and policies; a readonly key writes none of them.
func TestDistributionTenants(t *testing.T) {
	w := newWorld(t)
	t2 := w.T2
	w.do(t2.Admin, "POST", "/v1/instances", map[string]any{"instanceId": "t2-eu", "region": "eu-central-1", "mqtt": "eu.t2.example:1883", "credential": "k.t2-secret"}, 201)
	w.do(t2.Admin, "POST", "/v1/distribution/policies", map[string]any{"policyId": "t2-near", "fallback": "eu-central-1",
		"regions": []map[string]any{{"region": "eu-central-1", "instances": []map[string]any{{"instanceId": "t2-eu"}}}}}, 201)
	rec := fmt.Sprintf("/v1/products/%s/devices/%s/provisioning", t2.Direct.ProductKey, t2.DevA.DeviceName)
	w.do(t2.Admin, "PUT", rec, map[string]any{"targetIotInstanceId": "t2-eu"}, 200)

	t1 := w.T1
	for _, tt := range []struct {
		method, path string
		body         any
	}{
		{"GET", rec, nil},
		{"PUT", rec, map[string]any{"targetIotInstanceId": "corral"}},
		{"DELETE", rec, nil},
		{"GET", "/v1/products/" + t2.Direct.ProductKey + "/provisioning", nil},
		{"GET", "/v1/instances/t2-eu", nil},
		{"GET", "/v1/distribution/policies/t2-near", nil},
		{"DELETE", "/v1/distribution/policies/t2-near", nil},
		// Its own device pointed to the other account's instance or policy.
		{"PUT", fmt.Sprintf("/v1/products/%s/devices/%s/provisioning", t1.Direct.ProductKey, t1.DevA.DeviceName), map[string]any{"targetIotInstanceId": "t2-eu"}},
		{"PUT", fmt.Sprintf("/v1/products/%s/devices/%s/provisioning", t1.Direct.ProductKey, t1.DevA.DeviceName), map[string]any{"policyId": "t2-near"}},
	} {
		if r := w.S.Do(t1.Operator, tt.method, tt.path, tt.body); r.Status != 404 && r.Status != 403 {
			t.Errorf("t1 operator %s %s = %d %s", tt.method, tt.path, r.Status, r.Body)
		}
		// An account's own admin key (not a system administrator's) gets 404.
		if r := w.S.Do(t1.Admin, tt.method, tt.path, tt.body); r.Status != 404 && !(r.Status == 403 && tt.method == "DELETE") {
			t.Errorf("t1 admin %s %s = %d %s", tt.method, tt.path, r.Status, r.Body)
		}
	}
	// t1's instance list does not show t2's; nothing shows a credential.
	r := w.do(t1.Admin, "GET", "/v1/instances", nil, 200)
	if strings.Contains(string(r.Body), "t2-eu") || strings.Contains(string(r.Body), "t2-secret") {
		t.Fatalf("t1 sees %s", r.Body)
	}
	if r := w.do(t2.Admin, "GET", "/v1/instances/t2-eu", nil, 200); strings.Contains(string(r.Body), "t2-secret") {
		t.Fatalf("the credential is shown: %s", r.Body)
	}
	// Readonly keys write nothing, even in their own account.
	w.do(t2.Readonly, "PUT", rec, map[string]any{"targetIotInstanceId": "corral"}, 403)
	w.do(t2.Readonly, "POST", "/v1/instances", map[string]any{"instanceId": "x", "region": "eu-central-1", "mqtt": "x:1883"}, 403)
	// The record is intact.
	if r := w.do(t2.Admin, "GET", rec, nil, 200); !strings.Contains(string(r.Body), `"targetIotInstanceId":"t2-eu"`) {
		t.Fatalf("record changed: %s", r.Body)
	}
}

// TestBootstrapNoExistenceOracle: an anonymous client cannot tell a
// device that exists from one that does not: same status, same body,
// same headers but the date; nor another account's product from none.
func TestBootstrapNoExistenceOracle(t *testing.T) {
	w := newWorld(t, func(c *config.Config) { c.BootstrapPlainHTTP = true })
	ask := func(pk, dn string) (int, string, http.Header) {
		resp, err := http.PostForm("http://"+w.S.App.HTTPAddr()+"/auth/bootstrap", url.Values{"productKey": {pk}, "deviceName": {dn}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		resp.Header.Del("Date")
		resp.Header.Del("X-Request-Id")
		return resp.StatusCode, string(b), resp.Header
	}
	s1, b1, h1 := ask(w.T1.Direct.ProductKey, w.T1.DevA.DeviceName)
	for _, q := range [][2]string{{w.T1.Direct.ProductKey, "nosuchdevice"}, {w.T2.Direct.ProductKey, w.T2.DevA.DeviceName}, {"zzzzzzzzzzz", "nosuchdevice"}} {
		s, b, h := ask(q[0], q[1])
		if s != s1 || b != b1 || fmt.Sprint(h) != fmt.Sprint(h1) {
			t.Fatalf("%v: %d %s %v; a known device: %d %s %v", q, s, b, h, s1, b1, h1)
		}
	}
	if s1 != 200 || !bytes.Contains([]byte(b1), []byte(`"host":`)) {
		t.Fatalf("answer %d %s", s1, b1)
	}
}

// TestDistributedDeviceRefused: a device a distribution job moved away
// is refused at CONNECT with its right secret (MQTT 5: server moved;
// 3.1.1: not authorised), audited with the reason; a wrong secret learns
// only "not authorised"; the other account's same-named device is not
// affected; clearing the mark (the device distributed back) lets it in.
func TestDistributedDeviceRefused(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	d := w.T2.DevA
	if err := w.S.App.Registry().MarkDistributed(ctx, d.ProductKey, d.DeviceName, "ap-southeast-1"); err != nil {
		t.Fatal(err)
	}
	addr := w.S.App.Broker().Addr("tcp")
	cid, user, pass := connDeviceCreds(d)
	wrong := d
	wrong.DeviceSecret = "not-the-secret"
	wcid, wuser, wpass := connDeviceCreds(wrong)
	ocid, ouser, opass := connDeviceCreds(w.T1.DevA)
	for _, tc := range []struct {
		name     string
		connect  []byte
		wantCode byte
	}{
		{"MQTT 5, right secret", connConnect(5, cid, user, pass), 0x9D},
		{"MQTT 3.1.1, right secret", connConnect(4, cid, user, pass), 5},
		{"MQTT 5, wrong secret", connConnect(5, wcid, wuser, wpass), 0x87},
		{"the other account's same-named device", connConnect(5, ocid, ouser, opass), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := connConnack(t, connDial(t, addr, ""), tc.connect); got != tc.wantCode {
				t.Fatalf("CONNACK code %#x, want %#x", got, tc.wantCode)
			}
		})
	}
	var page struct {
		Entries []connAuditEntry `json:"entries"`
	}
	w.do(w.T2.Admin, "GET", "/v1/audit?action=mqtt.connect&limit=1000", nil, 200).JSON(t, &page)
	found := false
	for _, e := range page.Entries {
		found = found || (e.Reason == "device distributed to another instance; bootstrap again" && strings.Contains(e.Target, d.DeviceName))
	}
	if !found {
		t.Fatalf("no audit entry for the distributed device: %+v", page.Entries)
	}
	if err := w.S.App.Registry().MarkDistributed(ctx, d.ProductKey, d.DeviceName, ""); err != nil {
		t.Fatal(err)
	}
	if got := connConnack(t, connDial(t, addr, ""), connConnect(5, cid, user, pass)); got != 0 {
		t.Fatalf("after the mark is cleared: CONNACK %#x", got)
	}
}
