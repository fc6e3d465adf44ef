package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"path/filepath"

	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

func TestJobMovesDevices(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 60)
	for _, dn := range names(0, 10) {
		w.online[dn] = netip.MustParseAddr("127.0.0.1")
	}
	w.conflict["dev-0050"] = true
	s := w.service(newMemStore())
	defer s.Close()
	j, plan, err := s.Create(ctx, operator, jobs.Input{ProductKey: pk, DeviceNames: names(0, 60), Strategy: jobs.Specified, TargetInstanceID: "ap-southeast-1"})
	if err != nil || plan != nil {
		t.Fatalf("Create = %v, plan %v", err, plan)
	}
	j = wait(t, s, j.JobID)
	if j.Status != jobs.StatusDone || j.Total != 60 || j.Moved != 59 || j.Failed != 1 || j.Progress != 100 || !j.ProductCopied {
		t.Fatalf("job = %+v", j)
	}
	items, err := s.Details(ctx, operator, j.JobID, "", 0)
	if err != nil || len(items) != 60 {
		t.Fatalf("Details = %d items, %v", len(items), err)
	}
	for _, it := range items {
		want := jobs.CodeMoved
		if it.DeviceName == "dev-0050" {
			want = jobs.CodeConflict
		}
		if it.Code != want || it.Step != jobs.StepDone {
			t.Errorf("%s: code %d step %d, want %d", it.DeviceName, it.Code, it.Step, want)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.products["ap-southeast-1"] != 1 {
		t.Errorf("product copied %d times, want once", w.products["ap-southeast-1"])
	}
	for _, dn := range names(0, 60) {
		if dn == "dev-0050" {
			if _, ok := w.marked[dn]; ok {
				t.Errorf("%s refused at the destination but marked distributed here", dn)
			}
			continue
		}
		if got := w.imported["ap-southeast-1"][dn]; got != w.secrets[dn] {
			t.Errorf("%s: the destination opened another secret", dn)
		}
		if w.marked[dn] != "ap-southeast-1" {
			t.Errorf("%s not marked distributed", dn)
		}
		if r := w.records[dn]; r.TargetIotInstanceID != "ap-southeast-1" || r.SourceIotInstanceID != "cn-shanghai" || r.JobID != j.JobID {
			t.Errorf("%s record = %+v", dn, r)
		}
	}
	for _, dn := range names(0, 10) {
		if w.notified[dn] != 1 {
			t.Errorf("%s notified %d times, want once", dn, w.notified[dn])
		}
	}
	if len(w.notified) != 10 || len(w.online) != 0 {
		t.Errorf("notified %d devices (want the 10 online), %d still online", len(w.notified), len(w.online))
	}
	if w.events[0] != "job initializing" || w.events[len(w.events)-1] != "job done" {
		t.Errorf("events %v", w.events)
	}
}

func TestCreateRefusals(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 20)
	w.codes["acc-2"] = "good-code"
	st := newMemStore()
	s := w.service(st)
	defer s.Close()
	spec := func(in jobs.Input) jobs.Input {
		in.Strategy, in.ProductKey = jobs.Specified, pk
		if in.TargetInstanceID == "" {
			in.TargetInstanceID = "ap-southeast-1"
		}
		if in.DeviceNames == nil && in.CSV == "" {
			in.DeviceNames = names(0, 2)
		}
		return in
	}
	for _, tc := range []struct {
		name string
		p    registry.Principal
		in   jobs.Input
		want error
		says string
	}{
		{"readonly key", registry.Principal{AccountID: "acc-1", Role: registry.RoleReadonly}, spec(jobs.Input{}), registry.ErrForbidden, "operator"},
		{"unknown product", operator, jobs.Input{ProductKey: "nope", DeviceNames: names(0, 1), TargetInstanceID: "ap-southeast-1"}, registry.ErrNotFound, "nope"},
		{"another account's product", registry.Principal{AccountID: "acc-2", Role: registry.RoleAdmin}, spec(jobs.Input{}), registry.ErrNotFound, pk},
		{"unregistered device", operator, spec(jobs.Input{DeviceNames: []string{"dev-0001", "ghost"}}), jobs.ErrInvalid, "ghost"},
		{"too many devices", operator, spec(jobs.Input{DeviceNames: make([]string, jobs.MaxDevices+1)}), jobs.ErrInvalid, "at most 10000"},
		{"too many csv rows", operator, spec(jobs.Input{CSV: strings.Repeat("dev-0001\n", jobs.MaxCSVRows+1)}), jobs.ErrInvalid, "more than 1000 rows"},
		{"names and csv", operator, spec(jobs.Input{DeviceNames: names(0, 1), CSV: "dev-0001"}), jobs.ErrInvalid, "not both"},
		{"bad device name", operator, spec(jobs.Input{DeviceNames: []string{"a b"}}), jobs.ErrInvalid, "deviceNames[0]"},
		{"no devices", operator, spec(jobs.Input{DeviceNames: []string{}, CSV: "deviceName\n"}), jobs.ErrInvalid, "no device names"},
		{"unknown instance", operator, spec(jobs.Input{TargetInstanceID: "us-east-1"}), jobs.ErrNotFound, "us-east-1"},
		{"this instance", operator, spec(jobs.Input{TargetInstanceID: "cn-shanghai"}), jobs.ErrInvalid, "already at"},
		{"unknown strategy", operator, jobs.Input{ProductKey: pk, DeviceNames: names(0, 1), Strategy: 7}, jobs.ErrInvalid, "strategy"},
		{"proximity across accounts", operator, jobs.Input{ProductKey: pk, DeviceNames: names(0, 1), Strategy: jobs.Proximity, PolicyID: "near", TargetAccountID: "acc-2", AuthCode: "good-code"}, jobs.ErrInvalid, "not offered across accounts"},
		{"unknown policy", operator, jobs.Input{ProductKey: pk, DeviceNames: names(0, 1), Strategy: jobs.Proximity, PolicyID: "far"}, jobs.ErrNotFound, "far"},
		{"cross-account without a code", operator, spec(jobs.Input{TargetAccountID: "acc-2"}), jobs.ErrInvalid, "authCode"},
		{"cross-account with a wrong code", operator, spec(jobs.Input{TargetAccountID: "acc-2", AuthCode: "bad-code"}), nil, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.Create(ctx, tc.p, tc.in)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Create = %v, want %v naming %q", err, tc.want, tc.says)
			}
		})
	}
	if js, _ := st.ListJobs(ctx, "acc-1"); len(js) != 0 {
		t.Fatalf("refused creates left %d jobs", len(js))
	}
	// A valid code is accepted.
	j, _, err := s.Create(ctx, operator, spec(jobs.Input{TargetAccountID: "acc-2", AuthCode: "good-code"}))
	if err != nil {
		t.Fatalf("cross-account with a valid code: %v", err)
	}
	wait(t, s, j.JobID)
	// Its grant served this job only: released once the job is done.
	w.mu.Lock()
	released := slices.Clone(w.released)
	w.mu.Unlock()
	if len(released) != 1 || released[0] != "grant-good-code" {
		t.Fatalf("grants released: %q, want the job's one", released)
	}
}

