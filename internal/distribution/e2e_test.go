package distribution_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// twoInstances starts "sg-1" (ap-southeast-1) and then the centre
// (cn-shanghai), which knows sg-1 from its distribution_file; opts change
// the centre's configuration.
func twoInstances(t *testing.T, opts ...apptest.Option) (centre, sg *apptest.Server) {
	t.Helper()
	sg = apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	file := filepath.Join(t.TempDir(), "instances.yaml")
	yaml := fmt.Sprintf("instances:\n  - instanceId: sg-1\n    name: Singapore\n    region: ap-southeast-1\n    mqtt: %s\n    mqtts: %s\n    credential: k.not-used-yet\n",
		sg.App.Broker().Addr("tcp"), sg.App.Broker().Addr("tls"))
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	centre = apptest.Start(t, append([]apptest.Option{func(c *config.Config) {
		c.InstanceID, c.Region, c.DistributionFile, c.BootstrapPlainHTTP = "centre", "cn-shanghai", file, true
	}}, opts...)...)
	return centre, sg
}

// endpointOf bootstraps as the Link SDK does, from src, at a server's
// plain HTTP listener, and answers the host:port the SDK would connect to.
func endpointOf(t *testing.T, s *apptest.Server, src, pk, dn string) string {
	t.Helper()
	addr := s.App.HTTPAddr()
	status, body := rawBootstrapFrom(t, addr, src, sdkPost(addr, pk, dn))
	host, port, _, ok := sdkScan(status, body)
	if !ok {
		t.Fatalf("bootstrap answered %d %s", status, body)
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// TestE2EBootstrapToAnotherInstance: a device registered at sg-1 asks the
// centre (whose default instance is sg-1) where to connect, and connects
// there with its triple.
func TestE2EBootstrapToAnotherInstance(t *testing.T) {
	centre, sg := twoInstances(t, func(c *config.Config) { c.BootstrapDefaultInstance = "sg-1" })
	p := sg.CreateProduct("meters", nil)
	d := sg.CreateDevice(p.ProductKey, "meter-0001")
	ep := endpointOf(t, centre, "", d.ProductKey, d.DeviceName)
	if ep != sg.App.Broker().Addr("tcp") {
		t.Fatalf("bootstrapped to %s; want sg-1's %s", ep, sg.App.Broker().Addr("tcp"))
	}
	conn, err := mqtttest.Dial(ep, "", mqtttest.Connect{Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), KeepAlive: 30})
	if err != nil {
		t.Fatalf("connecting to the bootstrapped endpoint: %v", err)
	}
	mqtttest.Disconnect(conn)
	conn.Close()

	// Over HTTPS (the Link SDK's default), the answer is sg-1's MQTT over TLS.
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(centre.Config.DataDir, "tls", "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("centre CA: %v", err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	resp, err := c.PostForm("https://"+centre.App.HTTPSAddr()+distribution.BootstrapPath,
		url.Values{"productKey": {d.ProductKey}, "deviceName": {d.DeviceName}, "clientId": {d.ProductKey + "." + d.DeviceName}, "resources": {"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	host, port, _, ok := sdkScan(resp.StatusCode, body)
	if !ok || net.JoinHostPort(host, strconv.Itoa(port)) != sg.App.Broker().Addr("tls") {
		t.Fatalf("over HTTPS: %d %s; want %s", resp.StatusCode, body, sg.App.Broker().Addr("tls"))
	}
}

// TestE2EProximityByBoundSource: a record pointing a device to a
// proximity policy; the CIDR table sends the device connecting from
// 127.0.0.2 to sg-1, the fallback keeps one from 127.0.0.1 here.
func TestE2EProximityByBoundSource(t *testing.T) {
	centre, sg := twoInstances(t)
	p := centre.CreateProduct("meters", nil)
	centre.Admin("POST", "/v1/distribution/policies", map[string]any{"policyId": "nearest", "fallback": "cn-shanghai",
		"regions": []map[string]any{
			{"region": "cn-shanghai", "instances": []map[string]any{{"instanceId": "centre"}}},
			{"region": "ap-southeast-1", "instances": []map[string]any{{"instanceId": "sg-1"}}}},
		"cidrs": []map[string]string{{"cidr": "127.0.0.2/32", "region": "ap-southeast-1"}}}, 201)
	var rec distribution.Record
	centre.Admin("PUT", "/v1/products/"+p.ProductKey+"/devices/meter-0002/provisioning", map[string]any{"policyId": "nearest"}, 200).JSON(t, &rec)
	if rec.SourceIotInstanceID != "centre" || rec.SourceRegion != "cn-shanghai" || rec.PolicyID != "nearest" {
		t.Fatalf("record %+v", rec)
	}
	if ep := endpointOf(t, centre, "127.0.0.2", p.ProductKey, "meter-0002"); ep != sg.App.Broker().Addr("tcp") {
		t.Fatalf("from 127.0.0.2: %s; want sg-1's %s", ep, sg.App.Broker().Addr("tcp"))
	}
	if ep := endpointOf(t, centre, "127.0.0.1", p.ProductKey, "meter-0002"); ep != centre.App.Broker().Addr("tcp") {
		t.Fatalf("from 127.0.0.1: %s; want the centre's %s", ep, centre.App.Broker().Addr("tcp"))
	}
	// A record naming the instance itself.
	centre.Admin("PUT", "/v1/products/"+p.ProductKey+"/devices/meter-0003/provisioning", map[string]any{"targetIotInstanceId": "sg-1"}, 200)
	if ep := endpointOf(t, centre, "127.0.0.1", p.ProductKey, "meter-0003"); ep != sg.App.Broker().Addr("tcp") {
		t.Fatalf("record to sg-1: %s", ep)
	}
	// The policy and instance stay while a record names them.
	centre.Admin("DELETE", "/v1/distribution/policies/nearest", nil, 409)
	centre.Admin("DELETE", "/v1/instances/sg-1", nil, 409)
}

// TestE2EProximityByGeoIPAndWebhook: with geoip_db set, a device from
// 127.0.0.3 (SG in a generated database) goes to sg-1; with an allocation
// webhook, its signed answer decides, and when it fails the tables do.
func TestE2EProximityByGeoIPAndWebhook(t *testing.T) {
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	if err := os.WriteFile(db, geoDB(t, map[string][2]string{"127.0.0.3/32": {"SG", "AS"}}), 0o600); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var fail atomic.Bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req distribution.AllocationRequest
		if r.Header.Get("X-Corral-Signature") == "" || json.NewDecoder(r.Body).Decode(&req) != nil || fail.Load() {
			http.Error(w, "no", 500)
			return
		}
		json.NewEncoder(w).Encode(distribution.AllocationAnswer{InstanceID: "centre"})
	}))
	defer hook.Close()
	centre, sg := twoInstances(t, func(c *config.Config) { c.GeoIPDB = db }, apptest.AllowWebhooksTo("127.0.0.0/8"))
	p := centre.CreateProduct("meters", nil)
	policy := map[string]any{"policyId": "geo", "fallback": "cn-shanghai", "countries": map[string]string{"SG": "ap-southeast-1"},
		"regions": []map[string]any{
			{"region": "cn-shanghai", "instances": []map[string]any{{"instanceId": "centre"}}},
			{"region": "ap-southeast-1", "instances": []map[string]any{{"instanceId": "sg-1"}}}}}
	centre.Admin("POST", "/v1/distribution/policies", policy, 201)
	centre.Admin("PUT", "/v1/products/"+p.ProductKey+"/devices/meter-0004/provisioning", map[string]any{"policyId": "geo"}, 200)
	if ep := endpointOf(t, centre, "127.0.0.3", p.ProductKey, "meter-0004"); ep != sg.App.Broker().Addr("tcp") {
		t.Fatalf("from 127.0.0.3 (SG): %s; want sg-1's", ep)
	}
	if ep := endpointOf(t, centre, "127.0.0.4", p.ProductKey, "meter-0004"); ep != centre.App.Broker().Addr("tcp") {
		t.Fatalf("from 127.0.0.4 (not in the database): %s; want the fallback", ep)
	}
	policy["webhook"] = hook.URL
	centre.Admin("PUT", "/v1/distribution/policies/geo", policy, 200)
	if ep := endpointOf(t, centre, "127.0.0.3", p.ProductKey, "meter-0004"); ep != centre.App.Broker().Addr("tcp") || calls.Load() != 1 {
		t.Fatalf("the webhook's choice: %s after %d calls", ep, calls.Load())
	}
	fail.Store(true)
	if ep := endpointOf(t, centre, "127.0.0.3", p.ProductKey, "meter-0004"); ep != sg.App.Broker().Addr("tcp") {
		t.Fatalf("a failing webhook leaves it to the tables: %s", ep)
	}
}
