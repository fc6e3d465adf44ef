package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/registry"
)

// TestImportDevice: a device arrives with its own triple; the same triple
// again is a success and clears a distributed mark; another secret under
// that name, another account's product or a bad secret is refused.
func TestImportDevice(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	prod, err := s.CreateProduct(ctx, operator, registry.ProductInput{Name: "meter"})
	if err != nil {
		t.Fatal(err)
	}
	pk := prod.ProductKey
	const secret = "Zx8kq1Lm3Nb5Vc7Xz9Aa2Ss4Dd6Ff8Gg"
	d, created, err := s.ImportDevice(ctx, "acc1", pk, "dev-1", secret)
	if err != nil || !created || d.DeviceName != "dev-1" || d.IotID == "" {
		t.Fatalf("ImportDevice = %+v, %v, %v", d, created, err)
	}
	auth, err := s.LookupDeviceAuth(ctx, pk, "dev-1")
	if err != nil || auth.DeviceSecret != secret {
		t.Fatalf("the imported secret is not the device's: %v", err)
	}
	if err := s.MarkDistributed(ctx, pk, "dev-1", "eu-central-1"); err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.ImportDevice(ctx, "acc1", pk, "dev-1", secret); err != nil || created {
		t.Fatalf("re-import = created %v, %v; want an idempotent success", created, err)
	}
	if auth, _ := s.LookupDeviceAuth(ctx, pk, "dev-1"); auth.DistributedTo != "" {
		t.Fatalf("coming back did not clear the mark: %q", auth.DistributedTo)
	}
	for _, tc := range []struct {
		name, acc, dn, secret string
		want                  error
	}{
		{"another secret under the name", "acc1", "dev-1", "other-secret-0000", registry.ErrConflict},
		{"another account's product", "acc2", "dev-2", secret, registry.ErrNotFound},
		{"a secret with a space", "acc1", "dev-3", "has space", registry.ErrInvalid},
		{"an empty secret", "acc1", "dev-3", "", registry.ErrInvalid},
		{"an oversized secret", "acc1", "dev-3", strings.Repeat("x", 65), registry.ErrInvalid},
		{"a bad device name", "acc1", "a b", secret, registry.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.ImportDevice(ctx, tc.acc, pk, tc.dn, tc.secret)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ImportDevice = %v, want %v", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Fatal("the error names the secret")
			}
		})
	}
	if _, err := s.LookupDeviceAuth(ctx, pk, "dev-3"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a refused import created a device: %v", err)
	}
}
