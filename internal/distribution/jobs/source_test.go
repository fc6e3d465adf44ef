package jobs_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

type clearBox struct{}

func (clearBox) Seal(p, _ []byte) ([]byte, error) { return append([]byte{}, p...), nil }
func (clearBox) Open(s, _ []byte) ([]byte, error) { return s, nil }

func TestRegistrySource(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateAccount(ctx, registry.Account{ID: "acc-1", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{Store: st, Box: clearBox{}})
	prod, err := reg.CreateProduct(ctx, operator, registry.ProductInput{Name: "meter"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := reg.CreateDevice(ctx, operator, prod.ProductKey, registry.DeviceInput{DeviceName: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	src := jobs.RegistrySource{Registry: reg}
	p, err := src.ExportProduct(ctx, operator, prod.ProductKey)
	if err != nil || p.ProductKey != prod.ProductKey || len(p.Info) == 0 || len(p.TopicClasses) == 0 {
		t.Fatalf("ExportProduct = %+v, %v", p, err)
	}
	if _, err := src.ExportProduct(ctx, registry.Principal{AccountID: "acc-2", Role: registry.RoleAdmin}, prod.ProductKey); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("another account's export = %v", err)
	}
	if m, err := src.MissingDevices(ctx, prod.ProductKey, []string{"dev-1", "ghost"}); err != nil || len(m) != 1 || m[0] != "ghost" {
		t.Fatalf("MissingDevices = %v, %v", m, err)
	}
	if s, err := src.DeviceSecret(ctx, prod.ProductKey, "dev-1"); err != nil || s != d.DeviceSecret {
		t.Fatalf("DeviceSecret: %v", err)
	}
	if err := src.MarkDistributed(ctx, prod.ProductKey, "dev-1", "eu-central-1"); err != nil {
		t.Fatal(err)
	}
	if a, _ := reg.LookupDeviceAuth(ctx, prod.ProductKey, "dev-1"); a.DistributedTo != "eu-central-1" {
		t.Fatalf("marked %q", a.DistributedTo)
	}
}
