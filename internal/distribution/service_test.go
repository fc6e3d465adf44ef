package distribution_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

var ctx = context.Background()

// products is a fake registry: ProductKey → owning account.
type products map[string]string

func (ps products) GetProduct(_ context.Context, p registry.Principal, pk string) (registry.Product, error) {
	if ps[pk] != p.AccountID {
		return registry.Product{}, fmt.Errorf("product %s: %w", pk, registry.ErrNotFound)
	}
	return registry.Product{ProductKey: pk, AccountID: p.AccountID}, nil
}

type auditRec struct {
	mu sync.Mutex
	es []audit.Entry
}

func (a *auditRec) Record(_ context.Context, e audit.Entry) {
	a.mu.Lock()
	a.es = append(a.es, e)
	a.mu.Unlock()
}

type fixture struct {
	svc     *distribution.Service
	store   *sqlite.Store
	box     *credential.Box
	audit   *auditRec
	admin   registry.Principal // account a1
	other   registry.Principal // account a2
	sysAdm  registry.Principal
	now     time.Time
	nowLock sync.Mutex
}

type fixtureOptions struct {
	rate      float64
	geo       distribution.Geo
	allocator distribution.Allocator
	def       string
}

const (
	pk1 = "a1ProductKy" // account a1
	pk2 = "a2ProductKy" // account a2
)

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := credential.NewBox(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: st, box: box, audit: &auditRec{}, now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC),
		admin:  registry.Principal{KeyID: "k1", AccountID: "a1", Role: registry.RoleAdmin},
		other:  registry.Principal{KeyID: "k2", AccountID: "a2", Role: registry.RoleAdmin},
		sysAdm: registry.Principal{KeyID: "k0", AccountID: "a0", Role: registry.RoleAdmin, SystemAdmin: true}}
	f.svc, err = distribution.New(distribution.Options{Store: st, Sealer: box, Products: products{pk1: "a1", pk2: "a2"},
		Self:    distribution.Instance{ID: "centre", Name: "this corral", Region: "cn-shanghai", MQTT: "centre.example:1883", MQTTS: "centre.example:8883"},
		Default: o.def, Geo: o.geo, Allocator: o.allocator, RatePerIP: o.rate, Auditor: f.audit, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.nowLock.Lock()
	defer f.nowLock.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.nowLock.Lock()
	f.now = f.now.Add(d)
	f.nowLock.Unlock()
}

func (f *fixture) addInstance(t testing.TB, id, region string) distribution.Instance {
	t.Helper()
	in, err := f.svc.PutInstance(ctx, f.admin, distribution.InstanceInput{ID: id, Region: region, MQTT: id + ".example:1883", MQTTS: id + ".example:8883"}, false)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestInstances(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	in, err := f.svc.PutInstance(ctx, f.admin, distribution.InstanceInput{ID: "sg-1", Name: "Singapore", Region: "ap-southeast-1",
		MQTT: "sg.example:1883", BackupIP: "203.0.113.7", APIURL: "https://sg.example:8443", Credential: "kid.s3cret"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !in.HasCredential || in.AccountID != "a1" {
		t.Fatalf("created %+v", in)
	}
	b, _ := json.Marshal(in)
	if strings.Contains(string(b), "s3cret") {
		t.Fatalf("the credential shows: %s", b)
	}
	st, _ := f.store.GetInstance(ctx, "a1", "sg-1")
	if strings.Contains(string(st.SealedCredential), "s3cret") {
		t.Fatal("the credential is stored in clear")
	}
	if c, err := f.svc.Credential(ctx, "a1", "sg-1"); err != nil || string(c) != "kid.s3cret" {
		t.Fatalf("credential %q %v", c, err)
	}
	// Replacing without a credential keeps the stored one.
	if in, err = f.svc.PutInstance(ctx, f.admin, distribution.InstanceInput{ID: "sg-1", Region: "ap-southeast-1", MQTT: "sg2.example:1883"}, true); err != nil || !in.HasCredential {
		t.Fatalf("replace: %+v %v", in, err)
	}
	if _, err := f.svc.PutInstance(ctx, f.admin, distribution.InstanceInput{ID: "sg-1", Region: "ap-southeast-1", MQTT: "sg.example:1883"}, false); !errors.Is(err, distribution.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	// A system instance, seen by every account, changed by none but a system administrator.
	if _, err := f.svc.PutInstance(ctx, f.sysAdm, distribution.InstanceInput{ID: "fra", Region: "eu-central-1", MQTTS: "fra.example:8883"}, false); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteInstance(ctx, f.other, "fra"); !errors.Is(err, distribution.ErrReadOnly) {
		t.Fatalf("a tenant deletes a system instance: %v", err)
	}
	if _, err := f.svc.PutInstance(ctx, f.other, distribution.InstanceInput{ID: "fra", Region: "eu-central-1", MQTTS: "evil.example:8883"}, false); !errors.Is(err, distribution.ErrConflict) {
		t.Fatalf("a tenant shadows a system instance: %v", err)
	}
	// Another account sees this corral and the system instance, not a1's.
	list, err := f.svc.ListInstances(ctx, f.other)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range list {
		ids = append(ids, in.ID)
	}
	if strings.Join(ids, ",") != "centre,fra" {
		t.Fatalf("a2 sees %v", ids)
	}
	if _, err := f.svc.GetInstance(ctx, f.other, "sg-1"); !errors.Is(err, distribution.ErrNotFound) {
		t.Fatalf("a2 reads a1's instance: %v", err)
	}
	if err := f.svc.DeleteInstance(ctx, f.admin, "centre"); !errors.Is(err, distribution.ErrReadOnly) {
		t.Fatalf("deleting this corral: %v", err)
	}
	for _, bad := range []distribution.InstanceInput{
		{ID: "x", Region: "ap-southeast-1"},
		{ID: "x", Region: "ap-southeast-1", MQTT: "no-port"},
		{ID: "x", Region: "ap-southeast-1", MQTT: "h:0"},
		{ID: "x", Region: "ap-southeast-1", MQTT: strings.Repeat("h", 65) + ":1883"},
		{ID: "x", Region: "ap-southeast-1", MQTT: `h"x:1883`},
		{ID: "x", Region: "ap-southeast-1", MQTT: "h:1883", BackupIP: "2001:db8::1234:5678"},
		{ID: "x", Region: "ap-southeast-1", MQTT: "h:1883", BackupIP: "not-an-ip"},
		{ID: "X!", Region: "ap-southeast-1", MQTT: "h:1883"},
		{ID: "x", Region: "Asia", MQTT: "h:1883"},
		{ID: "centre", Region: "cn-shanghai", MQTT: "h:1883"},
	} {
		if _, err := f.svc.PutInstance(ctx, f.admin, bad, false); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestRecordsTenancy(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.addInstance(t, "sg-1", "ap-southeast-1")
	r, err := f.svc.SetRecord(ctx, f.admin, pk1, "dev1", distribution.RecordInput{TargetIotInstanceID: "sg-1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.SourceIotInstanceID != "centre" || r.SourceRegion != "cn-shanghai" || r.TargetRegion != "ap-southeast-1" || r.GmtCreate.IsZero() {
		t.Fatalf("record %+v", r)
	}
	// Another account can neither read, list, set nor delete it.
	if _, err := f.svc.GetRecord(ctx, f.other, pk1, "dev1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a2 reads: %v", err)
	}
	if _, err := f.svc.ListRecords(ctx, f.other, pk1, "", 10); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a2 lists: %v", err)
	}
	if _, err := f.svc.SetRecord(ctx, f.other, pk1, "dev1", distribution.RecordInput{TargetIotInstanceID: "centre"}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a2 sets: %v", err)
	}
	if err := f.svc.DeleteRecord(ctx, f.other, pk1, "dev1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a2 deletes: %v", err)
	}
	// Nor point its own devices to a1's instance.
	if _, err := f.svc.SetRecord(ctx, f.other, pk2, "dev1", distribution.RecordInput{TargetIotInstanceID: "sg-1"}); !errors.Is(err, distribution.ErrNotFound) {
		t.Fatalf("a2 uses a1's instance: %v", err)
	}
	f.advance(time.Minute)
	r2, err := f.svc.SetRecord(ctx, f.admin, pk1, "dev1", distribution.RecordInput{TargetIotInstanceID: "centre"})
	if err != nil || !r2.GmtCreate.Equal(r.GmtCreate) || !r2.GmtModified.After(r.GmtModified) {
		t.Fatalf("re-set %+v %v", r2, err)
	}
	if _, err := f.svc.SetRecord(ctx, f.admin, pk1, "dev1", distribution.RecordInput{}); !errors.Is(err, distribution.ErrInvalid) {
		t.Fatalf("neither target: %v", err)
	}
	if err := f.svc.DeleteRecord(ctx, f.admin, pk1, "dev1"); err != nil {
		t.Fatal(err)
	}
}

func bootstrap(t *testing.T, f *fixture, pk, dn, source string) distribution.Answer {
	t.Helper()
	a, err := f.svc.Bootstrap(ctx, distribution.Request{ProductKey: pk, DeviceName: dn, RegionID: -1, Source: source})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestBootstrapChoices(t *testing.T) {
	geo := openGeo(t, map[string][2]string{"127.0.0.3/32": {"SG", "AS"}})
	f := newFixture(t, fixtureOptions{geo: geo})
	f.addInstance(t, "sg-1", "ap-southeast-1")
	f.addInstance(t, "fra", "eu-central-1")
	if _, err := f.svc.PutPolicy(ctx, f.admin, distribution.Policy{ID: "near", Fallback: "eu-central-1",
		Regions: []distribution.PolicyRegion{{Region: "ap-southeast-1", Instances: []distribution.WeightedTarget{{InstanceID: "sg-1"}}},
			{Region: "eu-central-1", Instances: []distribution.WeightedTarget{{InstanceID: "fra"}}}},
		CIDRs: []distribution.CIDRRoute{{CIDR: "127.0.0.2/32", Region: "ap-southeast-1"}}, Countries: map[string]string{"SG": "ap-southeast-1"}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetRecord(ctx, f.admin, pk1, "to-sg", distribution.RecordInput{TargetIotInstanceID: "sg-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetRecord(ctx, f.admin, pk1, "near", distribution.RecordInput{PolicyID: "near"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, dn, source, host, rule string }{
		{"no record: the default", "nobody", "127.0.0.1:5000", "centre.example", "default"},
		{"a record", "to-sg", "127.0.0.1:5000", "sg-1.example", "record"},
		{"policy by cidr", "near", "127.0.0.2:5000", "sg-1.example", "cidr"},
		{"policy by geoip", "near", "127.0.0.3:5000", "sg-1.example", "country"},
		{"policy fallback", "near", "127.0.0.1:5000", "fra.example", "fallback"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := bootstrap(t, f, pk1, tt.dn, tt.source)
			if a.Host != tt.host || a.Port != 1883 || a.Rule != tt.rule {
				t.Fatalf("got %+v", a)
			}
		})
	}
	// Over TLS the MQTTS endpoint.
	a, err := f.svc.Bootstrap(ctx, distribution.Request{ProductKey: pk1, DeviceName: "to-sg", RegionID: -1, Source: "127.0.0.1:1", TLS: true})
	if err != nil || a.Port != 8883 {
		t.Fatalf("over TLS: %+v %v", a, err)
	}
	// The v4 region GET: a system instance of that region, else the default.
	if a, _ := f.svc.Bootstrap(ctx, distribution.Request{RegionID: 0, Source: "127.0.0.1:1"}); a.Host != "centre.example" || a.Rule != "region" {
		t.Fatalf("region 0 (cn-shanghai, this corral): %+v", a)
	}
	if a, _ := f.svc.Bootstrap(ctx, distribution.Request{RegionID: 1, Source: "127.0.0.1:1"}); a.Host != "centre.example" || a.Rule != "default" {
		t.Fatalf("region 1 has only a1's instance, not a system one: %+v", a)
	}
	// Nothing to tell a known device without a record from an unknown one.
	if a, b := bootstrap(t, f, pk1, "nobody", "127.0.0.1:1"), bootstrap(t, f, "zzzzzzzzzzz", "nobody", "127.0.0.1:1"); string(a.Body()) != string(b.Body()) {
		t.Fatalf("%s vs %s", a.Body(), b.Body())
	}
	if len(f.audit.es) == 0 || f.audit.es[0].Action != "device.bootstrap" || f.audit.es[0].Source != "127.0.0.1" {
		t.Fatalf("audit %+v", f.audit.es)
	}
}

// allocator is a fake allocation webhook.
type allocator struct {
	answer string
	err    error
	got    distribution.AllocationRequest
}

func (a *allocator) Call(_ context.Context, url string, v any, out any, _ time.Duration) error {
	a.got = v.(distribution.AllocationRequest)
	if a.err != nil {
		return a.err
	}
	out.(*distribution.AllocationAnswer).InstanceID = a.answer
	return nil
}

func TestAllocationWebhook(t *testing.T) {
	al := &allocator{}
	f := newFixture(t, fixtureOptions{allocator: al})
	f.addInstance(t, "sg-1", "ap-southeast-1")
	f.addInstance(t, "fra", "eu-central-1")
	if _, err := f.svc.PutPolicy(ctx, f.admin, distribution.Policy{ID: "fn", Fallback: "eu-central-1", Webhook: "https://fn.example/allocate",
		Regions: []distribution.PolicyRegion{{Region: "ap-southeast-1", Instances: []distribution.WeightedTarget{{InstanceID: "sg-1"}}},
			{Region: "eu-central-1", Instances: []distribution.WeightedTarget{{InstanceID: "fra"}}}}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetRecord(ctx, f.admin, pk1, "dev-d", distribution.RecordInput{PolicyID: "fn"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, answer string
		err          error
		host, rule   string
	}{
		{"the webhook's choice", "sg-1", nil, "sg-1.example", "webhook"},
		{"an instance not in the policy: the tables", "centre", nil, "fra.example", "fallback"},
		{"a failure or timeout: the tables", "", context.DeadlineExceeded, "fra.example", "fallback"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			al.answer, al.err = tt.answer, tt.err
			a := bootstrap(t, f, pk1, "dev-d", "198.51.100.7:4000")
			if a.Host != tt.host || a.Rule != tt.rule {
				t.Fatalf("got %+v", a)
			}
			if al.got.SourceIP != "198.51.100.7" || al.got.DeviceName != "dev-d" || al.got.Proposed != "fra" {
				t.Fatalf("webhook asked %+v", al.got)
			}
		})
	}
}

func TestBootstrapRateLimit(t *testing.T) {
	f := newFixture(t, fixtureOptions{rate: 1})
	for i := range 3 { // burst 2r+1
		bootstrap(t, f, pk1, fmt.Sprintf("dev%d", i), "192.0.2.1:1")
	}
	_, err := f.svc.Bootstrap(ctx, distribution.Request{ProductKey: pk1, DeviceName: "devx", RegionID: -1, Source: "192.0.2.1:2"})
	var ref *distribution.Refusal
	if !errors.As(err, &ref) || ref.Status != 429 || !errors.Is(err, distribution.ErrRateLimited) {
		t.Fatalf("fourth: %v", err)
	}
	bootstrap(t, f, pk1, "devx", "192.0.2.2:1") // another source has its own budget
	f.advance(time.Second)
	bootstrap(t, f, pk1, "devx", "192.0.2.1:3")
}

// TestBootstrapSeesChangesAtOnce: instances and policies are cached for
// bootstraps, and every change through the service drops them at once.
func TestBootstrapSeesChangesAtOnce(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.addInstance(t, "sg-1", "ap-southeast-1")
	pol := distribution.Policy{ID: "near", Fallback: "ap-southeast-1",
		Regions: []distribution.PolicyRegion{{Region: "ap-southeast-1", Instances: []distribution.WeightedTarget{{InstanceID: "sg-1"}}},
			{Region: "cn-shanghai", Instances: []distribution.WeightedTarget{{InstanceID: "centre"}}}}}
	if _, err := f.svc.PutPolicy(ctx, f.admin, pol, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetRecord(ctx, f.admin, pk1, "dev1", distribution.RecordInput{PolicyID: "near"}); err != nil {
		t.Fatal(err)
	}
	if a := bootstrap(t, f, pk1, "dev1", "127.0.0.1:1"); a.Host != "sg-1.example" {
		t.Fatalf("first: %+v", a)
	}
	if _, err := f.svc.PutInstance(ctx, f.admin, distribution.InstanceInput{ID: "sg-1", Region: "ap-southeast-1", MQTT: "sg-new.example:1883"}, true); err != nil {
		t.Fatal(err)
	}
	if a := bootstrap(t, f, pk1, "dev1", "127.0.0.1:1"); a.Host != "sg-new.example" {
		t.Fatalf("after the instance changed: %+v", a)
	}
	pol.Fallback = "cn-shanghai"
	if _, err := f.svc.PutPolicy(ctx, f.admin, pol, true); err != nil {
		t.Fatal(err)
	}
	if a := bootstrap(t, f, pk1, "dev1", "127.0.0.1:1"); a.Host != "centre.example" {
		t.Fatalf("after the policy changed: %+v", a)
	}
}

// TestBootstrapRecordCache: bootstraps cache a device's record, found or
// not; this node's writes (the API's, a job's through RecordStore, a
// delete) show at once, a write straight to the store (another node's)
// within the cache's TTL.
func TestBootstrapRecordCache(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.addInstance(t, "sg-1", "ap-southeast-1")
	f.addInstance(t, "fra", "eu-central-1")
	steps := []struct {
		name  string
		write func(t *testing.T)
		host  string
	}{
		{"no record: the default, cached as a miss", func(*testing.T) {}, "centre.example"},
		{"a record set after the miss", func(t *testing.T) {
			if _, err := f.svc.SetRecord(ctx, f.admin, pk1, "dev1", distribution.RecordInput{TargetIotInstanceID: "sg-1"}); err != nil {
				t.Fatal(err)
			}
		}, "sg-1.example"},
		{"a job's move through RecordStore", func(t *testing.T) {
			r, err := f.svc.RecordStore().GetRecord(ctx, pk1, "dev1")
			if err != nil {
				t.Fatal(err)
			}
			r.TargetIotInstanceID, r.TargetRegion = "fra", "eu-central-1"
			if err := f.svc.RecordStore().PutRecord(ctx, r); err != nil {
				t.Fatal(err)
			}
		}, "fra.example"},
		{"the record deleted", func(t *testing.T) {
			if err := f.svc.DeleteRecord(ctx, f.admin, pk1, "dev1"); err != nil {
				t.Fatal(err)
			}
		}, "centre.example"},
		{"another node's write: stale within the TTL", func(t *testing.T) {
			if err := f.store.PutRecord(ctx, distribution.Record{ProductKey: pk1, DeviceName: "dev1", AccountID: "a1",
				TargetIotInstanceID: "sg-1", TargetRegion: "ap-southeast-1"}); err != nil {
				t.Fatal(err)
			}
		}, "centre.example"},
		{"another node's write: seen past the TTL", func(*testing.T) { f.advance(31 * time.Second) }, "sg-1.example"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.write(t)
			for range 2 { // the first reads the store, the second the cache
				if a := bootstrap(t, f, pk1, "dev1", "127.0.0.1:1"); a.Host != st.host {
					t.Fatalf("answer %+v, want host %s", a, st.host)
				}
			}
		})
	}
}
