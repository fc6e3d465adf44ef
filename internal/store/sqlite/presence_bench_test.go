package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
)

// BenchmarkApplyPresence: the broker's presence batches as the
// ConnectRate bench makes them, on a registry of 100,000 devices: 256
// short sessions (a connect and a disconnect folded into one record) of
// devices drawn without replacement, each never online before; per
// device, synchronous=OFF (the writer's own cost, no fsync).
func BenchmarkApplyPresence(b *testing.B) {
	ctx := context.Background()
	const size, batch = 100000, 256
	s, pk := presenceRegistry(b, size)
	now := time.Now()
	order := rand.Perm(size)
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		ps := make([]registry.Presence, 0, batch)
		for j := i; j < min(i+batch, b.N); j++ {
			ps = append(ps, registry.Presence{ProductKey: pk, DeviceName: fmt.Sprintf("device-%06d", order[j%size]),
				At: now, ConnectedAt: now.Add(-time.Millisecond)})
		}
		if err := s.ApplyPresence(ctx, ps); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListDevicesByStatus: a page of 100 of a product's devices of
// one status among 100,000, when 1 in 100 has it (what the index on
// status served before migration 00022).
func BenchmarkListDevicesByStatus(b *testing.B) {
	ctx := context.Background()
	s, pk := presenceRegistry(b, 100000)
	var ps []registry.Presence
	for i := 0; i < 100000; i += 100 {
		ps = append(ps, registry.Presence{ProductKey: pk, DeviceName: fmt.Sprintf("device-%06d", i), Online: true, At: time.Now()})
	}
	if err := s.ApplyPresence(ctx, ps); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		ds, err := s.ListDevices(ctx, registry.DeviceFilter{ProductKey: pk, Status: registry.StatusOnline, Limit: 100})
		if err != nil || len(ds) != 100 {
			b.Fatal(len(ds), err)
		}
	}
}

// presenceRegistry opens a store (synchronous=OFF) holding size inactive
// devices device-000000… of one product, whose key it returns.
func presenceRegistry(b *testing.B, size int) (*Store, string) {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "s.db"), Options{Synchronous: "OFF"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	now := time.Now()
	if err := s.CreateAccount(ctx, registry.Account{ID: "acc", Name: "a", CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	pk := "a1B2c3D4e5F"
	if err := s.CreateProduct(ctx, registry.Product{AccountID: "acc", ProductKey: pk, Name: "p", NodeType: registry.NodeDirect,
		AuthType: registry.AuthSecret, DynReg: registry.DynRegOff, CreatedAt: now}, []byte("sealed")); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < size; i += 10000 {
		ds := make([]registry.Device, 10000)
		for j := range ds {
			dn := fmt.Sprintf("device-%06d", i+j)
			ds[j] = registry.Device{AccountID: "acc", ProductKey: pk, DeviceName: dn, IotID: "iot-" + dn,
				SealedSecret: make([]byte, 60), Status: registry.StatusInactive, CreatedAt: now}
		}
		if err := s.CreateDevices(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	return s, pk
}
