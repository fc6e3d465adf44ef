package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// TestE2EJobMovesDevices: two corral servers on loopback, the centre
// (cn-shanghai) and sg-1 (ap-southeast-1), each with its own data dir. A
// job at the centre moves devices to sg-1 over the instance-to-instance
// API: the product arrives read-only, the triples sealed; the online
// devices (SDK, bootstrapped through the centre) are notified, forced
// off, bootstrap again and connect to sg-1 with the same triple; the
// centre refuses them and its records point to sg-1.
func TestE2EJobMovesDevices(t *testing.T) {
	n, online := 1000, 50
	if testing.Short() {
		n, online = 30, 5
	}
	sg := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	file := filepath.Join(t.TempDir(), "instances.yaml")
	yaml := fmt.Sprintf("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n",
		sg.App.Broker().Addr("tcp"), sg.URL, sg.AdminKey)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	centre := apptest.Start(t, func(c *config.Config) {
		c.InstanceID, c.Region, c.DistributionFile, c.BootstrapPlainHTTP = "centre", "cn-shanghai", file, true
		c.BootstrapRatePerIP = 0 // every device bootstraps from 127.0.0.1
	}, apptest.AllowWebhooksTo("127.0.0.0/8"))
	var hookMu sync.Mutex
	hooked := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ Event, State string }
		json.NewDecoder(r.Body).Decode(&ev)
		hookMu.Lock()
		hooked[ev.Event+" "+ev.State]++
		hookMu.Unlock()
	}))
	defer hook.Close()
	p := centre.CreateProduct("meters", map[string]any{"provisioning": map[string]any{"eventUrls": []string{hook.URL}}})
	var evMu sync.Mutex
	events := map[string]int{}
	unsub, err := centre.App.Broker().Subscribe("$corral/events/distribution/"+p.ProductKey+"/#", func(topic string, payload []byte) {
		var ev struct {
			Event, State string
			Code         int
		}
		json.Unmarshal(payload, &ev)
		evMu.Lock()
		events[fmt.Sprint(ev.Event, " ", ev.State, ev.Code)]++
		evMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	var names []string
	secrets := map[string]string{}
	for i := range n {
		d := centre.CreateDevice(p.ProductKey, fmt.Sprintf("meter-%04d", i))
		names = append(names, d.DeviceName)
		secrets[d.DeviceName] = d.DeviceSecret
	}
	ctx := context.Background()
	moved := make(chan string, online)
	for _, dn := range names[:online] {
		dd, err := device.ConnectBootstrapped(ctx, device.Options{Triple: device.Triple{ProductKey: p.ProductKey, DeviceName: dn, DeviceSecret: secrets[dn]}},
			device.BootstrapOptions{Centre: "http://" + centre.App.HTTPAddr(), OnMoved: func(*device.Client) { moved <- dn }})
		if err != nil {
			t.Fatal(err)
		}
		defer dd.Close()
	}

	var job struct {
		JobID                string
		Status, Total, Moved int
		Failed, Progress     int
	}
	centre.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": names, "strategy": 0, "targetInstanceId": "sg-1"}, 201).JSON(t, &job)
	start := time.Now()
	for job.Status < 2 {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("job still %d at %d%%", job.Status, job.Progress)
		}
		time.Sleep(20 * time.Millisecond)
		centre.Admin("GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &job)
	}
	t.Logf("%d devices (%d online) moved in %v", n, online, time.Since(start))
	if job.Status != 2 || job.Moved != n || job.Failed != 0 || job.Progress != 100 {
		t.Fatalf("job = %+v", job)
	}
	var details struct {
		Devices []struct {
			DeviceName string
			Code       int
		}
	}
	centre.Admin("GET", "/v1/distribution/jobs/"+job.JobID+"/devices?limit=1000", nil, 200).JSON(t, &details)
	if len(details.Devices) != n {
		t.Fatalf("%d device results, want %d", len(details.Devices), n)
	}
	for _, d := range details.Devices {
		if d.Code != 200 {
			t.Errorf("%s: code %d", d.DeviceName, d.Code)
		}
	}
	// The online devices followed the notify to sg-1.
	for range online {
		select {
		case dn := <-moved:
			deadline := time.Now().Add(10 * time.Second)
			for !sg.App.Broker().Online(p.ProductKey, dn) {
				if time.Now().After(deadline) {
					t.Fatalf("%s moved but is not online at sg-1", dn)
				}
				time.Sleep(20 * time.Millisecond)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("an online device did not follow the notify")
		}
	}
	// The centre refuses them; sg-1 takes an offline one's triple too.
	last := names[n-1]
	creds := mqtttest.DeviceCreds(p.ProductKey, last, secrets[last])
	if c, err := mqtttest.Dial(centre.App.Broker().Addr("tcp"), "", mqtttest.Connect{Creds: creds, KeepAlive: 30}); err == nil {
		c.Close()
		t.Fatal("the centre let a distributed device in")
	}
	c, err := mqtttest.Dial(sg.App.Broker().Addr("tcp"), "", mqtttest.Connect{Creds: creds, KeepAlive: 30})
	if err != nil {
		t.Fatalf("sg-1 refused a moved device's own triple: %v", err)
	}
	mqtttest.Disconnect(c)
	c.Close()
	var rec struct{ TargetIotInstanceID, SourceIotInstanceID, JobID string }
	centre.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/"+last+"/provisioning", nil, 200).JSON(t, &rec)
	if rec.TargetIotInstanceID != "sg-1" || rec.SourceIotInstanceID != "centre" || rec.JobID != job.JobID {
		t.Fatalf("record = %+v", rec)
	}
	// The product is read-only at sg-1.
	var prod struct{ DistributedFrom string }
	sg.Admin("GET", "/v1/products/"+p.ProductKey, nil, 200).JSON(t, &prod)
	if prod.DistributedFrom != "centre" {
		t.Fatalf("sg-1 product = %+v", prod)
	}
	sg.Admin("PATCH", "/v1/products/"+p.ProductKey, map[string]any{"name": "mine"}, 403)
	sg.Admin("POST", "/v1/products/"+p.ProductKey+"/devices", map[string]any{"deviceName": "new"}, 403)
	// Distributed back: a job at sg-1 returns the device to the centre,
	// which lets it in again.
	sg.Admin("POST", "/v1/instances", map[string]any{"instanceId": "centre", "region": "cn-shanghai", "mqtt": centre.App.Broker().Addr("tcp"),
		"apiUrl": centre.URL, "credential": centre.AdminKey}, 201)
	var back struct {
		JobID         string
		Status, Moved int
	}
	sg.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": []string{last}, "strategy": 0, "targetInstanceId": "centre"}, 201).JSON(t, &back)
	for back.Status < 2 {
		time.Sleep(20 * time.Millisecond)
		sg.Admin("GET", "/v1/distribution/jobs/"+back.JobID, nil, 200).JSON(t, &back)
	}
	if back.Moved != 1 {
		t.Fatalf("the job back = %+v", back)
	}
	if c, err := mqtttest.Dial(centre.App.Broker().Addr("tcp"), "", mqtttest.Connect{Creds: creds, KeepAlive: 30}); err != nil {
		t.Fatalf("the centre refuses a device that came back: %v", err)
	} else {
		mqtttest.Disconnect(c)
		c.Close()
	}
	if c, err := mqtttest.Dial(sg.App.Broker().Addr("tcp"), "", mqtttest.Connect{Creds: creds, KeepAlive: 30}); err == nil {
		c.Close()
		t.Fatal("sg-1 lets in a device that left")
	}
	// Applications and the product's event webhook heard of each device
	// and of the job's end.
	deadline := time.Now().Add(10 * time.Second)
	for {
		evMu.Lock()
		moved, done := events["distribution.device 200"], events["distribution.job done0"]
		evMu.Unlock()
		hookMu.Lock()
		hookedDevices, hookedDone := hooked["distribution.device "], hooked["distribution.job done"]
		hookMu.Unlock()
		if moved == n && done == 1 && hookedDevices == n && hookedDone == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events: %d devices, %d done; webhooks: %d devices, %d done", moved, done, hookedDevices, hookedDone)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Secrets never reached a log.
	for _, s := range []*apptest.Server{centre, sg} {
		for dn, secret := range secrets {
			if strings.Contains(string(s.Log.Bytes()), secret) {
				t.Fatalf("%s's secret is in a log", dn)
			}
		}
	}
}

// TestE2ECrossAccount: a job into another account at the destination
// needs that account's code: a wrong one is refused with nothing
// created; a valid one moves the devices into that account only.
func TestE2ECrossAccount(t *testing.T) {
	sg := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	var b struct {
		Token   string `json:"token"`
		Account struct {
			ID string `json:"id"`
		} `json:"account"`
	}
	sg.Admin("POST", "/v1/accounts", map[string]any{"name": "buyer"}, 201).JSON(t, &b)
	file := filepath.Join(t.TempDir(), "instances.yaml")
	yaml := fmt.Sprintf("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n",
		sg.App.Broker().Addr("tcp"), sg.URL, sg.AdminKey)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	centre := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region, c.DistributionFile = "centre", "cn-shanghai", file })
	p := centre.CreateProduct("meters", nil)
	d := centre.CreateDevice(p.ProductKey, "meter-0001")
	body := func(code string) map[string]any {
		return map[string]any{"productKey": p.ProductKey, "deviceNames": []string{d.DeviceName}, "strategy": 0, "targetInstanceId": "sg-1",
			"targetUid": b.Account.ID, "authCode": code}
	}
	if r := centre.Do(centre.AdminKey, "POST", "/v1/distribution/jobs", body("0123456789abcdef0123456789abcdef")); r.Status != 400 || !strings.Contains(string(r.Body), "wrong or expired") {
		t.Fatalf("a wrong code: %d %s", r.Status, r.Body)
	}
	sg.Do(b.Token, "GET", "/v1/products/"+p.ProductKey, nil)
	var code struct{ AuthCode string }
	if r := sg.Do(b.Token, "POST", "/v1/distribution/authorization-codes", nil); r.Status != 201 {
		t.Fatalf("issuing a code: %d %s", r.Status, r.Body)
	} else {
		r.JSON(t, &code)
	}
	var job struct {
		JobID                 string
		Status, Moved, Failed int
	}
	centre.Admin("POST", "/v1/distribution/jobs", body(code.AuthCode), 201).JSON(t, &job)
	for job.Status < 2 {
		time.Sleep(20 * time.Millisecond)
		centre.Admin("GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &job)
	}
	if job.Moved != 1 {
		t.Fatalf("job = %+v", job)
	}
	// The job released its grant as it ended: the target account holds
	// none, and the grant imports nothing more.
	if r := sg.Do(b.Token, "GET", "/v1/distribution/grants", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"grants":[]`) {
		t.Fatalf("grants after the job: %d %s", r.Status, r.Body)
	}
	if r := sg.Do(b.Token, "GET", "/v1/products/"+p.ProductKey+"/devices/"+d.DeviceName, nil); r.Status != 200 {
		t.Fatalf("the device is not in the target account: %d %s", r.Status, r.Body)
	}
	sg.Admin("GET", "/v1/products/"+p.ProductKey, nil, 404) // not in the credential's own account
	// The code was used: a second job with it is refused.
	centre.Admin("POST", "/v1/distribution/jobs", body(code.AuthCode), 400)
	// The job's creation and deletion are on the centre's audit trail,
	// without the code.
	centre.Admin("DELETE", "/v1/distribution/jobs/"+job.JobID, nil, 204)
	for _, action := range []string{"distribution.job.create", "distribution.job.delete"} {
		r := centre.Admin("GET", "/v1/audit?action="+action, nil, 200)
		var trail struct {
			Entries []struct{ Target, Reason, Outcome string } `json:"entries"`
		}
		r.JSON(t, &trail)
		if len(trail.Entries) != 1 || trail.Entries[0].Target != job.JobID || trail.Entries[0].Outcome != "ok" {
			t.Fatalf("audit of %s: %+v", action, trail.Entries)
		}
		if strings.Contains(string(r.Body), code.AuthCode) {
			t.Fatalf("the code is on the audit trail")
		}
	}
}

// TestE2ECrossAccountDestinationRestart: the grant a cross-account job
// was given outlives a restart of the destination. The centre is stopped
// right after the job starts and the destination restarted (same data,
// same ports) while it is down; the centre, restarted, resumes the job,
// whose remaining imports the restarted destination accepts with the
// stored grant: every device lands in the target account, none fails.
func TestE2ECrossAccountDestinationRestart(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 40
	}
	sg := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	var b struct {
		Token   string `json:"token"`
		Account struct {
			ID string `json:"id"`
		} `json:"account"`
	}
	sg.Admin("POST", "/v1/accounts", map[string]any{"name": "buyer"}, 201).JSON(t, &b)
	file := filepath.Join(t.TempDir(), "instances.yaml")
	yaml := fmt.Sprintf("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n",
		sg.App.Broker().Addr("tcp"), sg.URL, sg.AdminKey)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	centre := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region, c.DistributionFile = "centre", "cn-shanghai", file })
	p := centre.CreateProduct("meters", nil)
	var names []string
	for i := range n {
		names = append(names, centre.CreateDevice(p.ProductKey, fmt.Sprintf("meter-%04d", i)).DeviceName)
	}
	var code struct{ AuthCode string }
	if r := sg.Do(b.Token, "POST", "/v1/distribution/authorization-codes", nil); r.Status != 201 {
		t.Fatalf("issuing a code: %d %s", r.Status, r.Body)
	} else {
		r.JSON(t, &code)
	}
	var job struct {
		JobID                 string
		Status, Moved, Failed int
	}
	centre.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": names, "strategy": 0,
		"targetInstanceId": "sg-1", "targetUid": b.Account.ID, "authCode": code.AuthCode}, 201).JSON(t, &job)
	centre.Stop()

	landed := func(s *apptest.Server) int {
		var page struct {
			Devices []struct{ DeviceName string } `json:"devices"`
		}
		s.Do(b.Token, "GET", "/v1/products/"+p.ProductKey+"/devices?limit=1000", nil).JSON(t, &page)
		return len(page.Devices)
	}
	before := landed(sg)
	if before == n {
		t.Fatalf("all %d devices moved before the centre stopped: nothing is left to test", n)
	}
	cfg := sg.Config
	cfg.HTTPAddr, cfg.HTTPSAddr, cfg.MQTTAddr = sg.App.HTTPAddr(), sg.App.HTTPSAddr(), sg.App.Broker().Addr("tcp")
	cfg.MQTTSAddr, cfg.WSAddr = sg.App.Broker().Addr("tls"), sg.App.Broker().Addr("ws")
	sg.Stop()
	sg = apptest.StartWith(t, cfg)

	centre = apptest.StartWith(t, centre.Config)
	deadline := time.Now().Add(60 * time.Second)
	for job.Status < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("job still %+v", job)
		}
		time.Sleep(20 * time.Millisecond)
		centre.Admin("GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &job)
	}
	t.Logf("%d of %d devices had moved when the centre stopped", before, n)
	if job.Moved != n || job.Failed != 0 {
		t.Fatalf("after the destination's restart: job = %+v", job)
	}
	if got := landed(sg); got != n {
		t.Fatalf("%d devices in the target account, want %d", got, n)
	}
}

// TestE2ERemoteRecords: a job run at an instance that is not the centre
// (devices distributed back from sg-1) writes the centre's provisioning
// records through the centre's API, with sg-1's credential for it; the
// centre's bootstrap then sends the devices to their new instance, with
// no `corral dist record set` by hand.
func TestE2ERemoteRecords(t *testing.T) {
	ctx := context.Background()
	sg := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	dir := t.TempDir()
	centreFile, sgFile := filepath.Join(dir, "centre.yaml"), filepath.Join(dir, "sg.yaml")
	write := func(file, id, region, mqtt, api, cred string) {
		yaml := fmt.Sprintf("instances:\n  - instanceId: %s\n    region: %s\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n", id, region, mqtt, api, cred)
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(centreFile, "sg-1", "ap-southeast-1", sg.App.Broker().Addr("tcp"), sg.URL, sg.AdminKey)
	centre := apptest.Start(t, func(c *config.Config) {
		c.InstanceID, c.Region, c.DistributionFile, c.BootstrapPlainHTTP = "centre", "cn-shanghai", centreFile, true
		c.BootstrapRatePerIP = 0
	})
	// sg-1, restarted on its ports, knows the centre as its centre.
	write(sgFile, "centre", "cn-shanghai", centre.App.Broker().Addr("tcp"), centre.URL, centre.AdminKey)
	cfg := sg.Config
	cfg.HTTPAddr, cfg.HTTPSAddr, cfg.MQTTAddr = sg.App.HTTPAddr(), sg.App.HTTPSAddr(), sg.App.Broker().Addr("tcp")
	cfg.MQTTSAddr, cfg.WSAddr = sg.App.Broker().Addr("tls"), sg.App.Broker().Addr("ws")
	cfg.DistributionFile, cfg.DistributionCentreInstance = sgFile, "centre"
	sg.Stop()
	sg = apptest.StartWith(t, cfg)

	p := centre.CreateProduct("meters", nil)
	var names []string
	triples := map[string]device.Triple{}
	for i := range 5 {
		d := centre.CreateDevice(p.ProductKey, fmt.Sprintf("meter-%04d", i))
		names = append(names, d.DeviceName)
		triples[d.DeviceName] = device.Triple{ProductKey: p.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}
	}
	runJob := func(s *apptest.Server, target string) {
		t.Helper()
		var job struct {
			JobID                 string
			Status, Moved, Failed int
		}
		s.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": names, "strategy": 0, "targetInstanceId": target}, 201).JSON(t, &job)
		deadline := time.Now().Add(30 * time.Second)
		for job.Status < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("job to %s still %+v", target, job)
			}
			time.Sleep(20 * time.Millisecond)
			s.Admin("GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &job)
		}
		if job.Moved != len(names) || job.Failed != 0 {
			t.Fatalf("job to %s = %+v", target, job)
		}
	}
	bootstrapsTo := func(want string) {
		t.Helper()
		for _, dn := range names {
			ep, err := device.Bootstrap(ctx, "http://"+centre.App.HTTPAddr(), nil, triples[dn])
			if err != nil {
				t.Fatal(err)
			}
			if got := net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)); got != want {
				t.Fatalf("%s bootstraps to %s, want %s", dn, got, want)
			}
		}
	}
	runJob(centre, "sg-1")
	bootstrapsTo(sg.App.Broker().Addr("tcp"))
	// Back from sg-1: its job writes the centre's records.
	runJob(sg, "centre")
	bootstrapsTo(centre.App.Broker().Addr("tcp"))
	var rec struct{ SourceIotInstanceId, TargetIotInstanceId string }
	centre.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/"+names[0]+"/provisioning", nil, 200).JSON(t, &rec)
	if rec.TargetIotInstanceId != "centre" || rec.SourceIotInstanceId != "centre" {
		t.Fatalf("the centre's record = %+v", rec)
	}
	// sg-1 kept no record of its own, and the devices connect at the centre again.
	var local struct{ Records []struct{ DeviceName string } }
	sg.Admin("GET", "/v1/products/"+p.ProductKey+"/provisioning", nil, 200).JSON(t, &local)
	if len(local.Records) != 0 {
		t.Fatalf("sg-1 wrote %d records of its own", len(local.Records))
	}
	c, err := device.Connect(ctx, device.Options{Broker: "tcp://" + centre.App.Broker().Addr("tcp"), Triple: triples[names[0]]})
	if err != nil {
		t.Fatalf("a device back at the centre: %v", err)
	}
	c.Close()
}
