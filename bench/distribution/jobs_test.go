package distribution

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/serverproc"
	"github.com/corral-iot/corral/internal/apptest"
)

// jobProcs runs the destination sg-1 and the centre as their own corral
// processes on loopback, the centre's data in centreDir (kept across its
// restarts), and returns the centre's serve arguments.
func jobProcs(tb testing.TB, bin string) (sg *serverproc.Proc, centre *serverproc.Proc, centreArgs []string) {
	tb.Helper()
	sg = serverproc.Start(tb, bin, "--instance-id", "sg-1", "--region", "ap-southeast-1")
	dir := tb.TempDir()
	file := filepath.Join(dir, "instances.yaml")
	yaml := fmt.Sprintf("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n",
		sg.Addrs["mqtt-tcp"], sg.Server.URL, sg.Server.AdminKey)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		tb.Fatal(err)
	}
	centreArgs = []string{"serve", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--mqtts-addr", "", "--ws-addr", "", "--https-addr", "", "--api-rate-limit", "0", "--log-level", "info",
		"--instance-id", "centre", "--region", "cn-shanghai", "--distribution-file", file}
	return sg, startCentre(tb, bin, centreArgs), centreArgs
}

func startCentre(tb testing.TB, bin string, args []string) *serverproc.Proc {
	tb.Helper()
	p := serverproc.Exec(tb, bin, args...)
	key, err := os.ReadFile(filepath.Join(args[2], "admin.key"))
	if err != nil {
		tb.Fatal(err)
	}
	p.Server = apptest.Remote(tb, "http://"+p.Addrs["http"], strings.TrimSpace(string(key)))
	return p
}

type jobState struct {
	JobID                        string
	Status, Total, Moved, Failed int
	Progress                     int
}

// devicesAndJob creates n devices (batches of 10,000 names) and a job
// moving them all to sg-1 by a names list.
func devicesAndJob(tb testing.TB, centre *apptest.Server, n int) (pk string, names []string, job jobState) {
	tb.Helper()
	p := centre.CreateProduct("meters", nil)
	for i := range n {
		names = append(names, "meter-"+strconv.Itoa(100000+i))
	}
	for i := 0; i < n; i += 10000 {
		centre.Admin("POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"deviceNames": names[i:min(n, i+10000)]}, 201)
	}
	for i := 0; i < n; i += 10000 {
		centre.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": names[i:min(n, i+10000)],
			"strategy": 0, "targetInstanceId": "sg-1"}, 201).JSON(tb, &job)
	}
	return p.ProductKey, names, job
}

