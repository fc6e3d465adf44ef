package hostile_test

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/distribution/transit"
)

// TestDistributionImportsHostile: the instance-to-instance API imports
// into the calling key's account only, with admin keys only; a secret
// sealed for another instance or another device does not open; an import
// cannot take over another account's ProductKey or devices; a distributed
// product is read-only even to its account's admin.
func TestDistributionImportsHostile(t *testing.T) {
	w := newWorld(t)
	t1, t2 := w.T1, w.T2
	var key struct {
		InstanceID string `json:"instanceId"`
		PublicKey  []byte `json:"publicKey"`
	}
	w.do(t1.Admin, "GET", "/v1/distribution/transit-key", nil, 200).JSON(t, &key)
	if len(key.PublicKey) != transit.KeySize || key.InstanceID == "" {
		t.Fatalf("transit key = %+v", key)
	}
	w.do(t1.Operator, "GET", "/v1/distribution/transit-key", nil, 403)
	w.do(t1.Readonly, "GET", "/v1/distribution/transit-key", nil, 403)

	productBody := func(pk string) map[string]any {
		return map[string]any{"sourceInstanceId": "elsewhere",
			"product": map[string]any{"productKey": pk, "product": map[string]any{"productKey": pk, "name": "moved", "nodeType": "direct", "authType": "secret"}}}
	}
	// Taking over another account's ProductKey: refused, nothing changes.
	w.do(t1.Admin, "PUT", "/v1/distribution/imports/products/"+t2.Direct.ProductKey, productBody(t2.Direct.ProductKey), 409)
	w.do(t1.Operator, "PUT", "/v1/distribution/imports/products/a1Moved0001", productBody("a1Moved0001"), 403)
	w.do(t1.Admin, "PUT", "/v1/distribution/imports/products/a1Moved0001", productBody("a1Moved0001"), 200)
	w.do(t1.Admin, "PUT", "/v1/distribution/imports/products/a1Moved0001", productBody("a1Moved0001"), 200) // idempotent
	w.do(t2.Admin, "GET", "/v1/products/a1Moved0001", nil, 404)

	seal := func(instance, pk, dn, secret string) []byte {
		b, err := transit.Seal(rand.Reader, key.PublicKey, []byte(secret), transit.AAD(instance, pk, dn))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const secret = "Zx8kq1Lm3Nb5Vc7Xz9Aa2Ss4Dd6Ff8Gg"
	dev := func(pk, dn string, sealed []byte) map[string]any {
		return map[string]any{"productKey": pk, "deviceName": dn, "sealedSecret": sealed, "sourceInstanceId": "elsewhere"}
	}
	path := func(pk, dn string) string {
		return fmt.Sprintf("/v1/distribution/imports/products/%s/devices/%s", pk, dn)
	}
	for _, tc := range []struct {
		name, token, pk, dn string
		sealed              []byte
		want                int
	}{
		{"sealed for another instance", t1.Admin, "a1Moved0001", "mv-01", seal("other-instance", "a1Moved0001", "mv-01", secret), 400},
		{"sealed for another device (replayed)", t1.Admin, "a1Moved0001", "mv-01", seal(key.InstanceID, "a1Moved0001", "mv-02", secret), 400},
		{"into another account's product", t1.Admin, t2.Direct.ProductKey, "intruder", seal(key.InstanceID, t2.Direct.ProductKey, "intruder", secret), 404},
		{"over another account's device", t1.Admin, t2.Direct.ProductKey, t2.DevA.DeviceName, seal(key.InstanceID, t2.Direct.ProductKey, t2.DevA.DeviceName, secret), 404},
		{"with an operator key", t1.Operator, "a1Moved0001", "mv-01", seal(key.InstanceID, "a1Moved0001", "mv-01", secret), 403},
		{"over its own device with another secret", t1.Admin, t1.Direct.ProductKey, t1.DevA.DeviceName, seal(key.InstanceID, t1.Direct.ProductKey, t1.DevA.DeviceName, secret), 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.do(tc.token, "PUT", path(tc.pk, tc.dn), dev(tc.pk, tc.dn, tc.sealed), tc.want)
			if strings.Contains(string(r.Body), secret) {
				t.Fatalf("the answer carries the secret: %s", r.Body)
			}
			if tc.want == 400 && !strings.Contains(string(r.Body), "sealedSecret") {
				t.Fatalf("refused for another reason: %s", r.Body)
			}
		})
	}
	// The right seal imports; the device connects with its own triple.
	w.do(t1.Admin, "PUT", path("a1Moved0001", "mv-01"), dev("a1Moved0001", "mv-01", seal(key.InstanceID, "a1Moved0001", "mv-01", secret)), 200)
	w.do(t2.Admin, "GET", "/v1/products/a1Moved0001/devices/mv-01", nil, 404)
	// Read-only: not edited, deleted, nor given devices, even by its admin.
	w.do(t1.Admin, "PATCH", "/v1/products/a1Moved0001", map[string]any{"name": "mine"}, 403)
	w.do(t1.Admin, "DELETE", "/v1/products/a1Moved0001", nil, 403)
	w.do(t1.Admin, "POST", "/v1/products/a1Moved0001/devices", map[string]any{"deviceName": "new"}, 403)
	w.do(t1.Admin, "GET", "/v1/products/a1Moved0001", nil, 200)
}

