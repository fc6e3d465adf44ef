// Package storetest is the conformance suite every store adapter passes:
// the behaviour the registry and audit packages rely on, run against a
// real store (SQLite today; PostgreSQL next).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
	"github.com/corral-iot/corral/internal/shadowsvc"
)

// Store is everything an adapter implements.
type Store interface {
	registry.Store
	audit.Store
	shadow.Store
	shadowsvc.SettingsStore
	distribution.Store
	jobs.Store
	jobs.CodeStore
}

// Run runs the suite; open returns a fresh, empty store for each test.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"accounts", testAccounts},
		{"products", testProducts},
		{"devices all or nothing", testDevicesAtomic},
		{"device listing", testListDevices},
		{"device name prefixes are literal", testPrefixLiteral},
		{"device updates", testUpdateDevice},
		{"api keys", testAPIKeys},
		{"thing names", testThingNames},
		{"presence", testPresence},
		{"registration primitives", testProvisioning},
		{"registration randoms", testRandoms},
		{"registered device and its random in one write", testCreateRegisteredDevice},
		{"topology", testTopology},
		{"thing models and properties", testThings},
		{"topic classes", testTopicClasses},
		{"desired values", testDesired},
		{"a deleted device's values go with it", testDeleteDeviceValues},
		{"configuration files", testProductConfig},
		{"found sub-devices", testFound},
		{"shadows", testShadows},
		{"shadows in a batch", testPutShadows},
		{"shadow history of any size", testShadowHistorySizes},
		{"shadow settings", testShadowSettings},
		{"audit", testAudit},
		{"distribution instances", testDistInstances},
		{"distribution records and policies", testDistRecords},
		{"distribution jobs", testDistJobs},
		{"distribution codes and grants", testDistCodes},
		{"devices distributed", testDeviceDistributed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

var (
	ctx = context.Background()
	t0  = time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
)

func seed(t *testing.T, s Store) registry.Product {
	t.Helper()
	if err := s.CreateAccount(ctx, registry.Account{ID: "acc1", Name: "one", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	p := registry.Product{AccountID: "acc1", ProductKey: "PK000000001", Name: "p", NodeType: registry.NodeGateway, AuthType: registry.AuthSecret,
		DynReg: registry.DynRegAuto, Attributes: map[string]string{"a": "b"}, CreatedAt: t0}
	if err := s.CreateProduct(ctx, p, []byte("sealed-product")); err != nil {
		t.Fatal(err)
	}
	return p
}

func dev(p registry.Product, name string) registry.Device {
	return registry.Device{AccountID: p.AccountID, ProductKey: p.ProductKey, DeviceName: name, IotID: "iot-" + name,
		SealedSecret: []byte("sealed-" + name), Status: registry.StatusInactive, Attributes: map[string]string{}, CreatedAt: t0}
}

func testAccounts(t *testing.T, s Store) {
	a := registry.Account{ID: "acc1", Name: "one", CreatedAt: t0}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, a); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("duplicate account: %v", err)
	}
	got, err := s.GetAccount(ctx, "acc1")
	if err != nil || got.Name != "one" || !got.CreatedAt.Equal(t0.Truncate(time.Millisecond)) {
		t.Fatalf("GetAccount = %+v, %v", got, err)
	}
	if _, err := s.GetAccount(ctx, "nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("missing account: %v", err)
	}
	s.CreateAccount(ctx, registry.Account{ID: "acc0", Name: "zero", CreatedAt: t0})
	all, _ := s.ListAccounts(ctx)
	if len(all) != 2 || all[0].ID != "acc0" {
		t.Fatalf("ListAccounts = %+v", all)
	}
}

func testProducts(t *testing.T, s Store) {
	p := seed(t, s)
	got, sealed, err := s.GetProduct(ctx, p.ProductKey)
	if err != nil || string(sealed) != "sealed-product" || got.Name != "p" || got.NodeType != registry.NodeGateway || got.Attributes["a"] != "b" {
		t.Fatalf("GetProduct = %+v %q %v", got, sealed, err)
	}
	if err := s.CreateProduct(ctx, p, []byte("x")); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("duplicate product: %v", err)
	}
	s.CreateAccount(ctx, registry.Account{ID: "acc2", CreatedAt: t0})
	for i := 2; i <= 5; i++ {
		q := p
		q.ProductKey = fmt.Sprintf("PK00000000%d", i)
		if i == 5 {
			q.AccountID = "acc2"
		}
		s.CreateProduct(ctx, q, []byte("x"))
	}
	page, _ := s.ListProducts(ctx, "acc1", "", 2)
	next, _ := s.ListProducts(ctx, "acc1", page[len(page)-1].ProductKey, 10)
	if len(page) != 2 || len(next) != 2 || next[0].ProductKey != "PK000000003" {
		t.Fatalf("ListProducts pages %v / %v", page, next)
	}
	p.Name, p.DynReg, p.ConnectWindow = "renamed", registry.DynRegWhitelist, 60
	p.Provisioning = registry.Provisioning{ReRegister: registry.ReRegisterRotate, Allow: []string{"SN-.*"}}
	if err := s.UpdateProduct(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.GetProduct(ctx, p.ProductKey)
	if got.Name != "renamed" || got.DynReg != registry.DynRegWhitelist || got.ConnectWindow != 60 || got.Provisioning.ReRegister != registry.ReRegisterRotate {
		t.Fatalf("after update: %+v", got)
	}
	s.CreateDevices(ctx, []registry.Device{dev(p, "d1")})
	if err := s.DeleteProduct(ctx, p.ProductKey); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetProduct(ctx, p.ProductKey); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted product: %v", err)
	}
	if _, err := s.GetDevice(ctx, p.ProductKey, "d1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("device of a deleted product: %v", err)
	}
}