func TestOpenJobLimitAndDevicesInOpenJobs(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 20)
	w.block, w.blockAfter = make(chan struct{}), 0 // every import waits
	s := w.service(newMemStore())
	defer s.Close()
	var ids []string
	for i := range jobs.MaxOpenJobs {
		j, _, err := s.Create(ctx, operator, jobs.Input{ProductKey: pk, DeviceNames: names(i, i+1), TargetInstanceID: "ap-southeast-1"})
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		ids = append(ids, j.JobID)
	}
	if _, _, err := s.Create(ctx, operator, jobs.Input{ProductKey: pk, DeviceNames: names(15, 16), TargetInstanceID: "ap-southeast-1"}); !errors.Is(err, jobs.ErrLimit) {
		t.Fatalf("11th open job = %v, want ErrLimit", err)
	}
	if _, err := s.Abort(ctx, operator, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, operator, ids[1]); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Delete of a running job = %v, want ErrConflict", err)
	}
	if _, _, err := s.Create(ctx, operator, jobs.Input{ProductKey: pk, DeviceNames: names(1, 2), TargetInstanceID: "eu-central-1"}); !errors.Is(err, jobs.ErrConflict) || !strings.Contains(err.Error(), "dev-0001") {
		t.Fatalf("a device in another open job = %v, want ErrConflict naming it", err)
	}
	close(w.block)
	for _, id := range ids {
		wait(t, s, id)
	}
	if err := s.Delete(ctx, operator, ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, operator, ids[1]); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if _, err := s.Get(ctx, registry.Principal{AccountID: "acc-2", Role: registry.RoleAdmin}, ids[2]); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("another account's Get = %v, want ErrNotFound", err)
	}
}

