package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
)

var authT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func openAuth(t *testing.T, path string, cacheBytes int) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{Synchronous: "NORMAL", AuthCacheBytes: cacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func authSeed(t *testing.T, s *Store, pk string, names ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.GetAccount(ctx, "acc1"); errors.Is(err, registry.ErrNotFound) {
		if err := s.CreateAccount(ctx, registry.Account{ID: "acc1", Name: "one", CreatedAt: authT0}); err != nil {
			t.Fatal(err)
		}
	}
	p := registry.Product{AccountID: "acc1", ProductKey: pk, Name: "p", NodeType: registry.NodeDirect, AuthType: registry.AuthSecret, CreatedAt: authT0}
	if err := s.CreateProduct(ctx, p, []byte("sealed-product")); err != nil {
		t.Fatal(err)
	}
	var ds []registry.Device
	for _, n := range names {
		ds = append(ds, registry.Device{AccountID: "acc1", ProductKey: pk, DeviceName: n, IotID: "iot-" + pk + n, SealedSecret: []byte("sealed-" + n),
			Status: registry.StatusInactive, Attributes: map[string]string{}, CreatedAt: authT0})
	}
	if err := s.CreateDevices(ctx, ds); err != nil {
		t.Fatal(err)
	}
}

// authFromDB reads a device's auth row without the cache.
func authFromDB(t *testing.T, s *Store, pk, dn string) (registry.Device, error) {
	t.Helper()
	d := registry.Device{ProductKey: pk, DeviceName: dn}
	var thing sql.NullString
	err := s.r.QueryRowContext(context.Background(), `SELECT account_id, status, secret, thing_name, distributed_to FROM devices WHERE product_key = ? AND device_name = ?`, pk, dn).
		Scan(&d.AccountID, &d.Status, &d.SealedSecret, &thing, &d.DistributedTo)
	d.ThingName = thingOf(pk, dn, thing)
	return d, notFound(err)
}

// sameAuth fails unless GetDeviceAuth answers what the database holds.
func sameAuth(t *testing.T, s *Store, pk, dn, after string) {
	t.Helper()
	want, werr := authFromDB(t, s, pk, dn)
	got, gerr := s.GetDeviceAuth(context.Background(), pk, dn)
	if !errors.Is(gerr, werr) && (werr == nil || gerr == nil || !errors.Is(gerr, registry.ErrNotFound) || !errors.Is(werr, registry.ErrNotFound)) {
		t.Fatalf("after %s: GetDeviceAuth(%s, %s) error %v, database %v", after, pk, dn, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after %s: GetDeviceAuth(%s, %s) =\n%+v\nthe database holds\n%+v", after, pk, dn, got, want)
	}
}

// TestAuthCacheCoherent: after every kind of write to devices, a cached
// auth row answers what the database holds.
func TestAuthCacheCoherent(t *testing.T) {
	ctx := context.Background()
	on := func(pk, dn string) []registry.Presence {
		return []registry.Presence{{ProductKey: pk, DeviceName: dn, Online: true, At: authT0}}
	}
	off := func(pk, dn string) []registry.Presence {
		return []registry.Presence{{ProductKey: pk, DeviceName: dn, At: authT0}}
	}
	brief := func(pk, dn string) []registry.Presence {
		return []registry.Presence{{ProductKey: pk, DeviceName: dn, At: authT0, ConnectedAt: authT0}}
	}
	disable := func(s *Store, pk, dn string) error { _, err := s.SetDeviceDisabled(ctx, pk, dn, true); return err }
	enable := func(s *Store, pk, dn string) error { _, err := s.SetDeviceDisabled(ctx, pk, dn, false); return err }
	// Each case starts from a device d1 (and d2, another product's) in a
	// given status, cached, then writes.
	for _, tt := range []struct {
		name  string
		write func(s *Store, pk, dn string) error
	}{
		{"presence on", func(s *Store, pk, dn string) error { return s.ApplyPresence(ctx, on(pk, dn)) }},
		{"presence off", func(s *Store, pk, dn string) error { return s.ApplyPresence(ctx, off(pk, dn)) }},
		{"presence brief", func(s *Store, pk, dn string) error { return s.ApplyPresence(ctx, brief(pk, dn)) }},
		{"presence on then off", func(s *Store, pk, dn string) error {
			return s.ApplyPresence(ctx, append(on(pk, dn), off(pk, dn)...))
		}},
		{"presence reset", func(s *Store, _, _ string) error { _, err := s.ResetPresence(ctx, authT0); return err }},
		{"disable", disable},
		{"enable", enable},
		{"secret", func(s *Store, pk, dn string) error { return s.SetDeviceSecret(ctx, pk, dn, []byte("resealed")) }},
		{"distributed", func(s *Store, pk, dn string) error { return s.SetDeviceDistributed(ctx, pk, dn, "sg-1") }},
		{"thing name", func(s *Store, pk, dn string) error {
			d, err := s.GetDevice(ctx, pk, dn)
			if err != nil {
				return err
			}
			d.ThingName = "thing-" + dn
			return s.UpdateDevice(ctx, d)
		}},
		{"delete device", func(s *Store, pk, dn string) error { return s.DeleteDevice(ctx, pk, dn) }},
		{"delete product", func(s *Store, pk, _ string) error { return s.DeleteProduct(ctx, pk) }},
		{"delete and create again", func(s *Store, pk, dn string) error {
			if err := s.DeleteDevice(ctx, pk, dn); err != nil {
				return err
			}
			return s.CreateDevices(ctx, []registry.Device{{AccountID: "acc1", ProductKey: pk, DeviceName: dn, IotID: "iot2-" + pk + dn,
				SealedSecret: []byte("new"), Status: registry.StatusInactive, Attributes: map[string]string{}, CreatedAt: authT0}})
		}},
		{"delete and register", func(s *Store, pk, dn string) error {
			if err := s.DeleteDevice(ctx, pk, dn); err != nil {
				return err
			}
			return s.CreateRegisteredDevice(ctx, registry.Device{AccountID: "acc1", ProductKey: pk, DeviceName: dn, IotID: "iot3-" + pk + dn,
				SealedSecret: []byte("registered"), Status: registry.StatusInactive, Attributes: map[string]string{}, CreatedAt: authT0}, "r1", authT0, authT0.Add(-time.Hour))
		}},
	} {
		for _, from := range []string{"inactive", "online", "offline", "disabled"} {
			t.Run(tt.name+"/from "+from, func(t *testing.T) {
				s := openAuth(t, filepath.Join(t.TempDir(), "t.db"), 0)
				authSeed(t, s, "PK1", "d1", "d2")
				authSeed(t, s, "PK2", "d1")
				switch from {
				case "online":
					if err := s.ApplyPresence(ctx, on("PK1", "d1")); err != nil {
						t.Fatal(err)
					}
				case "offline":
					if err := s.ApplyPresence(ctx, brief("PK1", "d1")); err != nil {
						t.Fatal(err)
					}
				case "disabled":
					if err := disable(s, "PK1", "d1"); err != nil {
						t.Fatal(err)
					}
				}
				for _, k := range [][2]string{{"PK1", "d1"}, {"PK1", "d2"}, {"PK2", "d1"}} {
					sameAuth(t, s, k[0], k[1], "setup")
					if _, ok := s.auth.get(k[0], k[1]); !ok {
						t.Fatalf("%s/%s not cached after a read", k[0], k[1])
					}
				}
				if err := tt.write(s, "PK1", "d1"); err != nil {
					t.Fatal(err)
				}
				for _, k := range [][2]string{{"PK1", "d1"}, {"PK1", "d2"}, {"PK2", "d1"}} {
					sameAuth(t, s, k[0], k[1], tt.name)
					sameAuth(t, s, k[0], k[1], tt.name+" and a read") // the read may have cached it
				}
			})
		}
	}
}

// TestAuthCacheCreatedAndWarm: created devices are cached as written; a
// reopened store starts with the rows cached.
func TestAuthCacheCreatedAndWarm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	s := openAuth(t, path, 0)
	authSeed(t, s, "PK1", "d1", "d2")
	d, err := s.GetDevice(context.Background(), "PK1", "d2")
	if err != nil {
		t.Fatal(err)
	}
	d.ThingName = "explicit"
	if err := s.UpdateDevice(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.auth.get("PK1", "d1"); !ok {
		t.Fatal("a created device is not cached")
	}
	sameAuth(t, s, "PK1", "d1", "create")
	s.Close()
	s = openAuth(t, path, 0)
	for _, dn := range []string{"d1", "d2"} {
		if _, ok := s.auth.get("PK1", dn); !ok {
			t.Fatalf("%s not cached after reopening", dn)
		}
		sameAuth(t, s, "PK1", dn, "reopen")
	}
	if got, _ := s.GetDeviceAuth(context.Background(), "PK1", "d2"); got.ThingName != "explicit" {
		t.Fatalf("thing name %q after reopening", got.ThingName)
	}
}

// TestAuthCacheBounded: the cache holds at most its bound, and reads of
// rows it evicted or never held still answer right.
func TestAuthCacheBounded(t *testing.T) {
	s := openAuth(t, filepath.Join(t.TempDir(), "t.db"), 5*authRowOverhead)
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("dev-%02d", i))
	}
	authSeed(t, s, "PK1", names...)
	for range 2 {
		for _, n := range names {
			sameAuth(t, s, "PK1", n, "create")
			if s.auth.size > s.auth.max || len(s.auth.rows) > 5 {
				t.Fatalf("cache holds %d rows, %d bytes: over its bound %d", len(s.auth.rows), s.auth.size, s.auth.max)
			}
		}
	}
	if len(s.auth.rows) == 0 {
		t.Fatal("nothing cached")
	}
	off := openAuth(t, filepath.Join(t.TempDir(), "off.db"), -1)
	authSeed(t, off, "PK1", "d1")
	sameAuth(t, off, "PK1", "d1", "create")
	if len(off.auth.rows) != 0 {
		t.Fatal("a store with the cache off cached")
	}
}

