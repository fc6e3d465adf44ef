package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/distribution"
)

func distInstance(acct, id, region string) distribution.StoredInstance {
	at := t0.Truncate(time.Millisecond)
	return distribution.StoredInstance{Instance: distribution.Instance{ID: id, AccountID: acct, Name: "n " + id, Region: region,
		MQTT: id + ".example:1883", MQTTS: id + ".example:8883", BackupIP: "10.0.0.1", APIURL: "https://" + id + ".example",
		GmtCreate: at, GmtModified: at}, SealedCredential: []byte("sealed " + id)}
}

func testDistInstances(t *testing.T, s Store) {
	sg := distInstance("a1", "sg-1", "ap-southeast-1")
	if err := s.PutInstance(ctx, sg, false); err != nil {
		t.Fatal(err)
	}
	if err := s.PutInstance(ctx, sg, false); !errors.Is(err, distribution.ErrConflict) {
		t.Fatalf("second create: %v; want ErrConflict", err)
	}
	// The same id in another account, and as a system instance, are others.
	if err := s.PutInstance(ctx, distInstance("a2", "sg-1", "eu-central-1"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.PutInstance(ctx, distInstance("", "sys-1", "cn-shanghai"), false); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetInstance(ctx, "a1", "sg-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Region != "ap-southeast-1" || string(got.SealedCredential) != "sealed sg-1" || !got.HasCredential || !got.GmtCreate.Equal(sg.GmtCreate) || got.BackupIP != "10.0.0.1" {
		t.Fatalf("got %+v", got)
	}
	if _, err := s.GetInstance(ctx, "a3", "sg-1"); !errors.Is(err, distribution.ErrNotFound) {
		t.Fatalf("another account's: %v; want ErrNotFound", err)
	}
	upd := sg
	upd.Region, upd.GmtModified, upd.SealedCredential = "ap-northeast-1", sg.GmtModified.Add(time.Second), nil
	if err := s.PutInstance(ctx, upd, true); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetInstance(ctx, "a1", "sg-1")
	if got.Region != "ap-northeast-1" || got.HasCredential || !got.GmtModified.Equal(upd.GmtModified) {
		t.Fatalf("replaced: %+v", got)
	}
	list, err := s.ListInstances(ctx, "a1")
	if err != nil || len(list) != 1 || list[0].ID != "sg-1" {
		t.Fatalf("list a1: %+v %v", list, err)
	}
	if list, _ := s.ListInstances(ctx, ""); len(list) != 1 || list[0].ID != "sys-1" {
		t.Fatalf("system instances: %+v", list)
	}
	// A record naming an instance keeps it.
	s.PutRecord(ctx, distribution.Record{ProductKey: "pk000000001", DeviceName: "d1", AccountID: "a1", TargetIotInstanceID: "sg-1", GmtCreate: t0, GmtModified: t0})
	if err := s.DeleteInstance(ctx, "a1", "sg-1"); !errors.Is(err, distribution.ErrConflict) {
		t.Fatalf("delete while named: %v; want ErrConflict", err)
	}
	s.DeleteRecord(ctx, "pk000000001", "d1")
	if err := s.DeleteInstance(ctx, "a1", "sg-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteInstance(ctx, "a1", "sg-1"); !errors.Is(err, distribution.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.GetInstance(ctx, "a2", "sg-1"); err != nil {
		t.Fatalf("another account's same id went too: %v", err)
	}
}

func testDistRecords(t *testing.T, s Store) {
	at := t0.Truncate(time.Millisecond)
	pol := distribution.Policy{ID: "near", AccountID: "a1", Name: "nearest", Fallback: "cn-shanghai",
		Regions: []distribution.PolicyRegion{{Region: "cn-shanghai", Instances: []distribution.WeightedTarget{{InstanceID: "sh", Weight: 1}}},
			{Region: "ap-southeast-1", Instances: []distribution.WeightedTarget{{InstanceID: "sg", Weight: 3}, {InstanceID: "sg2", Weight: 1}}}},
		CIDRs: []distribution.CIDRRoute{{CIDR: "127.0.0.2/32", Region: "ap-southeast-1"}}, Countries: map[string]string{"SG": "ap-southeast-1"},
		GmtCreate: at, GmtModified: at}
	if err := s.PutPolicy(ctx, pol, false); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPolicy(ctx, pol, false); !errors.Is(err, distribution.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	got, err := s.GetPolicy(ctx, "a1", "near")
	if err != nil {
		t.Fatal(err)
	}
	if got.AccountID != "a1" || len(got.Regions) != 2 || got.Regions[1].Instances[0].Weight != 3 || got.CIDRs[0].CIDR != "127.0.0.2/32" ||
		got.Countries["SG"] != "ap-southeast-1" || !got.GmtCreate.Equal(at) {
		t.Fatalf("policy: %+v", got)
	}
	if _, err := s.GetPolicy(ctx, "a2", "near"); !errors.Is(err, distribution.ErrNotFound) {
		t.Fatalf("another account's policy: %v", err)
	}
	if err := s.PutInstance(ctx, distInstance("a1", "sg", "ap-southeast-1"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteInstance(ctx, "a1", "sg"); !errors.Is(err, distribution.ErrConflict) {
		t.Fatalf("deleting an instance a policy names: %v", err)
	}

	r := distribution.Record{ProductKey: "pk000000001", DeviceName: "d2", AccountID: "a1", SourceIotInstanceID: "sh", SourceRegion: "cn-shanghai",
		PolicyID: "near", GmtCreate: at, GmtModified: at}
	if _, err := s.GetRecord(ctx, r.ProductKey, r.DeviceName); !errors.Is(err, distribution.ErrNotFound) {
		t.Fatalf("no record yet: %v", err)
	}
	if err := s.PutRecord(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePolicy(ctx, "a1", "near"); !errors.Is(err, distribution.ErrConflict) {
		t.Fatalf("deleting a policy a record names: %v", err)
	}
	r2 := r
	r2.PolicyID, r2.TargetIotInstanceID, r2.TargetRegion, r2.JobID = "", "sg", "ap-southeast-1", "job-1"
	r2.GmtCreate, r2.GmtModified = at.Add(time.Hour), at.Add(time.Hour)
	if err := s.PutRecord(ctx, r2); err != nil {
		t.Fatal(err)
	}
	gr, err := s.GetRecord(ctx, r.ProductKey, r.DeviceName)
	if err != nil {
		t.Fatal(err)
	}
	if gr.TargetIotInstanceID != "sg" || gr.PolicyID != "" || gr.JobID != "job-1" || !gr.GmtCreate.Equal(at) || !gr.GmtModified.Equal(at.Add(time.Hour)) ||
		gr.SourceRegion != "cn-shanghai" || gr.AccountID != "a1" {
		t.Fatalf("replaced record (GmtCreate kept): %+v", gr)
	}
	for _, dn := range []string{"d3", "d1", "d4"} {
		rr := r2
		rr.DeviceName = dn
		s.PutRecord(ctx, rr)
	}
	page, err := s.ListRecords(ctx, "pk000000001", "d1", 2)
	if err != nil || len(page) != 2 || page[0].DeviceName != "d2" || page[1].DeviceName != "d3" {
		t.Fatalf("page after d1: %+v %v", page, err)
	}
	if err := s.DeletePolicy(ctx, "a1", "near"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.ListPolicies(ctx, "a1"); len(list) != 0 {
		t.Fatalf("policies left: %+v", list)
	}
	if err := s.DeleteRecord(ctx, "pk000000001", "d2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRecord(ctx, "pk000000001", "d2"); !errors.Is(err, distribution.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