func TestAbort(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 40)
	w.block, w.blockAfter = make(chan struct{}), 5
	s := w.service(newMemStore())
	defer s.Close()
	j, _, err := s.Create(ctx, operator, jobs.Input{ProductKey: pk, DeviceNames: names(0, 40), TargetInstanceID: "ap-southeast-1"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		w.mu.Lock()
		n := len(w.importCalls)
		w.mu.Unlock()
		if n >= 5 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Abort(ctx, operator, j.JobID); err != nil {
		t.Fatal(err)
	}
	close(w.block) // the devices in flight finish
	j = wait(t, s, j.JobID)
	items, _ := s.Details(ctx, operator, j.JobID, "", 0)
	moved, aborted := 0, 0
	for _, it := range items {
		switch it.Code {
		case jobs.CodeMoved:
			moved++
		case jobs.CodeAborted:
			aborted++
		default:
			t.Errorf("%s: code %d", it.DeviceName, it.Code)
		}
	}
	if j.Status != jobs.StatusAborted || moved < 5 || moved+aborted != 40 || j.Moved != moved || j.Failed != aborted {
		t.Fatalf("job %+v: %d moved, %d aborted", j, moved, aborted)
	}
	w.mu.Lock()
	if len(w.marked) != moved {
		t.Errorf("%d marked, %d moved", len(w.marked), moved)
	}
	w.mu.Unlock()
	if _, err := s.Abort(ctx, operator, j.JobID); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Abort of an aborted job = %v", err)
	}
	if err := s.Delete(ctx, operator, j.JobID); err != nil {
		t.Fatal(err)
	}
	// Create, abort and delete are on the audit trail; the refused
	// second abort is not an action.
	w.mu.Lock()
	defer w.mu.Unlock()
	want := []struct{ action, reason string }{
		{"distribution.job.create", "40 devices of " + pk + " to instance ap-southeast-1"},
		{"distribution.job.abort", ""},
		{"distribution.job.delete", ""},
	}
	if len(w.audits) != len(want) {
		t.Fatalf("audit = %+v", w.audits)
	}
	for i, e := range w.audits {
		if e.Action != want[i].action || e.Reason != want[i].reason || e.Target != j.JobID || e.AccountID != operator.AccountID || e.Outcome != "ok" {
			t.Errorf("audit[%d] = %+v, want %s %q", i, e, want[i].action, want[i].reason)
		}
	}
}

// TestResume: a run interrupted by Close (a restart) finishes under a
// new Service on the same store (SQLite: the same file, reopened), each
// device moved exactly once.
func TestResume(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		st := newMemStore()
		testResume(t, func() jobs.Store { return st }, func() {})
	})
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "corral.db")
		var cur *sqlite.Store
		open := func() jobs.Store {
			var err error
			if cur, err = sqlite.Open(context.Background(), path, sqlite.Options{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cur.Close() })
			return cur
		}
		testResume(t, open, func() { cur.Close() })
	})
}

