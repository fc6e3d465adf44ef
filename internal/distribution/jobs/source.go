package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/corral-iot/corral/internal/registry"
)

// RegistrySource is the Source of a corral's own registry.
type RegistrySource struct{ Registry *registry.Service }

// ExportProduct implements Source: the product, its topic classes and its
// thing model (none is not an error).
func (r RegistrySource) ExportProduct(ctx context.Context, p registry.Principal, pk string) (Product, error) {
	prod, err := r.Registry.GetProduct(ctx, p, pk)
	if err != nil {
		return Product{}, err
	}
	out := Product{ProductKey: pk}
	if out.Info, err = json.Marshal(prod); err != nil {
		return Product{}, fmt.Errorf("product %s: %w", pk, err)
	}
	classes, err := r.Registry.TopicClasses(ctx, p, pk)
	if err != nil {
		return Product{}, err
	}
	if out.TopicClasses, err = json.Marshal(classes); err != nil {
		return Product{}, fmt.Errorf("topic classes of %s: %w", pk, err)
	}
	model, err := r.Registry.ThingModel(ctx, p, pk)
	switch {
	case errors.Is(err, registry.ErrNoModel):
	case err != nil:
		return Product{}, err
	default:
		out.ThingModel = model
	}
	return out, nil
}

// MissingDevices implements Source.
func (r RegistrySource) MissingDevices(ctx context.Context, pk string, names []string) ([]string, error) {
	var missing []string
	for _, n := range names {
		_, err := r.Registry.LookupDeviceAuth(ctx, pk, n)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			missing = append(missing, n)
		case err != nil:
			return nil, err
		}
	}
	return missing, nil
}

// DeviceSecret implements Source.
func (r RegistrySource) DeviceSecret(ctx context.Context, pk, dn string) (string, error) {
	d, err := r.Registry.LookupDeviceAuth(ctx, pk, dn)
	if err != nil {
		return "", err
	}
	return d.DeviceSecret, nil
}

// MarkDistributed implements Source.
func (r RegistrySource) MarkDistributed(ctx context.Context, pk, dn, to string) error {
	return r.Registry.MarkDistributed(ctx, pk, dn, to)
}