// TestDistributionJobsTenants: jobs are the account's own: another
// account can neither create one for its product nor see, abort or
// delete one; a readonly key creates none.
func TestDistributionJobsTenants(t *testing.T) {
	w := newWorld(t)
	t1, t2 := w.T1, w.T2
	body := func(pk, dn string) map[string]any {
		return map[string]any{"productKey": pk, "deviceNames": []string{dn}, "strategy": 0, "targetInstanceId": "nowhere"}
	}
	w.do(t1.Admin, "POST", "/v1/distribution/jobs", body(t2.Direct.ProductKey, t2.DevA.DeviceName), 404)
	w.do(t1.Readonly, "POST", "/v1/distribution/jobs", body(t1.Direct.ProductKey, t1.DevA.DeviceName), 403)
	w.do(t1.Operator, "POST", "/v1/distribution/jobs", body(t1.Direct.ProductKey, "ghost"), 400)
	w.do(t1.Operator, "POST", "/v1/distribution/jobs", body(t1.Direct.ProductKey, t1.DevA.DeviceName), 404) // unknown instance
	// A job of t2 (to an instance that does not answer: it ends with failures).
	w.do(t2.Admin, "POST", "/v1/instances", map[string]any{"instanceId": "t2-far", "region": "eu-central-1", "mqtt": "far.example:1883",
		"apiUrl": "http://127.0.0.1:1", "credential": "k.t2-secret"}, 201)
	var job struct{ JobID string }
	w.do(t2.Admin, "POST", "/v1/distribution/jobs", map[string]any{"productKey": t2.Direct.ProductKey, "deviceNames": []string{t2.DevA.DeviceName},
		"strategy": 0, "targetInstanceId": "t2-far"}, 201).JSON(t, &job)
	for _, tt := range []struct{ method, path string }{
		{"GET", "/v1/distribution/jobs/" + job.JobID},
		{"GET", "/v1/distribution/jobs/" + job.JobID + "/devices"},
		{"POST", "/v1/distribution/jobs/" + job.JobID + ":abort"},
		{"DELETE", "/v1/distribution/jobs/" + job.JobID},
	} {
		w.do(t1.Admin, tt.method, tt.path, nil, 404)
	}
	if r := w.do(t1.Admin, "GET", "/v1/distribution/jobs", nil, 200); strings.Contains(string(r.Body), job.JobID) {
		t.Fatalf("t1 lists t2's job: %s", r.Body)
	}
	// t2's device was not moved: the destination refused; it still connects.
	var j struct{ Status, Failed int }
	for j.Status < 2 {
		w.do(t2.Admin, "GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &j)
	}
	if j.Failed != 1 {
		t.Fatalf("job = %+v", j)
	}
	if err := w.connDeviceFrom(t, t2.DevA, "127.0.0.1"); err != nil {
		t.Fatalf("a device whose move failed is refused here: %v", err)
	}
}