func testResume(t *testing.T, open func() jobs.Store, closeStore func()) {
	ctx := context.Background()
	w := newWorld(t, 100)
	for _, dn := range names(0, 100) {
		w.online[dn] = netip.MustParseAddr("127.0.0.1")
	}
	w.block, w.blockAfter = make(chan struct{}), 30
	st := open()
	s1 := w.service(st)
	j, _, err := s1.Create(ctx, operator, jobs.Input{ProductKey: pk, DeviceNames: names(0, 100), TargetInstanceID: "eu-central-1"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		w.mu.Lock()
		n := len(w.importCalls)
		w.mu.Unlock()
		if n >= 30 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s1.Close() // the imports in flight are cut off
	mid, _ := st.GetJob(ctx, j.JobID)
	if mid.Status != jobs.StatusRunning || mid.Moved >= 100 {
		t.Fatalf("after Close: %+v", mid)
	}
	closeStore()
	w.mu.Lock()
	w.block = nil
	w.mu.Unlock()
	s2 := w.service(open())
	defer s2.Close()
	if err := s2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	j = wait(t, s2, j.JobID)
	if j.Status != jobs.StatusDone || j.Moved != 100 || j.Failed != 0 {
		t.Fatalf("resumed job = %+v", j)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, dn := range names(0, 100) {
		if w.importCalls[dn] != 1 || w.notified[dn] != 1 || w.marked[dn] != "eu-central-1" {
			t.Errorf("%s: imported %d, notified %d times, marked %q", dn, w.importCalls[dn], w.notified[dn], w.marked[dn])
		}
	}
}

func TestProximity(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 4)
	w.online["dev-0000"] = netip.MustParseAddr("127.0.0.2")
	w.online["dev-0001"] = netip.MustParseAddr("127.0.0.3")
	s := w.service(newMemStore())
	defer s.Close()
	in := jobs.Input{ProductKey: pk, DeviceNames: names(0, 4), Strategy: jobs.Proximity, PolicyID: "near", DryRun: true}
	_, plan, err := s.Create(ctx, operator, in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"dev-0000": "ap-southeast-1", "dev-0001": "eu-central-1", "dev-0002": "eu-central-1", "dev-0003": "eu-central-1"}
	got := map[string]string{}
	for _, it := range plan {
		got[it.DeviceName] = it.TargetInstanceID
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dry run = %v, want %v", got, want)
	}
	if js, _ := s.List(ctx, operator); len(js) != 0 || len(w.marked) != 0 {
		t.Fatal("a dry run created a job or moved a device")
	}
	in.DryRun = false
	j, _, err := s.Create(ctx, operator, in)
	if err != nil {
		t.Fatal(err)
	}
	if j = wait(t, s, j.JobID); j.Moved != 4 {
		t.Fatalf("job = %+v", j)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for dn, inst := range want {
		if w.marked[dn] != inst || w.records[dn].TargetIotInstanceID != inst || w.imported[inst][dn] == "" {
			t.Errorf("%s went to %q (record %q), want %s", dn, w.marked[dn], w.records[dn].TargetIotInstanceID, inst)
		}
	}
	if w.products["ap-southeast-1"] != 1 || w.products["eu-central-1"] != 1 {
		t.Errorf("products copied %v, want once to each", w.products)
	}
}

func TestParseCSV(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      bool
	}{
		{"header and rows", "deviceName,note\ndev-1,a\ndev-2,b\n", []string{"dev-1", "dev-2"}, false},
		{"no header, BOM, spaces, blank cells", "\ufeffdev-1\n  dev-2  \n,\n", []string{"dev-1", "dev-2"}, false},
		{"CRLF", "DeviceName\r\ndev-1\r\n", []string{"dev-1"}, false},
		{"exactly 1000 rows after a header", "deviceName\n" + strings.Repeat("d\n", 1000), nil, false},
		{"1001 rows", strings.Repeat("d\n", 1001), nil, true},
		{"bad quoting", "\"dev", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jobs.ParseCSV(strings.NewReader(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("ParseCSV = %v, %v", got, err)
			}
			if tc.want != nil && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("ParseCSV = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add("deviceName\ndev-1\n")
	f.Add("\"a,b\",c\n\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		names, err := jobs.ParseCSV(strings.NewReader(in))
		if err == nil && len(names) > jobs.MaxCSVRows {
			t.Fatalf("%d names from a CSV, at most %d", len(names), jobs.MaxCSVRows)
		}
		for _, n := range names {
			if n == "" || strings.TrimSpace(n) != n {
				t.Fatalf("name %q not trimmed or empty", n)
			}
		}
	})
}

// TestResumeFromImported: a device saved at StepImported whose record and
// mark were done before a crash (they are not saved as steps) finishes
// once: not imported again, its record keeps its creation time, marked,
// notified, one result.
func TestResumeFromImported(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 2)
	st := newMemStore()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j := jobs.Job{JobID: "job-1", AccountID: operator.AccountID, ProductKey: pk, SourceInstanceID: "cn-shanghai",
		TargetInstanceID: "eu-central-1", Status: jobs.StatusRunning, ProductCopied: true, GmtCreate: created, GmtModified: created}
	if err := st.CreateJob(ctx, j, names(0, 2)); err != nil {
		t.Fatal(err)
	}
	for _, dn := range names(0, 2) {
		if err := st.PutJobItem(ctx, jobs.Item{JobID: j.JobID, DeviceName: dn, TargetInstanceID: "eu-central-1", Step: jobs.StepImported}); err != nil {
			t.Fatal(err)
		}
		w.online[dn] = netip.MustParseAddr("127.0.0.1")
	}
	// dev-0000 crashed after its record and mark; dev-0001 right after its import.
	w.records["dev-0000"] = distribution.Record{ProductKey: pk, DeviceName: "dev-0000", AccountID: operator.AccountID,
		TargetIotInstanceID: "eu-central-1", JobID: j.JobID, GmtCreate: created, GmtModified: created}
	w.marked["dev-0000"] = "eu-central-1"
	s := w.service(st)
	defer s.Close()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	j = wait(t, s, j.JobID)
	if j.Status != jobs.StatusDone || j.Moved != 2 || j.Failed != 0 {
		t.Fatalf("resumed job = %+v", j)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, dn := range names(0, 2) {
		if w.importCalls[dn] != 0 || w.notified[dn] != 1 || w.marked[dn] != "eu-central-1" || w.records[dn].TargetIotInstanceID != "eu-central-1" {
			t.Errorf("%s: imported %d, notified %d, marked %q, record %+v", dn, w.importCalls[dn], w.notified[dn], w.marked[dn], w.records[dn])
		}
	}
	if !w.records["dev-0000"].GmtCreate.Equal(created) {
		t.Errorf("record GmtCreate = %v, want %v", w.records["dev-0000"].GmtCreate, created)
	}
}
