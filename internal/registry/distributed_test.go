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

// TestImportProduct: a product arrives read-only with its own key; the
// recipient views it and its devices arrive by import, but it may not
// edit or delete it nor create devices under it.
func TestImportProduct(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	src := registry.Product{ProductKey: "a1Imported", Name: "meter", NodeType: registry.NodeDirect, AuthType: registry.AuthSecret,
		Attributes: map[string]string{"site": "sh"}, TopicClasses: registry.DefaultTopicClasses()}
	model := []byte(`{"schema":"https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json","profile":{"productKey":"a1Imported"},"properties":[],"events":[],"services":[]}`)
	prod, created, err := s.ImportProduct(ctx, "acc1", "cn-shanghai", src, model)
	if err != nil || !created || prod.DistributedFrom != "cn-shanghai" {
		t.Fatalf("ImportProduct = %+v, %v, %v", prod, created, err)
	}
	if _, created, err := s.ImportProduct(ctx, "acc1", "cn-shanghai", src, model); err != nil || created {
		t.Fatalf("re-import = %v, %v; want an idempotent success", created, err)
	}
	if _, _, err := s.ImportProduct(ctx, "acc2", "cn-shanghai", src, model); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("the key in another account = %v, want ErrConflict", err)
	}
	got, err := s.GetProduct(ctx, operator, "a1Imported")
	if err != nil || got.DistributedFrom != "cn-shanghai" || got.Attributes["site"] != "sh" {
		t.Fatalf("GetProduct = %+v, %v", got, err)
	}
	if _, err := s.ThingModel(ctx, operator, "a1Imported"); err != nil {
		t.Fatalf("the thing model did not come: %v", err)
	}
	name := "renamed"
	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"update", func() error {
			_, err := s.UpdateProduct(ctx, operator, "a1Imported", registry.ProductPatch{Name: &name})
			return err
		}},
		{"delete", func() error { return s.DeleteProduct(ctx, operator, "a1Imported") }},
		{"create a device", func() error {
			_, err := s.CreateDevice(ctx, operator, "a1Imported", registry.DeviceInput{DeviceName: "new"})
			return err
		}},
		{"topic classes", func() error { _, err := s.SetTopicClasses(ctx, operator, "a1Imported", nil); return err }},
		{"thing model", func() error { _, err := s.SetThingModel(ctx, operator, "a1Imported", model); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fn(); !errors.Is(err, registry.ErrForbidden) || !strings.Contains(err.Error(), "read-only") {
				t.Fatalf("%s = %v, want ErrForbidden saying read-only", tc.name, err)
			}
		})
	}
	if _, created, err := s.ImportDevice(ctx, "acc1", "a1Imported", "dev-1", "Zx8kq1Lm3Nb5Vc7Xz9Aa2Ss4Dd6Ff8Gg"); err != nil || !created {
		t.Fatalf("a device imported under it: %v, %v", created, err)
	}
	if _, _, err := s.ImportProduct(ctx, "acc1", "", src, nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("no source instance = %v", err)
	}
}

// TestLookupDeviceOwner: a device's account and thing name, without its
// secret in any form; an unknown device is ErrNotFound.
func TestLookupDeviceOwner(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	prod, err := s.CreateProduct(ctx, operator, registry.ProductInput{Name: "meter"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ImportDevice(ctx, "acc1", prod.ProductKey, "dev-1", "Zx8kq1Lm3Nb5Vc7Xz9Aa2Ss4Dd6Ff8Gg"); err != nil {
		t.Fatal(err)
	}
	d, err := s.LookupDeviceOwner(ctx, prod.ProductKey, "dev-1")
	if err != nil || d.AccountID != "acc1" || d.ThingName != registry.DefaultThingName(prod.ProductKey, "dev-1") {
		t.Fatalf("LookupDeviceOwner = %+v, %v", d, err)
	}
	if d.DeviceSecret != "" || d.SealedSecret != nil {
		t.Fatal("LookupDeviceOwner returned the secret")
	}
	if _, err := s.LookupDeviceOwner(ctx, prod.ProductKey, "nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
}
