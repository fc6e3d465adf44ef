package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

type desiredSeen struct{ n int }

func (d *desiredSeen) DesiredChanged(context.Context, string, string) { d.n++ }

// TestDesiredVersions: each set of a property bumps its version; a set
// naming a stale version is a conflict that changes nothing; a device
// deletes only the version it names; other accounts see nothing.
func TestDesiredVersions(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	seen := &desiredSeen{}
	s.AddDesiredObserver(seen)
	p, err := s.CreateProduct(ctx, operator, registry.ProductInput{Name: "thermo"})
	if err != nil {
		t.Fatal(err)
	}
	pk := p.ProductKey
	if _, err := s.CreateDevice(ctx, operator, pk, registry.DeviceInput{DeviceName: "thermo-1"}); err != nil {
		t.Fatal(err)
	}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	vals, err := s.SetDesired(ctx, operator, pk, "thermo-1", registry.DesiredSet{Values: map[string]json.RawMessage{"TargetTemp": raw("21"), "Mode": raw("1")}}, nil)
	if err != nil || len(vals) != 2 || vals[0].Identifier != "Mode" || vals[1].Version != 1 {
		t.Fatalf("first set: %+v %v", vals, err)
	}
	vals, err = s.SetDesired(ctx, operator, pk, "thermo-1", registry.DesiredSet{Values: map[string]json.RawMessage{"TargetTemp": raw("22")}, Versions: map[string]int64{"TargetTemp": 1}}, nil)
	if err != nil || vals[1].Version != 2 || string(vals[1].Value) != "22" || vals[0].Version != 1 {
		t.Fatalf("second set at version 1: %+v %v", vals, err)
	}
	if _, err := s.SetDesired(ctx, operator, pk, "thermo-1", registry.DesiredSet{Values: map[string]json.RawMessage{"TargetTemp": raw("30")}, Versions: map[string]int64{"TargetTemp": 1}}, nil); !errors.Is(err, registry.ErrVersionConflict) {
		t.Fatalf("a set at a stale version: %v; want ErrVersionConflict", err)
	}
	checkErr := errors.New("TargetTemp out of range")
	if _, err := s.SetDesired(ctx, operator, pk, "thermo-1", registry.DesiredSet{Values: map[string]json.RawMessage{"TargetTemp": raw("99")}}, func(map[string]json.RawMessage) error { return checkErr }); !errors.Is(err, checkErr) {
		t.Fatalf("a refused value: %v", err)
	}
	if seen.n != 2 {
		t.Fatalf("observer told %d times; want 2 (refused sets tell nothing)", seen.n)
	}
	got, _ := s.LookupDesired(ctx, pk, "thermo-1")
	if len(got) != 2 || string(got[1].Value) != "22" || got[1].Version != 2 {
		t.Fatalf("after refusals: %+v", got)
	}
	// The device deletes TargetTemp at version 1 (stale: kept) and Mode at 1.
	deleted, err := s.DeviceDeleteDesired(ctx, pk, "thermo-1", map[string]int64{"TargetTemp": 1, "Mode": 1}, false)
	if err != nil || len(deleted) != 1 || deleted[0] != "Mode" {
		t.Fatalf("device delete: %v %v; want Mode only", deleted, err)
	}
	if err := s.MarkDesiredDelivered(ctx, pk, "thermo-1", map[string]int64{"TargetTemp": 2}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.LookupDesired(ctx, pk, "thermo-1")
	if len(got) != 1 || got[0].Identifier != "TargetTemp" || got[0].Delivered != 2 {
		t.Fatalf("after delete and delivery: %+v", got)
	}
	// Roles and tenants.
	if _, err := s.DesiredProperties(ctx, stranger, pk, "thermo-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("another account reads: %v; want not found", err)
	}
	if _, err := s.SetDesired(ctx, reader, pk, "thermo-1", registry.DesiredSet{Values: map[string]json.RawMessage{"Mode": raw("0")}}, nil); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("a readonly key sets: %v; want forbidden", err)
	}
	if err := s.DeleteDesired(ctx, operator, pk, "thermo-1", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DesiredProperties(ctx, reader, pk, "thermo-1"); len(got) != 0 {
		t.Fatalf("after deleting all: %+v", got)
	}
}

// TestUndeliveredDesiredKnown: the registry knows which devices hold a
// desired value they have not acknowledged, through sets, acknowledgements
// and deletes, and again after a restart (a new Service on the store).
func TestUndeliveredDesiredKnown(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateAccount(ctx, registry.Account{ID: "acc1", Name: "acc1"}); err != nil {
		t.Fatal(err)
	}
	s := registry.New(registry.Options{Store: st, Box: plainBox{}})
	p, err := s.CreateProduct(ctx, operator, registry.ProductInput{Name: "thermo"})
	if err != nil {
		t.Fatal(err)
	}
	pk := p.ProductKey
	for _, dn := range []string{"dev-a", "dev-b", "dev-c"} {
		if _, err := s.CreateDevice(ctx, operator, pk, registry.DeviceInput{DeviceName: dn}); err != nil {
			t.Fatal(err)
		}
	}
	// c holds a value from before the index is first asked.
	if _, err := s.SetDesired(ctx, operator, pk, "dev-c", registry.DesiredSet{Values: map[string]json.RawMessage{"T": json.RawMessage("1")}}, nil); err != nil {
		t.Fatal(err)
	}
	want := func(s *registry.Service, step string, a, b, c bool) {
		t.Helper()
		for dn, w := range map[string]bool{"dev-a": a, "dev-b": b, "dev-c": c} {
			if got := s.MaybeUndeliveredDesired(ctx, pk, dn); got != w {
				t.Errorf("%s: MaybeUndeliveredDesired(%s) = %v, want %v", step, dn, got, w)
			}
		}
	}
	want(s, "start", false, false, true)
	if _, err := s.SetDesired(ctx, operator, pk, "dev-a", registry.DesiredSet{Values: map[string]json.RawMessage{"T": json.RawMessage("2")}}, nil); err != nil {
		t.Fatal(err)
	}
	want(s, "after a set", true, false, true)
	if err := s.MarkDesiredDelivered(ctx, pk, "dev-c", map[string]int64{"T": 1}); err != nil {
		t.Fatal(err)
	}
	want(s, "after c acknowledged", true, false, false)
	if _, err := s.DeviceDeleteDesired(ctx, pk, "dev-a", nil, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDesired(ctx, operator, pk, "dev-b", registry.DesiredSet{Values: map[string]json.RawMessage{"T": json.RawMessage("3")}}, nil); err != nil {
		t.Fatal(err)
	}
	want(s, "after a deleted, b set", false, true, false)
	want(registry.New(registry.Options{Store: st, Box: plainBox{}}), "after a restart", false, true, false)
}