// TestAuthCacheReadRacingAWrite: a row read while a write to devices was
// under way, or read before a write that ended before it was cached, is
// not cached (it may predate the write).
func TestAuthCacheReadRacingAWrite(t *testing.T) {
	c := newAuthCache(1 << 20)
	row := authRow{account: "a", status: registry.StatusInactive}

	seq, ok := c.mark()
	began := c.begin()
	c.end(forgetting("pk", "x"), began) // a write began and ended meanwhile
	c.fill("pk", "dn", row, seq)
	if _, hit := c.get("pk", "dn"); hit || !ok {
		t.Fatalf("a read predating a write was cached (mark ok %v)", ok)
	}

	began = c.begin()
	seq, ok = c.mark()
	c.fill("pk", "dn", row, seq)
	c.end(nil, began)
	if _, hit := c.get("pk", "dn"); hit || ok {
		t.Fatalf("a read during a write was cached (mark ok %v)", ok)
	}

	seq, _ = c.mark()
	c.fill("pk", "dn", row, seq)
	if _, hit := c.get("pk", "dn"); !hit {
		t.Fatal("a read with no write about was not cached")
	}

	// A write that overlapped another is not alone.
	b1 := c.begin()
	b2 := c.begin()
	c.end(func(_ *authCache, alone bool) {
		if alone {
			t.Error("the second of two overlapping writes ended alone")
		}
	}, b2)
	c.end(func(_ *authCache, alone bool) {
		if alone {
			t.Error("the first of two overlapping writes ended alone")
		}
	}, b1)
	b := c.begin()
	c.end(func(_ *authCache, alone bool) {
		if !alone {
			t.Error("a write with no other about did not end alone")
		}
	}, b)
}
