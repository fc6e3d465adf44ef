package jobs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// gate is a proxy in front of the destination's API: it holds device
// imports after the first `after` until opened, and counts, per device,
// the imports that created it.
type gate struct {
	mu      sync.Mutex
	seen    int
	after   int
	open    chan struct{}
	created map[string]int
	proxy   *httputil.ReverseProxy
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/devices/") {
		g.proxy.ServeHTTP(w, r)
		return
	}
	g.mu.Lock()
	g.seen++
	hold := g.seen > g.after
	g.mu.Unlock()
	if hold {
		select {
		case <-g.open:
		case <-r.Context().Done():
		}
		if r.Context().Err() != nil {
			return // the caller stopped: nothing reaches the destination
		}
	}
	rec := httptest.NewRecorder()
	g.proxy.ServeHTTP(rec, r)
	var ans struct{ Created bool }
	if json.Unmarshal(rec.Body.Bytes(), &ans) == nil && ans.Created {
		g.mu.Lock()
		g.created[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
		g.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	io.Copy(w, bytes.NewReader(rec.Body.Bytes()))
}

// TestE2EJobResumesAfterRestart: the centre is shut down half-way through
// a job; a new server on the same data directory resumes it, and every
// device is created at the destination exactly once.
func TestE2EJobResumesAfterRestart(t *testing.T) {
	n := 120
	if testing.Short() {
		n = 40
	}
	sg := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region = "sg-1", "ap-southeast-1" })
	target, _ := url.Parse(sg.URL)
	g := &gate{after: n / 3, open: make(chan struct{}), created: map[string]int{}, proxy: httputil.NewSingleHostReverseProxy(target)}
	front := httptest.NewServer(g)
	defer front.Close()
	file := filepath.Join(t.TempDir(), "instances.yaml")
	yaml := fmt.Sprintf("instances:\n  - instanceId: sg-1\n    region: ap-southeast-1\n    mqtt: %s\n    apiUrl: %s\n    credential: %s\n",
		sg.App.Broker().Addr("tcp"), front.URL, sg.AdminKey)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	centre := apptest.Start(t, func(c *config.Config) { c.InstanceID, c.Region, c.DistributionFile = "centre", "cn-shanghai", file })
	p := centre.CreateProduct("meters", nil)
	var names []string
	for i := range n {
		names = append(names, centre.CreateDevice(p.ProductKey, fmt.Sprintf("meter-%04d", i)).DeviceName)
	}
	var job struct {
		JobID                        string
		Status, Moved, Failed, Total int
	}
	centre.Admin("POST", "/v1/distribution/jobs", map[string]any{"productKey": p.ProductKey, "deviceNames": names, "strategy": 0, "targetInstanceId": "sg-1"}, 201).JSON(t, &job)
	for {
		g.mu.Lock()
		held := g.seen > g.after
		g.mu.Unlock()
		if held {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	centre.Admin("GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &job)
	if job.Status != 1 || job.Moved >= n {
		t.Fatalf("before the restart: %+v", job)
	}
	centre.Stop() // mid-job: the held imports are cancelled
	close(g.open)
	again := apptest.StartWith(t, centre.Config)
	defer again.Stop()
	start := time.Now()
	for job.Status < 2 {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the resumed job is still %+v", job)
		}
		time.Sleep(20 * time.Millisecond)
		again.Admin("GET", "/v1/distribution/jobs/"+job.JobID, nil, 200).JSON(t, &job)
	}
	if job.Status != 2 || job.Moved != n || job.Failed != 0 {
		t.Fatalf("after the restart: %+v", job)
	}
	g.mu.Lock()
	for _, dn := range names {
		if g.created[dn] > 1 {
			t.Errorf("%s created %d times at the destination", dn, g.created[dn])
		}
	}
	g.mu.Unlock()
	var list struct {
		Devices []struct{ DeviceName string } `json:"devices"`
	}
	sg.Admin("GET", "/v1/products/"+p.ProductKey+"/devices?limit=1000", nil, 200).JSON(t, &list)
	if len(list.Devices) != n {
		t.Fatalf("the destination holds %d devices, want %d", len(list.Devices), n)
	}
	var details struct {
		Devices []struct {
			DeviceName string
			Code, Step int
		}
	}
	again.Admin("GET", "/v1/distribution/jobs/"+job.JobID+"/devices?limit=1000", nil, 200).JSON(t, &details)
	for _, d := range details.Devices {
		if d.Code != 200 || d.Step != 4 {
			t.Errorf("%s: code %d step %d", d.DeviceName, d.Code, d.Step)
		}
	}
}
