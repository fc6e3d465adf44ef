package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/registry"
)

func testDistJobs(t *testing.T, s Store) {
	at := t0.Truncate(time.Millisecond)
	j := jobs.Job{JobID: "job-1", AccountID: "a1", ProductKey: "pk1", SourceInstanceID: "cn-shanghai", Strategy: jobs.Specified,
		TargetInstanceID: "sg-1", TargetAccountID: "a2", AuthCode: "code", Status: jobs.StatusInitializing, GmtCreate: at, GmtModified: at}
	if err := s.CreateJob(ctx, j, []string{"d3", "d1", "d2", "d4"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(ctx, j, []string{"x"}); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("second create: %v; want ErrConflict", err)
	}
	later := j
	later.JobID, later.ProductKey, later.GmtCreate = "job-2", "pk2", at.Add(time.Second)
	if err := s.CreateJob(ctx, later, []string{"d1"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "job-1")
	if err != nil || got.Total != 4 || got.AuthCode != "code" || got.TargetAccountID != "a2" || !got.GmtCreate.Equal(at) || got.Progress != 0 {
		t.Fatalf("GetJob = %+v, %v", got, err)
	}
	if _, err := s.GetJob(ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("GetJob of a missing job: %v", err)
	}
	busy, err := s.DevicesInOpenJobs(ctx, "pk1")
	if err != nil || len(busy) != 4 {
		t.Fatalf("DevicesInOpenJobs = %v, %v", busy, err)
	}
	// Steps and results; counts follow the items.
	for _, it := range []jobs.Item{
		{JobID: "job-1", DeviceName: "d1", TargetInstanceID: "sg-1", Step: jobs.StepDone, Code: jobs.CodeMoved},
		{JobID: "job-1", DeviceName: "d2", TargetInstanceID: "sg-1", Step: jobs.StepDone, Code: jobs.CodeRemoteFailed, Message: "refused"},
		{JobID: "job-1", DeviceName: "d3", TargetInstanceID: "sg-1", Step: jobs.StepRecorded},
	} {
		if err := s.PutJobItem(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutJobItem(ctx, jobs.Item{JobID: "job-1", DeviceName: "ghost"}); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("PutJobItem of a missing item: %v", err)
	}
	got.Status, got.ProductCopied, got.AbortRequested, got.Message, got.GmtModified = jobs.StatusRunning, true, true, "m", at.Add(time.Minute)
	if err := s.UpdateJob(ctx, got); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetJob(ctx, "job-1")
	if got.Status != jobs.StatusRunning || !got.ProductCopied || !got.AbortRequested || got.Message != "m" || got.Moved != 1 || got.Failed != 1 || got.Progress != 50 {
		t.Fatalf("after updates: %+v", got)
	}
	un, err := s.JobItems(ctx, "job-1", "", 10, true)
	if err != nil || len(un) != 2 || un[0].DeviceName != "d3" || un[0].Step != jobs.StepRecorded || un[1].DeviceName != "d4" {
		t.Fatalf("unfinished = %+v, %v", un, err)
	}
	all, err := s.JobItems(ctx, "job-1", "d1", 2, false)
	if err != nil || len(all) != 2 || all[0].DeviceName != "d2" || all[0].Message != "refused" || all[0].Code != jobs.CodeRemoteFailed {
		t.Fatalf("page after d1 = %+v, %v", all, err)
	}
	list, err := s.ListJobs(ctx, "a1")
	if err != nil || len(list) != 2 || list[0].JobID != "job-2" {
		t.Fatalf("ListJobs = %+v, %v", list, err)
	}
	if other, _ := s.ListJobs(ctx, "a2"); len(other) != 0 {
		t.Fatalf("another account lists %d jobs", len(other))
	}
	got.Status = jobs.StatusDone
	if err := s.UpdateJob(ctx, got); err != nil {
		t.Fatal(err)
	}
	open, err := s.OpenJobs(ctx)
	if err != nil || len(open) != 1 || open[0].JobID != "job-2" {
		t.Fatalf("OpenJobs = %+v, %v", open, err)
	}
	if busy, _ := s.DevicesInOpenJobs(ctx, "pk1"); len(busy) != 0 {
		t.Fatalf("devices of a finished job are busy: %v", busy)
	}
	if err := s.DeleteJob(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob(ctx, "job-1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if items, _ := s.JobItems(ctx, "job-1", "", 10, false); len(items) != 0 {
		t.Fatalf("items outlived their job: %v", items)
	}
}

func testDeviceDistributed(t *testing.T, s Store) {
	p := seed(t, s)
	if err := s.CreateDevices(ctx, []registry.Device{dev(p, "a1")}); err != nil {
		t.Fatal(err)
	}
	if a, err := s.GetDeviceAuth(ctx, p.ProductKey, "a1"); err != nil || a.DistributedTo != "" {
		t.Fatalf("a new device: %+v %v", a, err)
	}
	for i := 0; i < 2; i++ { // repeating is a success
		if err := s.SetDeviceDistributed(ctx, p.ProductKey, "a1", "sg-1"); err != nil {
			t.Fatal(err)
		}
	}
	if a, err := s.GetDeviceAuth(ctx, p.ProductKey, "a1"); err != nil || a.DistributedTo != "sg-1" || string(a.SealedSecret) != "sealed-a1" {
		t.Fatalf("marked: %+v %v", a, err)
	}
	if err := s.SetDeviceDistributed(ctx, p.ProductKey, "a1", ""); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.GetDeviceAuth(ctx, p.ProductKey, "a1"); a.DistributedTo != "" {
		t.Fatalf("cleared: %+v", a)
	}
	if err := s.SetDeviceDistributed(ctx, p.ProductKey, "ghost", "sg-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a missing device: %v", err)
	}
}

func testDistCodes(t *testing.T, s Store) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	if err := s.PutAuthCode(ctx, "h1", "acc-b", now.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAuthCode(ctx, "h1", "acc-b", now.Add(5*time.Minute)); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("the same code twice: %v", err)
	}
	if err := s.PutAuthCode(ctx, "h2", "acc-b", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hash, account string
		at                  time.Time
	}{
		{"unknown code", "nope", "acc-b", now},
		{"another account's", "h1", "acc-c", now},
		{"expired (at its expiry)", "h2", "acc-b", now.Add(time.Minute)},
	} {
		if err := s.TakeAuthCode(ctx, tc.hash, tc.account, tc.at); !errors.Is(err, jobs.ErrNotFound) {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	if err := s.TakeAuthCode(ctx, "h1", "acc-b", now.Add(time.Minute)); err != nil {
		t.Fatalf("a good code: %v", err)
	}
	if err := s.TakeAuthCode(ctx, "h1", "acc-b", now.Add(time.Minute)); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("a code taken twice: %v", err)
	}
	if err := s.TakeAuthCode(ctx, "h2", "acc-b", now); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("an expired code was not dropped: %v", err)
	}
	if _, _, err := s.GetGrant(ctx, "g1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("unknown grant: %v", err)
	}
	if err := s.PutGrant(ctx, "g1", "acc-a", "acc-b", now); err != nil {
		t.Fatal(err)
	}
	if err := s.PutGrant(ctx, "g1", "acc-c", "acc-b", now); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("the same grant twice: %v", err)
	}
	if from, to, err := s.GetGrant(ctx, "g1"); err != nil || from != "acc-a" || to != "acc-b" {
		t.Fatalf("GetGrant = %s, %s, %v", from, to, err)
	}
	// Grants into an account, oldest first; none is an empty list.
	if err := s.PutGrant(ctx, "g0", "acc-c", "acc-b", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutGrant(ctx, "g9", "acc-b", "acc-a", now); err != nil {
		t.Fatal(err)
	}
	gs, err := s.Grants(ctx, "acc-b")
	if err != nil || len(gs) != 2 || gs[0].ID != "g0" || gs[0].FromAccount != "acc-c" || !gs[0].Created.Equal(now.Add(-time.Minute)) || gs[1].ID != "g1" {
		t.Fatalf("Grants(acc-b) = %+v, %v", gs, err)
	}
	if gs, err := s.Grants(ctx, "acc-z"); err != nil || gs == nil || len(gs) != 0 {
		t.Fatalf("Grants(acc-z) = %#v, %v; want an empty list", gs, err)
	}
	if err := s.DeleteGrant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGrant(ctx, "g1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("a grant deleted twice: %v", err)
	}
	if _, _, err := s.GetGrant(ctx, "g1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("a deleted grant is still read: %v", err)
	}
	if gs, _ := s.Grants(ctx, "acc-b"); len(gs) != 1 || gs[0].ID != "g0" {
		t.Fatalf("after the delete: %+v", gs)
	}
}
