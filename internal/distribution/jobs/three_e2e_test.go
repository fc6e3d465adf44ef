package jobs_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// countryDB builds a small MaxMind-format database: CIDR → country,
// continent.
func countryDB(t testing.TB, rows map[string][2]string) []byte {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", IncludeReservedNetworks: true, RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, loc := range rows {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(n, mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(loc[0])},
			"continent": mmdbtype.Map{"code": mmdbtype.String(loc[1])}}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestE2EThreeInstancesProximityJob: the centre (cn-shanghai),
// ap-southeast-1 and eu-central-1 on loopback. A proximity job at the
// centre sends the devices online from 127.0.0.2 (the policy's CIDR
// table: ap-southeast-1) to sg-1 and those from 127.0.0.3 (DE in a
// generated GeoIP database: eu-central-1) to eu-1; each device lands at
// its instance only, and the centre's records point there.
func TestE2EThreeInstancesProximityJob(t *testing.T) {
	sg := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	eu := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "eu-1", "eu-central-1" })
	dir := t.TempDir()
	file, db := filepath.Join(dir, "instances.yaml"), filepath.Join(dir, "geo.mmdb")
	yaml := "instances:\n"
	for _, s := range []*apptest.Server{sg, eu} {
		yaml += fmt.Sprintf("  - instanceId: %s\n    region: %s\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n",
			s.Config.InstanceID, s.Config.Region, s.App.Broker().Addr("tcp"), s.URL, s.AdminKey)
	}
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, countryDB(t, map[string][2]string{"127.0.0.3/32": {"DE", "EU"}}), 0o600); err != nil {
		t.Fatal(err)
	}
	centre := apptest.Start(t, func(c *config.Config) {
		c.InstanceID, c.Region, c.DistributionFile, c.GeoIPDB = "centre", "cn-shanghai", file, db
	})
	centre.Admin("POST", "/v1/distribution/policies", map[string]any{"policyId": "nearest", "fallback": "cn-shanghai",
		"regions": []map[string]any{
			{"region": "cn-shanghai", "instances": []map[string]any{{"instanceId": "centre"}}},
			{"region": "ap-southeast-1", "instances": []map[string]any{{"instanceId": "sg-1"}}},
			{"region": "eu-central-1", "instances": []map[string]any{{"instanceId": "eu-1"}}}},
		"cidrs":     []map[string]string{{"cidr": "127.0.0.2/32", "region": "ap-southeast-1"}},
		"countries": map[string]string{"DE": "eu-central-1"}}, 201)
	p := centre.CreateProduct("meters", nil)
	const perSource = 4
	want := map[string]*apptest.Server{}
	var names []string
	for i := range 2 * perSource {
		src, to := "127.0.0.2", sg
		if i >= perSource {
			src, to = "127.0.0.3", eu
		}
		d := centre.CreateDevice(p.ProductKey, fmt.Sprintf("meter-%04d", i))
		names = append(names, d.DeviceName)
		want[d.DeviceName] = to
		c, err := mqtttest.Dial(centre.App.Broker().Addr("tcp"), src, mqtttest.Connect{Level: 4, Creds: mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), KeepAlive: 60})
		if err != nil {
			t.Fatalf("%s from %s: %v", d.DeviceName, src, err)
		}
		defer c.Close()
	}
	var job struct {
		JobID                 string
		Status, Moved, Failed int
	}
	centre.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": names, "strategy": 1, "policyId": "nearest"}, 201).JSON(t, &job)
	deadline := time.Now().Add(60 * time.Second)
	for job.Status < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("job still %+v", job)
		}
		time.Sleep(50 * time.Millisecond)
		centre.Admin("GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &job)
	}
	if job.Moved != len(names) || job.Failed != 0 {
		t.Fatalf("job = %+v", job)
	}
	for _, dn := range names {
		for _, s := range []*apptest.Server{sg, eu} {
			st := s.Do(s.AdminKey, "GET", "/v1/products/"+p.ProductKey+"/devices/"+dn, nil).Status
			if (s == want[dn]) != (st == 200) {
				t.Errorf("%s at %s: %d", dn, s.Config.InstanceID, st)
			}
		}
		var rec struct{ TargetIotInstanceId string }
		centre.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/"+dn+"/provisioning", nil, 200).JSON(t, &rec)
		if rec.TargetIotInstanceId != want[dn].Config.InstanceID {
			t.Errorf("%s: the centre's record points to %q, want %s", dn, rec.TargetIotInstanceId, want[dn].Config.InstanceID)
		}
	}
}