func testDevicesAtomic(t *testing.T, s Store) {
	p := seed(t, s)
	if err := s.CreateDevices(ctx, []registry.Device{dev(p, "a1"), dev(p, "a2")}); err != nil {
		t.Fatal(err)
	}
	err := s.CreateDevices(ctx, []registry.Device{dev(p, "b1"), dev(p, "a2"), dev(p, "b3")})
	if !errors.Is(err, registry.ErrConflict) || !contains(err.Error(), "a2") {
		t.Fatalf("batch with a duplicate: %v", err)
	}
	for _, n := range []string{"b1", "b3"} {
		if _, err := s.GetDevice(ctx, p.ProductKey, n); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("%s was created by a failed batch", n)
		}
	}
	d, err := s.GetDevice(ctx, p.ProductKey, "a1")
	if err != nil || string(d.SealedSecret) != "sealed-a1" || d.IotID != "iot-a1" || d.AccountID != "acc1" {
		t.Fatalf("GetDevice = %+v %v", d, err)
	}
	a, err := s.GetDeviceAuth(ctx, p.ProductKey, "a1")
	if err != nil || a.AccountID != "acc1" || a.Status != registry.StatusInactive || string(a.SealedSecret) != "sealed-a1" {
		t.Fatalf("GetDeviceAuth = %+v %v", a, err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func testListDevices(t *testing.T, s Store) {
	p := seed(t, s)
	var ds []registry.Device
	for i := 0; i < 25; i++ {
		d := dev(p, fmt.Sprintf("dev-%02d", i))
		if i%5 == 0 {
			d.Status = registry.StatusDisabled
		}
		if i < 3 {
			d.Attributes = map[string]string{"site": "north"}
		}
		ds = append(ds, d)
	}
	lit := dev(p, "dev_x")
	ds = append(ds, lit)
	if err := s.CreateDevices(ctx, ds); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	after := ""
	for {
		page, err := s.ListDevices(ctx, registry.DeviceFilter{ProductKey: p.ProductKey, After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			if seen[d.DeviceName] {
				t.Fatalf("%s twice", d.DeviceName)
			}
			seen[d.DeviceName] = true
		}
		if len(page) < 7 {
			break
		}
		after = page[len(page)-1].DeviceName
	}
	if len(seen) != 26 {
		t.Fatalf("paged %d of 26", len(seen))
	}
	count := func(f registry.DeviceFilter) int {
		f.ProductKey, f.Limit = p.ProductKey, 100
		got, err := s.ListDevices(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := count(registry.DeviceFilter{Status: registry.StatusDisabled}); n != 5 {
		t.Fatalf("status filter: %d", n)
	}
	if n := count(registry.DeviceFilter{NamePrefix: "dev_"}); n != 1 {
		t.Fatalf("'_' in a prefix must be literal: %d", n)
	}
	if n := count(registry.DeviceFilter{NamePrefix: "dev-1"}); n != 10 {
		t.Fatalf("prefix filter: %d", n)
	}
	if n := count(registry.DeviceFilter{AttrKey: "site", AttrValue: "north"}); n != 3 {
		t.Fatalf("attribute filter: %d", n)
	}
}

// testPrefixLiteral pins that a name prefix is matched as written: the
// wildcards of SQL LIKE (and its usual escape character) in it match only
// themselves, and case counts (SQLite's LIKE ignores it, PostgreSQL's
// does not), whatever the adapter builds its query from.
func testPrefixLiteral(t *testing.T, s Store) {
	p := seed(t, s)
	var ds []registry.Device
	for _, n := range []string{"abc1", "abc2", "a%c1", "a_c1", `a\c1`, `a\\c1`, "xbc1", "ABD1"} {
		ds = append(ds, dev(p, n))
	}
	if err := s.CreateDevices(ctx, ds); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"%", nil},
		{"_", nil},
		{"a%", []string{"a%c1"}},
		{"a_", []string{"a_c1"}},
		{"%bc", nil},
		{"_bc", nil},
		{`a\`, []string{`a\\c1`, `a\c1`}},
		{`a\c`, []string{`a\c1`}},
		{`a\%`, nil},
		{"abc", []string{"abc1", "abc2"}},
		{"ABC", nil}, // names are case-sensitive, and so are prefixes
		{"Abc1", nil},
	} {
		got, err := s.ListDevices(ctx, registry.DeviceFilter{ProductKey: p.ProductKey, NamePrefix: tt.prefix, Limit: 100})
		if err != nil {
			t.Fatalf("prefix %q: %v", tt.prefix, err)
		}
		var names []string
		for _, d := range got {
			names = append(names, d.DeviceName)
		}
		if fmt.Sprint(names) != fmt.Sprint(tt.want) {
			t.Errorf("prefix %q listed %q, want %q", tt.prefix, names, tt.want)
		}
	}
}

func testUpdateDevice(t *testing.T, s Store) {
	p := seed(t, s)
	d := dev(p, "u1")
	s.CreateDevices(ctx, []registry.Device{d})
	// The device is read, then a session starts, then the read copy is
	// written back: the update must not undo the presence that came in
	// between (UpdateDevice never writes status or online times).
	stale, _ := s.GetDevice(ctx, p.ProductKey, "u1")
	on := t0.Add(time.Hour).Truncate(time.Millisecond)
	if err := s.ApplyPresence(ctx, []registry.Presence{{ProductKey: p.ProductKey, DeviceName: "u1", Online: true, At: on}}); err != nil {
		t.Fatal(err)
	}
	d = stale
	d.Nickname, d.SecretIssued = "nick", true
	d.Status, d.FirstOnline, d.LastOnline = registry.StatusInactive, nil, nil
	d.Attributes = map[string]string{"k": "v"}
	d.CertFingerprint = "ab12"
	if err := s.UpdateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetDevice(ctx, p.ProductKey, "u1")
	if got.Status != registry.StatusOnline || got.Nickname != "nick" || !got.SecretIssued || got.FirstOnline == nil || !got.FirstOnline.Equal(on) || got.Attributes["k"] != "v" {
		t.Fatalf("after update: %+v", got)
	}
	// Disable and enable own the status: enabling returns a device that was
	// online to offline, one never seen to inactive; a missing device is
	// ErrNotFound.
	for _, tt := range []struct {
		dn       string
		disabled bool
		want     registry.Status
	}{
		{"u1", true, registry.StatusDisabled},
		{"u1", true, registry.StatusDisabled},
		{"u1", false, registry.StatusOffline},
		{"u1", false, registry.StatusOffline},
	} {
		st, err := s.SetDeviceDisabled(ctx, p.ProductKey, tt.dn, tt.disabled)
		if err != nil || st != tt.want {
			t.Fatalf("SetDeviceDisabled(%s, %v) = %q, %v; want %q", tt.dn, tt.disabled, st, err, tt.want)
		}
		if got, _ := s.GetDevice(ctx, p.ProductKey, tt.dn); got.Status != tt.want {
			t.Fatalf("after SetDeviceDisabled(%s, %v): status %q, want %q", tt.dn, tt.disabled, got.Status, tt.want)
		}
	}
	// A disabled device stays disabled when a session's presence or a
	// stale update lands after the disable.
	if _, err := s.SetDeviceDisabled(ctx, p.ProductKey, "u1", true); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyPresence(ctx, []registry.Presence{{ProductKey: p.ProductKey, DeviceName: "u1", Online: true, At: on.Add(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateDevice(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetDevice(ctx, p.ProductKey, "u1"); got.Status != registry.StatusDisabled {
		t.Fatalf("disabled device after presence and a stale update: %q", got.Status)
	}
	if _, err := s.SetDeviceDisabled(ctx, p.ProductKey, "ghost", true); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("disabling a missing device: %v", err)
	}
	never := dev(p, "u3")
	s.CreateDevices(ctx, []registry.Device{never})
	s.SetDeviceDisabled(ctx, p.ProductKey, "u3", true)
	if st, err := s.SetDeviceDisabled(ctx, p.ProductKey, "u3", false); err != nil || st != registry.StatusInactive {
		t.Fatalf("enabling a device never seen: %q, %v", st, err)
	}
	byFP, err := s.GetDeviceByFingerprint(ctx, "ab12")
	if err != nil || byFP.DeviceName != "u1" {
		t.Fatalf("by fingerprint: %+v %v", byFP, err)
	}
	other := dev(p, "u2")
	s.CreateDevices(ctx, []registry.Device{other})
	other.CertFingerprint = "ab12"
	if err := s.UpdateDevice(ctx, other); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("one certificate bound twice: %v", err)
	}
	if err := s.UpdateDevice(ctx, dev(p, "ghost")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("update of a missing device: %v", err)
	}
	if err := s.DeleteDevice(ctx, p.ProductKey, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDevice(ctx, p.ProductKey, "u1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func testThingNames(t *testing.T, s Store) {
	p := seed(t, s)
	a, b := dev(p, "t1"), dev(p, "t2")
	a.ThingName = "factory-7"
	if err := s.CreateDevices(ctx, []registry.Device{a, b}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetDevice(ctx, p.ProductKey, "t2")
	if err != nil || got.ThingName != registry.DefaultThingName(p.ProductKey, "t2") {
		t.Fatalf("default thing name: %+v %v", got, err)
	}
	byName, err := s.GetDeviceByThingName(ctx, "factory-7")
	if err != nil || byName.DeviceName != "t1" || byName.ThingName != "factory-7" {
		t.Fatalf("by thing name: %+v %v", byName, err)
	}
	if auth, err := s.GetDeviceAuth(ctx, p.ProductKey, "t1"); err != nil || auth.ThingName != "factory-7" {
		t.Fatalf("GetDeviceAuth thing name: %+v %v", auth, err)
	}
	// Default names are not stored as explicit ones.
	if _, err := s.GetDeviceByThingName(ctx, registry.DefaultThingName(p.ProductKey, "t2")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a default name found as explicit: %v", err)
	}
	// Unique across the instance, in a batch and on update.
	c := dev(p, "t3")
	c.ThingName = "factory-7"
	if err := s.CreateDevices(ctx, []registry.Device{c}); !errors.Is(err, registry.ErrConflict) || !contains(err.Error(), "thing name") {
		t.Fatalf("taken thing name on create: %v", err)
	}
	got.ThingName = "factory-7"
	if err := s.UpdateDevice(ctx, got); !errors.Is(err, registry.ErrConflict) || !contains(err.Error(), "thing name") {
		t.Fatalf("taken thing name on update: %v", err)
	}
	// Renaming frees the old name; back to the default clears it.
	a.ThingName = "factory-8"
	if err := s.UpdateDevice(ctx, a); err != nil {
		t.Fatal(err)
	}
	got.ThingName = "factory-7"
	if err := s.UpdateDevice(ctx, got); err != nil {
		t.Fatalf("a freed thing name: %v", err)
	}
	a.ThingName = registry.DefaultThingName(p.ProductKey, "t1")
	if err := s.UpdateDevice(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDeviceByThingName(ctx, "factory-8"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("cleared thing name still found: %v", err)
	}
	if err := s.DeleteDevice(ctx, p.ProductKey, "t2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDeviceByThingName(ctx, "factory-7"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a deleted device's thing name: %v", err)
	}
}

func testAPIKeys(t *testing.T, s Store) {
	seed(t, s)
	k := registry.APIKey{ID: "ck1", AccountID: "acc1", Name: "n", Role: registry.RoleOperator, Hash: []byte("hash"), CreatedAt: t0}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(ctx, k); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("duplicate key: %v", err)
	}
	got, err := s.GetAPIKey(ctx, "ck1")
	if err != nil || string(got.Hash) != "hash" || got.Role != registry.RoleOperator {
		t.Fatalf("GetAPIKey = %+v %v", got, err)
	}
	list, _ := s.ListAPIKeys(ctx, "acc1")
	if len(list) != 1 || list[0].Hash != nil {
		t.Fatalf("listing shows hashes or misses keys: %+v", list)
	}
	if err := s.DeleteAPIKey(ctx, "ck1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAPIKey(ctx, "ck1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := s.DeleteAPIKey(ctx, "ck1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if err := s.SetAPIKeyRole(ctx, "ck1", registry.RoleAdmin); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("changing a missing key: %v", err)
	}

	// The last admin key of an account stays an admin key.
	a1 := registry.APIKey{ID: "ckA1", AccountID: "acc1", Name: "a", Role: registry.RoleAdmin, Hash: []byte("h"), CreatedAt: t0}
	a2 := registry.APIKey{ID: "ckA2", AccountID: "acc1", Name: "b", Role: registry.RoleOperator, Hash: []byte("h"), CreatedAt: t0}
	for _, k := range []registry.APIKey{a1, a2} {
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteAPIKey(ctx, "ckA1"); !errors.Is(err, registry.ErrLastAdmin) || !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("deleting the last admin key: %v", err)
	}
	if err := s.SetAPIKeyRole(ctx, "ckA1", registry.RoleReadonly); !errors.Is(err, registry.ErrLastAdmin) {
		t.Fatalf("demoting the last admin key: %v", err)
	}
	if err := s.SetAPIKeyRole(ctx, "ckA1", registry.RoleAdmin); err != nil {
		t.Fatalf("keeping the role: %v", err)
	}
	if err := s.SetAPIKeyRole(ctx, "ckA2", registry.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAPIKeyRole(ctx, "ckA1", registry.RoleReadonly); err != nil {
		t.Fatalf("demoting one of two admin keys: %v", err)
	}
	if got, _ := s.GetAPIKey(ctx, "ckA1"); got.Role != registry.RoleReadonly {
		t.Fatalf("role after SetAPIKeyRole = %q", got.Role)
	}
	if err := s.DeleteAPIKey(ctx, "ckA2"); !errors.Is(err, registry.ErrLastAdmin) {
		t.Fatalf("deleting the last admin key: %v", err)
	}
	if err := s.DeleteAPIKey(ctx, "ckA1"); err != nil {
		t.Fatalf("deleting a readonly key: %v", err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.Accounts != 1 || st.Products != 1 {
		t.Fatalf("Stats = %+v %v", st, err)
	}
}

func testPresence(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "p1"), dev(p, "p2")})
	t1, t2 := t0.Add(time.Minute).Truncate(time.Millisecond), t0.Add(2*time.Minute).Truncate(time.Millisecond)
	err := s.ApplyPresence(ctx, []registry.Presence{
		{ProductKey: p.ProductKey, DeviceName: "p1", Online: true, At: t1},
		{ProductKey: p.ProductKey, DeviceName: "p2", Online: false, At: t2, ConnectedAt: t1},
		{ProductKey: p.ProductKey, DeviceName: "ghost", Online: true, At: t1},
	})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := s.GetDevice(ctx, p.ProductKey, "p1")
	d2, _ := s.GetDevice(ctx, p.ProductKey, "p2")
	if d1.Status != registry.StatusOnline || !d1.FirstOnline.Equal(t1) || d2.Status != registry.StatusOffline || !d2.FirstOnline.Equal(t1) || !d2.LastOnline.Equal(t2) {
		t.Fatalf("presence: %+v / %+v", d1, d2)
	}
	if n, err := s.ResetPresence(ctx, t2); err != nil || n != 1 {
		t.Fatalf("ResetPresence = %d, %v", n, err)
	}
}

func testProvisioning(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "r1")})
	first, err := s.IssueSecret(ctx, p.ProductKey, "r1")
	again, _ := s.IssueSecret(ctx, p.ProductKey, "r1")
	if err != nil || !first || again {
		t.Fatalf("IssueSecret = %v, %v (again %v)", first, err, again)
	}
	if err := s.SetDeviceSecret(ctx, p.ProductKey, "r1", []byte("new")); err != nil {
		t.Fatal(err)
	}
	d, _ := s.GetDevice(ctx, p.ProductKey, "r1")
	if string(d.SealedSecret) != "new" {
		t.Fatal("secret not replaced")
	}
	s.SetDeviceToken(ctx, p.ProductKey, "r1", "cid", []byte("th"))
	cid, th, err := s.DeviceToken(ctx, p.ProductKey, "r1")
	if err != nil || cid != "cid" || string(th) != "th" {
		t.Fatalf("DeviceToken = %q %q %v", cid, th, err)
	}
	s.SetRegistrationKey(ctx, p.ProductKey, []byte("k1"))
	s.SetRegistrationKey(ctx, p.ProductKey, []byte("k2")) // never replaces
	if k, _ := s.RegistrationKey(ctx, p.ProductKey); string(k) != "k1" {
		t.Fatalf("registration key %q", k)
	}
}

func testTopology(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "gw"), dev(p, "s1"), dev(p, "s2")})
	prev, err := s.SetGateway(ctx, "PK000000001/gw", [][2]string{{p.ProductKey, "s1"}, {p.ProductKey, "s2"}})
	if err != nil || prev[0] != "" {
		t.Fatalf("SetGateway = %v %v", prev, err)
	}
	prev, _ = s.SetGateway(ctx, "PK000000001/gw2", [][2]string{{p.ProductKey, "s1"}})
	if prev[0] != "PK000000001/gw" {
		t.Fatalf("move reports %v", prev)
	}
	subs, _ := s.Subdevices(ctx, "PK000000001/gw")
	if len(subs) != 1 || subs[0].DeviceName != "s2" {
		t.Fatalf("Subdevices = %+v", subs)
	}
	if _, err := s.SetGateway(ctx, "x", [][2]string{{p.ProductKey, "s2"}, {p.ProductKey, "ghost"}}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown sub-device: %v", err)
	}
	if subs, _ := s.Subdevices(ctx, "PK000000001/gw"); len(subs) != 1 {
		t.Fatal("a failed SetGateway changed the topology")
	}
	// Deleting a gateway detaches its sub-devices; so does deleting its product.
	if err := s.DeleteDevice(ctx, p.ProductKey, "gw"); err != nil {
		t.Fatal(err)
	}
	if subs, _ := s.Subdevices(ctx, "PK000000001/gw"); len(subs) != 0 {
		t.Fatalf("sub-devices still attached to a deleted gateway: %+v", subs)
	}
	if d, _ := s.GetDevice(ctx, p.ProductKey, "s2"); d.Gateway != "" {
		t.Fatalf("s2 keeps gateway %q", d.Gateway)
	}
	other := registry.Product{AccountID: "acc1", ProductKey: "PK000000002", Name: "sub", NodeType: registry.NodeSubdevice, AuthType: registry.AuthSecret, CreatedAt: t0}
	if err := s.CreateProduct(ctx, other, []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	s.CreateDevices(ctx, []registry.Device{dev(other, "o1")})
	s.SetGateway(ctx, "PK000000001/gw2", [][2]string{{other.ProductKey, "o1"}})
	if err := s.DeleteProduct(ctx, p.ProductKey); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.GetDevice(ctx, other.ProductKey, "o1"); d.Gateway != "" {
		t.Fatalf("o1 keeps gateway %q of a deleted product", d.Gateway)
	}
}

func testThings(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "t1")})
	if err := s.SetTSL(ctx, p.ProductKey, []byte(`{"properties":[]}`)); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.TSL(ctx, p.ProductKey); string(m) != `{"properties":[]}` {
		t.Fatalf("TSL = %s", m)
	}
	at := t0.Truncate(time.Millisecond)
	s.SaveProperties(ctx, p.ProductKey, "t1", []registry.PropertyValue{{Identifier: "a", Value: []byte("1"), Time: at}, {Identifier: "b", Value: []byte(`"x"`), Time: at}})
	s.SaveProperties(ctx, p.ProductKey, "t1", []registry.PropertyValue{{Identifier: "a", Value: []byte("2"), Time: at}})
	ps, err := s.Properties(ctx, p.ProductKey, "t1")
	if err != nil || len(ps) != 2 || string(ps[0].Value) != "2" || string(ps[1].Value) != `"x"` {
		t.Fatalf("Properties = %+v %v", ps, err)
	}
}

func testDesired(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "d1"), dev(p, "d2")})
	at := t0.Truncate(time.Millisecond)
	set := func(vs ...registry.DesiredValue) func([]registry.DesiredValue) ([]registry.DesiredValue, error) {
		return func([]registry.DesiredValue) ([]registry.DesiredValue, error) { return vs, nil }
	}
	if err := s.UpdateDesired(ctx, p.ProductKey, "d1", set(
		registry.DesiredValue{Identifier: "b", Value: []byte(`"x"`), Version: 1, Time: at},
		registry.DesiredValue{Identifier: "a", Value: []byte("25"), Version: 3, Time: at, Delivered: 2})); err != nil {
		t.Fatal(err)
	}
	got, err := s.Desired(ctx, p.ProductKey, "d1")
	if err != nil || len(got) != 2 || got[0].Identifier != "a" || string(got[0].Value) != "25" || got[0].Version != 3 || got[0].Delivered != 2 ||
		!got[0].Time.Equal(at) || got[1].Identifier != "b" || got[1].Version != 1 {
		t.Fatalf("Desired = %+v %v; want a (v3, delivered 2) then b (v1)", got, err)
	}
	// fn sees the current values, sorted; its error changes nothing.
	boom := errors.New("boom")
	err = s.UpdateDesired(ctx, p.ProductKey, "d1", func(cur []registry.DesiredValue) ([]registry.DesiredValue, error) {
		if len(cur) != 2 || cur[0].Identifier != "a" {
			t.Errorf("fn got %+v", cur)
		}
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
	if got, _ := s.Desired(ctx, p.ProductKey, "d1"); len(got) != 2 {
		t.Fatalf("after a failed update: %+v", got)
	}
	// Devices are separate; an empty result clears.
	if got, _ := s.Desired(ctx, p.ProductKey, "d2"); got == nil || len(got) != 0 {
		t.Fatalf("another device: %+v; want empty and non-nil", got)
	}
	// UndeliveredDesired lists the devices with a version not delivered:
	// d1 (b), not d2 whose only value is delivered.
	if err := s.UpdateDesired(ctx, p.ProductKey, "d2", set(
		registry.DesiredValue{Identifier: "a", Value: []byte("1"), Version: 2, Time: at, Delivered: 2})); err != nil {
		t.Fatal(err)
	}
	undelivered := func() []string {
		var out []string
		if err := s.UndeliveredDesired(ctx, func(pk, dn string) { out = append(out, pk+"/"+dn) }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := undelivered(); len(got) != 1 || got[0] != p.ProductKey+"/d1" {
		t.Fatalf("UndeliveredDesired = %v; want d1 only", got)
	}
	if err := s.UpdateDesired(ctx, p.ProductKey, "d1", set()); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Desired(ctx, p.ProductKey, "d1"); len(got) != 0 {
		t.Fatalf("after clearing: %+v", got)
	}
	if got := undelivered(); len(got) != 0 {
		t.Fatalf("UndeliveredDesired after clearing d1 = %v; want none", got)
	}
}

func testDeleteDeviceValues(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "gone")})
	at := t0.Truncate(time.Millisecond)
	s.SaveProperties(ctx, p.ProductKey, "gone", []registry.PropertyValue{{Identifier: "a", Value: []byte("1"), Time: at}})
	s.UpdateDesired(ctx, p.ProductKey, "gone", func([]registry.DesiredValue) ([]registry.DesiredValue, error) {
		return []registry.DesiredValue{{Identifier: "a", Value: []byte("2"), Version: 1, Time: at}}, nil
	})
	if err := s.DeleteDevice(ctx, p.ProductKey, "gone"); err != nil {
		t.Fatal(err)
	}
	s.CreateDevices(ctx, []registry.Device{dev(p, "gone")})
	ps, _ := s.Properties(ctx, p.ProductKey, "gone")
	ds, _ := s.Desired(ctx, p.ProductKey, "gone")
	if len(ps) != 0 || len(ds) != 0 {
		t.Fatalf("a device made again under a deleted one's name has its values: properties %+v, desired %+v", ps, ds)
	}
}

func testProductConfig(t *testing.T, s Store) {
	p := seed(t, s)
	if _, err := s.ProductConfig(ctx, p.ProductKey); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("no file yet: %v; want ErrNotFound", err)
	}
	at := t0.Truncate(time.Millisecond)
	for _, c := range []registry.ProductConfig{
		{ConfigID: "c1", Content: []byte("a=1"), Sign: "s1", CreatedAt: at},
		{ConfigID: "c2", Content: []byte("a=2\nb=3"), Sign: "s2", CreatedAt: at.Add(time.Second)},
	} {
		if err := s.SetProductConfig(ctx, p.ProductKey, c); err != nil {
			t.Fatal(err)
		}
		got, err := s.ProductConfig(ctx, p.ProductKey)
		if err != nil || got.ConfigID != c.ConfigID || string(got.Content) != string(c.Content) || got.Size != len(c.Content) ||
			got.Sign != c.Sign || got.SignMethod != "Sha256" || !got.CreatedAt.Equal(c.CreatedAt) {
			t.Fatalf("ProductConfig = %+v %v; want %+v", got, err, c)
		}
	}
	if err := s.DeleteProduct(ctx, p.ProductKey); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ProductConfig(ctx, p.ProductKey); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a deleted product's file: %v; want ErrNotFound", err)
	}
}

func testFound(t *testing.T, s Store) {
	p := seed(t, s)
	gw := registry.GatewayKey(p.ProductKey, "gw-1")
	if err := s.CreateDevices(ctx, []registry.Device{dev(p, "gw-1")}); err != nil {
		t.Fatal(err)
	}
	names := func() string {
		t.Helper()
		fs, err := s.ListFound(ctx, gw)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range fs {
			out = append(out, f.ProductKey+"/"+f.DeviceName+"@"+fmt.Sprint(f.FoundAt.Sub(t0.Truncate(time.Millisecond)).Seconds()))
		}
		return strings.Join(out, ",")
	}
	at := func(sec int) time.Time { return t0.Truncate(time.Millisecond).Add(time.Duration(sec) * time.Second) }
	found := func(sec int, dns ...string) []registry.FoundDevice {
		var fs []registry.FoundDevice
		for _, dn := range dns {
			fs = append(fs, registry.FoundDevice{ProductKey: "a1Sub", DeviceName: dn, FoundAt: at(sec)})
		}
		return fs
	}
	for _, step := range []struct {
		name string
		do   func() error
		want string
	}{
		{"none", func() error { return nil }, ""},
		{"two", func() error { return s.AddFound(ctx, gw, found(1, "s1", "s2"), 3) }, "a1Sub/s1@1,a1Sub/s2@1"},
		{"again, later", func() error { return s.AddFound(ctx, gw, found(2, "s1"), 3) }, "a1Sub/s2@1,a1Sub/s1@2"},
		{"past the cap the oldest go", func() error { return s.AddFound(ctx, gw, found(3, "s3", "s4"), 3) }, "a1Sub/s1@2,a1Sub/s3@3,a1Sub/s4@3"},
		{"another gateway's are apart", func() error { return s.AddFound(ctx, gw+"x", found(4, "s9"), 3) }, "a1Sub/s1@2,a1Sub/s3@3,a1Sub/s4@3"},
		{"remove", func() error { return s.RemoveFound(ctx, gw, [][2]string{{"a1Sub", "s3"}, {"a1Sub", "nope"}}) }, "a1Sub/s1@2,a1Sub/s4@3"},
		{"a deleted gateway's go", func() error { return s.DeleteDevice(ctx, p.ProductKey, "gw-1") }, ""},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := names(); got != step.want {
			t.Fatalf("%s: found %q, want %q", step.name, got, step.want)
		}
	}
	if err := s.AddFound(ctx, gw, found(5, "s5"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteProduct(ctx, p.ProductKey); err != nil {
		t.Fatal(err)
	}
	if got := names(); got != "" {
		t.Fatalf("a deleted product's gateways' found: %q", got)
	}
}

func testShadowSettings(t *testing.T, s Store) {
	p := seed(t, s)
	if raw, err := s.ShadowSettings(ctx, p.ProductKey); raw != nil || err != nil {
		t.Fatalf("none stored: %q %v; want nil, nil", raw, err)
	}
	for _, v := range []string{`{"history":3}`, `{"history":4,"presence":false}`} {
		if err := s.SetShadowSettings(ctx, p.ProductKey, []byte(v)); err != nil {
			t.Fatal(err)
		}
		if raw, err := s.ShadowSettings(ctx, p.ProductKey); string(raw) != v || err != nil {
			t.Fatalf("ShadowSettings = %q %v; want %s", raw, err, v)
		}
	}
	if err := s.DeleteProduct(ctx, p.ProductKey); err != nil {
		t.Fatal(err)
	}
	if raw, err := s.ShadowSettings(ctx, p.ProductKey); raw != nil || err != nil {
		t.Fatalf("a deleted product's settings: %q %v; want nil, nil", raw, err)
	}
}

func testShadows(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "sh1")})
	classic := shadow.Key{ProductKey: p.ProductKey, DeviceName: "sh1"}
	at := t0.Truncate(time.Millisecond)
	doc := func(v int64) shadow.Stored {
		return shadow.Stored{Doc: []byte(fmt.Sprintf(`{"state":{"reported":{"v":%d}},"version":%d}`, v, v)), Version: v, UpdatedAt: at.Add(time.Duration(v) * time.Second)}
	}
	if _, err := s.GetShadow(ctx, classic); !errors.Is(err, shadow.ErrNoShadow) {
		t.Fatalf("none yet: %v", err)
	}
	if err := s.PutShadow(ctx, classic, 0, doc(1), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.PutShadow(ctx, classic, 0, doc(1), 2); !errors.Is(err, shadow.ErrStale) {
		t.Fatalf("a second create: %v; want ErrStale", err)
	}
	for v := int64(2); v <= 3; v++ {
		if err := s.PutShadow(ctx, classic, v-1, doc(v), 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutShadow(ctx, classic, 1, doc(9), 2); !errors.Is(err, shadow.ErrStale) {
		t.Fatalf("a write on a stale version: %v", err)
	}
	got, err := s.GetShadow(ctx, classic)
	if err != nil || got.Version != 3 || string(got.Doc) != string(doc(3).Doc) || !got.UpdatedAt.Equal(doc(3).UpdatedAt) || got.Deleted {
		t.Fatalf("GetShadow = %+v %v; want version 3", got, err)
	}
	hist, err := s.ShadowHistory(ctx, classic, 0)
	if err != nil || len(hist) != 2 || hist[0].Version != 2 || hist[1].Version != 3 {
		t.Fatalf("history keeping 2: %+v %v; want versions 2, 3", hist, err)
	}
	if hist, _ := s.ShadowHistory(ctx, classic, 2); len(hist) != 1 || hist[0].Version != 3 {
		t.Fatalf("history since 2: %+v", hist)
	}
	// The newest keep versions are kept whatever the gaps between them
	// (an Alibaba update sets its own version) and whatever keep was.
	gaps := shadow.Key{ProductKey: p.ProductKey, DeviceName: "sh1", Name: "gaps"}
	for _, st := range []struct {
		prev, v int64
		keep    int
		want    []int64
	}{
		{0, 1, 3, []int64{1}},
		{1, 5, 3, []int64{1, 5}},
		{5, 6, 3, []int64{1, 5, 6}},
		{6, 20, 3, []int64{5, 6, 20}},
		{20, 21, 1, []int64{21}},
		{21, 22, 4, []int64{21, 22}},
		{22, 40, 2, []int64{22, 40}},
	} {
		if err := s.PutShadow(ctx, gaps, st.prev, doc(st.v), st.keep); err != nil {
			t.Fatalf("version %d: %v", st.v, err)
		}
		hist, err := s.ShadowHistory(ctx, gaps, 0)
		var got []int64
		for _, h := range hist {
			got = append(got, h.Version)
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Fatalf("history after version %d keeping %d: %v %v; want %v", st.v, st.keep, got, err, st.want)
		}
	}
	if err := s.DeleteShadow(ctx, gaps, 40, time.Unix(1_800_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	// Named shadows are listed, the classic one is not.
	for _, n := range []string{"b", "a"} {
		if err := s.PutShadow(ctx, shadow.Key{ProductKey: p.ProductKey, DeviceName: "sh1", Name: n}, 0, doc(1), 0); err != nil {
			t.Fatal(err)
		}
	}
	if names, err := s.ListShadows(ctx, p.ProductKey, "sh1", "", 10); err != nil || fmt.Sprint(names) != "[a b]" {
		t.Fatalf("ListShadows = %v %v", names, err)
	}
	if names, _ := s.ListShadows(ctx, p.ProductKey, "sh1", "a", 10); fmt.Sprint(names) != "[b]" {
		t.Fatalf("after a: %v", names)
	}
	if names, _ := s.ListShadows(ctx, p.ProductKey, "sh1", "", 1); fmt.Sprint(names) != "[a]" {
		t.Fatalf("limit 1: %v", names)
	}
	// Deleting leaves a tombstone with the version; a new shadow continues it.
	if err := s.DeleteShadow(ctx, classic, 2, at); !errors.Is(err, shadow.ErrStale) {
		t.Fatalf("delete at a stale version: %v", err)
	}
	if err := s.DeleteShadow(ctx, classic, 3, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetShadow(ctx, classic)
	if err != nil || !got.Deleted || got.Version != 3 || got.Doc != nil || !got.UpdatedAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("tombstone = %+v %v", got, err)
	}
	if tomb := got.Tomb(); tomb == nil || tomb.Version != 3 {
		t.Fatalf("Tomb() = %+v", tomb)
	}
	if hist, _ := s.ShadowHistory(ctx, classic, 0); len(hist) != 0 {
		t.Fatalf("history after delete: %+v", hist)
	}
	if err := s.DeleteShadow(ctx, classic, 3, at); !errors.Is(err, shadow.ErrNoShadow) {
		t.Fatalf("deleting a tombstone: %v", err)
	}
	if err := s.DeleteShadow(ctx, shadow.Key{ProductKey: p.ProductKey, DeviceName: "sh1", Name: "zz"}, 1, at); !errors.Is(err, shadow.ErrNoShadow) {
		t.Fatalf("deleting none: %v", err)
	}
	if err := s.PutShadow(ctx, classic, shadow.NoneStored, doc(1), 2); !errors.Is(err, shadow.ErrStale) {
		t.Fatalf("creating where none is stored, over a tombstone: %v; want ErrStale", err)
	}
	if got, err := s.GetShadow(ctx, classic); err != nil || !got.Deleted || got.Version != 3 {
		t.Fatalf("the tombstone after a stale create: %+v %v", got, err)
	}
	if err := s.PutShadow(ctx, classic, 0, doc(4), 2); err != nil {
		t.Fatalf("re-creating over the tombstone: %v", err)
	}
	if err := s.PutShadow(ctx, classic, shadow.NoneStored, doc(1), 2); !errors.Is(err, shadow.ErrStale) {
		t.Fatalf("creating where none is stored, over a live shadow: %v; want ErrStale", err)
	}
	if got, err := s.GetShadow(ctx, classic); err != nil || got.Version != 4 {
		t.Fatalf("the shadow after a stale create: %+v %v", got, err)
	}
	named := shadow.Key{ProductKey: p.ProductKey, DeviceName: "sh1", Name: "fresh"}
	if err := s.PutShadow(ctx, named, shadow.NoneStored, doc(1), 2); err != nil {
		t.Fatalf("creating where none is stored: %v", err)
	}
	if got, err := s.GetShadow(ctx, named); err != nil || got.Version != 1 || string(got.Doc) != string(doc(1).Doc) {
		t.Fatalf("created where none was stored: %+v %v", got, err)
	}
	if hist, _ := s.ShadowHistory(ctx, named, 0); len(hist) != 1 || hist[0].Version != 1 {
		t.Fatalf("history of a create where none was stored: %+v", hist)
	}
	// The device's deletion takes its shadows.
	if err := s.DeleteDevice(ctx, p.ProductKey, "sh1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetShadow(ctx, classic); !errors.Is(err, shadow.ErrNoShadow) {
		t.Fatalf("a deleted device's shadow: %v", err)
	}
	if names, _ := s.ListShadows(ctx, p.ProductKey, "sh1", "", 10); len(names) != 0 {
		t.Fatalf("a deleted device's named shadows: %v", names)
	}
}

// testShadowHistorySizes: the newest keep versions are kept whatever
// their documents' sizes (an adapter may keep small ones elsewhere than big
// ones), in order, a write keeping 0 keeps none, and a batch keeps as
// PutShadow does.
func testShadowHistorySizes(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "hs")})
	k := shadow.Key{ProductKey: p.ProductKey, DeviceName: "hs", Name: "sizes"}
	at := t0.Truncate(time.Millisecond)
	sizes := []int{10, 3000, 70000, 10, 10, 1500, 1500, 1500, 10, 9000, 10}
	doc := func(v int64) shadow.Stored {
		return shadow.Stored{Doc: []byte(fmt.Sprintf(`{"version":%d,"pad":"%s"}`, v, strings.Repeat("x", sizes[v-1]))), Version: v, UpdatedAt: at.Add(time.Duration(v) * time.Second)}
	}
	versions := func() string {
		t.Helper()
		hist, err := s.ShadowHistory(ctx, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, h := range hist {
			if want := doc(h.Version); string(h.Doc) != string(want.Doc) || !h.UpdatedAt.Equal(want.UpdatedAt) {
				t.Fatalf("version %d kept as %d bytes at %v", h.Version, len(h.Doc), h.UpdatedAt)
			}
			got = append(got, h.Version)
		}
		return fmt.Sprint(got)
	}
	if err := s.PutShadow(ctx, k, shadow.NoneStored, doc(1), 4); err != nil {
		t.Fatal(err)
	}
	for v := int64(2); v <= 9; v++ {
		if err := s.PutShadow(ctx, k, v-1, doc(v), 4); err != nil {
			t.Fatal(err)
		}
		var want []int64
		for w := max(1, v-3); w <= v; w++ {
			want = append(want, w)
		}
		if got := versions(); got != fmt.Sprint(want) {
			t.Fatalf("after version %d keeping 4: %s; want %v", v, got, want)
		}
	}
	errs, err := s.PutShadows(ctx, []shadow.Put{{Key: k, Prev: 9, S: doc(10), Keep: 6}})
	if err != nil || errs[0] != nil {
		t.Fatal(errs, err)
	}
	if got := versions(); got != "[6 7 8 9 10]" {
		t.Fatalf("after version 10 keeping 6: %s; want [6 7 8 9 10]", got)
	}
	if err := s.PutShadow(ctx, k, 10, doc(11), 0); err != nil {
		t.Fatal(err)
	}
	if got := versions(); got != "[]" {
		t.Fatalf("after a write keeping none: %s", got)
	}
}

// testPutShadows: a batch stores each put as PutShadow would, a stale one
// alone failing (ErrStale, nothing of it stored).
func testPutShadows(t *testing.T, s Store) {
	p := seed(t, s)
	s.CreateDevices(ctx, []registry.Device{dev(p, "b1"), dev(p, "b2"), dev(p, "b3"), dev(p, "b4")})
	at := t0.Truncate(time.Millisecond)
	key := func(dn string) shadow.Key { return shadow.Key{ProductKey: p.ProductKey, DeviceName: dn} }
	doc := func(v int64) shadow.Stored {
		return shadow.Stored{Doc: []byte(fmt.Sprintf(`{"state":{"reported":{"v":%d}},"version":%d}`, v, v)), Version: v, UpdatedAt: at.Add(time.Duration(v) * time.Second)}
	}
	if err := s.PutShadow(ctx, key("b2"), 0, doc(1), 2); err != nil {
		t.Fatal(err)
	}
	if errs, err := s.PutShadows(ctx, nil); err != nil || len(errs) != 0 {
		t.Fatalf("an empty batch: %v %v", errs, err)
	}
	errs, err := s.PutShadows(ctx, []shadow.Put{
		{Key: key("b1"), Prev: 0, S: doc(1), Keep: 2}, // create
		{Key: key("b2"), Prev: 0, S: doc(1), Keep: 2}, // stale: b2 exists
		{Key: key("b3"), Prev: 0, S: doc(1), Keep: 0}, // create, no history
	})
	if err != nil || len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], shadow.ErrStale) || errs[2] != nil {
		t.Fatalf("PutShadows = %v %v; want nil, ErrStale, nil", errs, err)
	}
	errs, err = s.PutShadows(ctx, []shadow.Put{
		{Key: key("b2"), Prev: shadow.NoneStored, S: doc(1), Keep: 2},                                                // stale: b2 exists
		{Key: key("b4"), Prev: shadow.NoneStored, S: doc(1), Keep: 0},                                                // create where none is
		{Key: shadow.Key{ProductKey: p.ProductKey, DeviceName: "b1", Name: "n"}, Prev: shadow.NoneStored, S: doc(1)}, // the same
	})
	if err != nil || len(errs) != 3 || !errors.Is(errs[0], shadow.ErrStale) || errs[1] != nil || errs[2] != nil {
		t.Fatalf("PutShadows where none is stored = %v %v; want ErrStale, nil, nil", errs, err)
	}
	errs, err = s.PutShadows(ctx, []shadow.Put{
		{Key: key("b1"), Prev: 1, S: doc(2), Keep: 2},
		{Key: key("b2"), Prev: 1, S: doc(2), Keep: 2},
		{Key: key("b3"), Prev: 7, S: doc(8), Keep: 0}, // stale version
	})
	if err != nil || errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], shadow.ErrStale) {
		t.Fatalf("updates = %v %v; want nil, nil, ErrStale", errs, err)
	}
	for dn, want := range map[string]int64{"b1": 2, "b2": 2, "b3": 1, "b4": 1} {
		got, err := s.GetShadow(ctx, key(dn))
		if err != nil || got.Version != want || string(got.Doc) != string(doc(want).Doc) {
			t.Fatalf("%s = %+v %v; want version %d", dn, got, err, want)
		}
	}
	if hist, _ := s.ShadowHistory(ctx, key("b1"), 0); len(hist) != 2 || hist[0].Version != 1 || hist[1].Version != 2 {
		t.Fatalf("b1's history: %+v; want versions 1, 2", hist)
	}
	if hist, _ := s.ShadowHistory(ctx, key("b3"), 0); len(hist) != 0 {
		t.Fatalf("b3's history, keeping none: %+v", hist)
	}
}

func testAudit(t *testing.T, s Store) {
	for i := 0; i < 5; i++ {
		s.AppendAudit(ctx, audit.Entry{At: t0, AccountID: "acc1", Action: "a", Target: fmt.Sprint(i), Outcome: map[bool]string{true: "ok", false: "refused"}[i%2 == 0]})
	}
	s.AppendAudit(ctx, audit.Entry{At: t0, AccountID: "acc2", Action: "a", Outcome: "ok"})
	// Appends may complete asynchronously, but a listing sees every entry
	// appended before it began (callers read the trail right after acting).
	all, err := s.ListAudit(ctx, audit.Filter{AccountID: "acc1", Limit: 100})
	if err != nil || len(all) != 5 || all[0].Target != "4" {
		t.Fatalf("ListAudit = %+v %v", all, err)
	}
	refused, _ := s.ListAudit(ctx, audit.Filter{AccountID: "acc1", Outcome: "refused", Limit: 100})
	older, _ := s.ListAudit(ctx, audit.Filter{AccountID: "acc1", Before: all[1].ID, Limit: 100})
	if len(refused) != 2 || len(older) != 3 {
		t.Fatalf("filters: %d refused, %d older", len(refused), len(older))
	}
}

func testRandoms(t *testing.T, s Store) {
	p := seed(t, s)
	pk := p.ProductKey
	window := 24 * time.Hour
	use := func(dn, random string, at time.Time) bool {
		t.Helper()
		ok, err := s.UseRegistrationRandom(ctx, pk, dn, random, at, at.Add(-window))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !use("d1", "r1", t0) {
		t.Fatal("first use refused")
	}
	if use("d1", "r1", t0.Add(time.Hour)) {
		t.Fatal("second use within the window accepted")
	}
	if !use("d2", "r1", t0.Add(time.Hour)) || !use("d1", "r2", t0.Add(time.Hour)) {
		t.Fatal("the same random for another device, or another random, refused")
	}
	if !use("d1", "r1", t0.Add(window+time.Minute)) {
		t.Fatal("use after the window refused")
	}
	if use("d1", "r1", t0.Add(window+2*time.Minute)) {
		t.Fatal("the renewed use was not remembered")
	}
	// Pruning forgets what is older than the cut-off, and only that.
	n, err := s.PruneRegistrationRandoms(ctx, t0.Add(2*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want the 2 uses of t0+1h", n, err)
	}
	if use("d1", "r1", t0.Add(window+3*time.Minute)) {
		t.Fatal("pruning forgot a recent use")
	}
	if !use("d2", "r1", t0.Add(3*time.Hour)) {
		t.Fatal("a pruned random is still refused")
	}
}

func testCreateRegisteredDevice(t *testing.T, s Store) {
	p := seed(t, s)
	window := 24 * time.Hour
	if err := s.CreateRegisteredDevice(ctx, dev(p, "reg-1"), "r1", t0, t0.Add(-window)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDevice(ctx, p.ProductKey, "reg-1"); err != nil {
		t.Fatalf("the registered device: %v", err)
	}
	// The creating request's random, presented again for the existing device.
	if ok, err := s.UseRegistrationRandom(ctx, p.ProductKey, "reg-1", "r1", t0.Add(time.Minute), t0.Add(time.Minute-window)); err != nil || ok {
		t.Fatalf("the creating random was accepted again: %v %v", ok, err)
	}
	// The device exists: a conflict, and its random is not kept (the
	// caller records it with the existing-device rules).
	if err := s.CreateRegisteredDevice(ctx, dev(p, "reg-1"), "r2", t0, t0.Add(-window)); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("existing device: %v", err)
	}
	if ok, err := s.UseRegistrationRandom(ctx, p.ProductKey, "reg-1", "r2", t0, t0.Add(-window)); err != nil || !ok {
		t.Fatalf("a conflicting create kept its random: %v %v", ok, err)
	}
	// A deleted device's captured request: the random refuses it, and no
	// device is created.
	if err := s.DeleteDevice(ctx, p.ProductKey, "reg-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRegisteredDevice(ctx, dev(p, "reg-1"), "r1", t0.Add(time.Hour), t0.Add(time.Hour-window)); !errors.Is(err, registry.ErrReplayed) {
		t.Fatalf("replayed random: %v", err)
	}
	if _, err := s.GetDevice(ctx, p.ProductKey, "reg-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a replayed registration created the device: %v", err)
	}
}

func testTopicClasses(t *testing.T, s Store) {
	p := seed(t, s) // created with nil classes
	q := p
	q.ProductKey, q.TopicClasses = "PK000000002", registry.DefaultTopicClasses()
	if err := s.CreateProduct(ctx, q, []byte("x")); err != nil {
		t.Fatal(err)
	}
	classes := func(pk string) []registry.TopicClass {
		t.Helper()
		got, _, err := s.GetProduct(ctx, pk)
		if err != nil {
			t.Fatal(err)
		}
		if got.TopicClasses == nil {
			t.Fatalf("%s: classes read back nil, want a non-nil slice", pk)
		}
		return got.TopicClasses
	}
	if got := classes(p.ProductKey); len(got) != 0 {
		t.Fatalf("product created without classes: %+v", got)
	}
	if got := classes(q.ProductKey); !sameClasses(got, registry.DefaultTopicClasses()) {
		t.Fatalf("created with the defaults, read %+v", got)
	}
	list, _ := s.ListProducts(ctx, "acc1", "", 10)
	if len(list) != 2 || list[0].TopicClasses == nil || !sameClasses(list[1].TopicClasses, registry.DefaultTopicClasses()) {
		t.Fatalf("ListProducts classes: %+v", list)
	}

	replaced := []registry.TopicClass{{Suffix: "cmd/+", Operation: registry.TopicSub, Description: "commands"}, {Suffix: "log/#", Operation: registry.TopicAll}}
	var seen []registry.TopicClass
	if err := s.UpdateTopicClasses(ctx, q.ProductKey, func(cur []registry.TopicClass) ([]registry.TopicClass, error) {
		seen = cur
		return replaced, nil
	}); err != nil {
		t.Fatal(err)
	}
	if !sameClasses(seen, registry.DefaultTopicClasses()) || !sameClasses(classes(q.ProductKey), replaced) {
		t.Fatalf("replace: fn saw %+v; now %+v", seen, classes(q.ProductKey))
	}
	if classes(p.ProductKey) == nil || len(classes(p.ProductKey)) != 0 {
		t.Fatal("replacing one product's classes touched another's")
	}

	refused := errors.New("refused")
	if err := s.UpdateTopicClasses(ctx, q.ProductKey, func([]registry.TopicClass) ([]registry.TopicClass, error) {
		return nil, refused
	}); !errors.Is(err, refused) || !sameClasses(classes(q.ProductKey), replaced) {
		t.Fatalf("fn's error: %v; classes %+v", err, classes(q.ProductKey))
	}

	q.Name = "renamed"
	if err := s.UpdateProduct(ctx, q); err != nil || !sameClasses(classes(q.ProductKey), replaced) {
		t.Fatalf("UpdateProduct changed the classes: %v %+v", err, classes(q.ProductKey))
	}

	if err := s.UpdateTopicClasses(ctx, q.ProductKey, func([]registry.TopicClass) ([]registry.TopicClass, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if got := classes(q.ProductKey); len(got) != 0 {
		t.Fatalf("emptied: %+v", got)
	}
	if err := s.UpdateTopicClasses(ctx, "PK999999999", func(c []registry.TopicClass) ([]registry.TopicClass, error) { return c, nil }); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("classes of a missing product: %v", err)
	}
}

func sameClasses(a, b []registry.TopicClass) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