func waitJob(tb testing.TB, centre *apptest.Server, id string, until func(jobState) bool, within time.Duration) jobState {
	tb.Helper()
	var j jobState
	deadline := time.Now().Add(within)
	for {
		centre.Admin("GET", "/v1/distribution/jobs/"+id, nil, 200).JSON(tb, &j)
		if until(j) {
			return j
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %+v after %v", j, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJobSurvivesKill9: the centre, a corral process, is killed with
// SIGKILL half-way through a job of 2,000 devices and started again on
// its data: the job finishes with every device moved exactly once (one
// result each, all 200, each at the destination once).
func TestJobSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds corral and runs three processes")
	}
	n := 2000
	bin := serverproc.Build(t)
	sg, centre, args := jobProcs(t, bin)
	pk, names, job := devicesAndJob(t, centre.Server, n)
	half := waitJob(t, centre.Server, job.JobID, func(j jobState) bool { return j.Moved >= n/2 || j.Status >= 2 }, 120*time.Second)
	if err := centre.Cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	centre.Cmd.Wait()
	if half.Status >= 2 {
		t.Fatalf("the job ended before the kill: %+v", half)
	}
	centre = startCentre(t, bin, args)
	done := waitJob(t, centre.Server, job.JobID, func(j jobState) bool { return j.Status >= 2 }, 120*time.Second)
	t.Logf("killed at %d of %d moved; after the restart: %+v", half.Moved, n, done)
	if done.Status != 2 || done.Moved != n || done.Failed != 0 {
		t.Fatalf("job after the restart: %+v", done)
	}
	var details struct {
		Devices []struct {
			DeviceName string
			Code       int
		}
		NextCursor string
	}
	seen := map[string]int{}
	for cursor := ""; ; {
		centre.Server.Admin("GET", "/v1/distribution/jobs/"+job.JobID+"/devices?limit=1000&cursor="+cursor, nil, 200).JSON(t, &details)
		for _, d := range details.Devices {
			if d.Code != 200 {
				t.Errorf("%s: code %d", d.DeviceName, d.Code)
			}
			seen[d.DeviceName]++
		}
		if cursor = details.NextCursor; cursor == "" {
			break
		}
		details.Devices, details.NextCursor = nil, ""
	}
	if len(seen) != n {
		t.Fatalf("%d device results, want %d", len(seen), n)
	}
	for dn, c := range seen {
		if c != 1 {
			t.Errorf("%s has %d results", dn, c)
		}
	}
	var page struct {
		Devices    []struct{ DeviceName string } `json:"devices"`
		NextCursor string                        `json:"nextCursor"`
	}
	at := map[string]int{}
	for cursor := ""; ; {
		sg.Server.Admin("GET", "/v1/products/"+pk+"/devices?limit=1000&cursor="+cursor, nil, 200).JSON(t, &page)
		for _, d := range page.Devices {
			at[d.DeviceName]++
		}
		if cursor = page.NextCursor; cursor == "" || len(page.Devices) == 0 {
			break
		}
		page.Devices, page.NextCursor = nil, ""
	}
	for _, dn := range names {
		if at[dn] != 1 {
			t.Errorf("%s is at sg-1 %d times", dn, at[dn])
		}
	}
}

// BenchmarkJob10000: a job of 10,000 devices (a names list) from the
// centre to sg-1, both corral processes on loopback: time from the job's
// creation to done, and devices/s. The first 1,000 devices
// (CORRAL_BENCH_ONLINE) are connected to the centre, answer the notify
// and must all be forced off.
func BenchmarkJob10000(b *testing.B) {
	n, online := 10000, 1000
	if v, err := strconv.Atoi(os.Getenv("CORRAL_BENCH_ONLINE")); err == nil && v >= 0 {
		online = v
	}
	if v, err := strconv.Atoi(os.Getenv("CORRAL_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	bin := serverproc.Build(b)
	for range b.N {
		_, centre, _ := jobProcs(b, bin)
		p := centre.Server.CreateProduct("meters", nil)
		var names []string
		for i := range n {
			names = append(names, "meter-"+strconv.Itoa(100000+i))
		}
		var devs [][3]string // the first online devices: pk, name, secret
		for i := 0; i < n; i += 10000 {
			var batch struct {
				Devices []apptest.Device `json:"devices"`
			}
			centre.Server.Admin("POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"deviceNames": names[i:min(n, i+10000)]}, 201).JSON(b, &batch)
			for _, d := range batch.Devices {
				if len(devs) < online {
					devs = append(devs, [3]string{d.ProductKey, d.DeviceName, d.DeviceSecret})
				}
			}
		}
		if len(devs) != min(n, online) {
			b.Fatalf("%d online devices, want %d", len(devs), min(n, online))
		}
		on := connectOnline(b, centre.Addrs["mqtt-tcp"], devs)
		var job jobState
		start := time.Now()
		centre.Server.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": names,
			"strategy": 0, "targetInstanceId": "sg-1"}, 201).JSON(b, &job)
		done := waitJob(b, centre.Server, job.JobID, func(j jobState) bool { return j.Status >= 2 }, 30*time.Minute)
		el := time.Since(start)
		if done.Moved != n || done.Failed != 0 {
			on.close()
			b.Fatalf("job = %+v", done)
		}
		if !on.waitOff(10 * time.Second) {
			b.Fatalf("%d of %d online devices forced off", on.kicked.Load(), len(devs))
		}
		if int(on.replied.Load()) != len(devs) {
			b.Fatalf("%d of %d online devices answered a notify", on.replied.Load(), len(devs))
		}
		b.ReportMetric(el.Seconds(), "s-to-done")
		b.ReportMetric(float64(n)/el.Seconds(), "devices/s")
		b.ReportMetric(float64(len(devs)), "online")
	}
}
