package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/tsl"
)

// ThingStore persists thing models and devices' latest property values.
type ThingStore interface {
	SetTSL(ctx context.Context, pk string, model []byte) error
	TSL(ctx context.Context, pk string) ([]byte, error)
	// SaveProperties upserts property values in one transaction.
	SaveProperties(ctx context.Context, pk, dn string, vals []PropertyValue) error
	Properties(ctx context.Context, pk, dn string) ([]PropertyValue, error)
}

// PropertyValue is a device's latest value of a property.
type PropertyValue struct {
	Identifier string          `json:"identifier"`
	Value      json.RawMessage `json:"value"`
	Time       time.Time       `json:"time"`
}

// ErrNoModel means the product has no thing model.
var ErrNoModel = errors.New("the product has no thing model")

// SetThingModel checks and stores a product's TSL model.
func (s *Service) SetThingModel(ctx context.Context, p Principal, pk string, raw []byte) (*tsl.Model, error) {
	if err := need(p, RoleOperator); err != nil {
		return nil, err
	}
	if _, _, err := s.writableProduct(ctx, p, pk); err != nil {
		return nil, err
	}
	m, err := tsl.Parse(raw)
	if err != nil {
		return nil, &ValidationError{Field: "tsl", Reason: err.Error()}
	}
	canon, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := s.store.SetTSL(ctx, pk, canon); err != nil {
		return nil, fmt.Errorf("storing thing model of %s: %w", pk, err)
	}
	s.notifyProduct(ctx, ProductModelChanged, pk)
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "product.tsl.set", Target: pk, Outcome: "ok"})
	return m, nil
}

// ThingModel returns a product's TSL model of the caller's account.
func (s *Service) ThingModel(ctx context.Context, p Principal, pk string) (json.RawMessage, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	if _, _, err := s.product(ctx, p, pk); err != nil {
		return nil, err
	}
	raw, err := s.store.TSL(ctx, pk)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s: %w", pk, errors.Join(ErrNoModel, ErrNotFound))
	}
	return raw, nil
}

// LookupThingModel returns any product's parsed model (nil if none).
func (s *Service) LookupThingModel(ctx context.Context, pk string) (*tsl.Model, error) {
	raw, err := s.store.TSL(ctx, pk)
	if err != nil || len(raw) == 0 {
		return nil, err
	}
	return tsl.Parse(raw)
}

// SaveProperties stores checked property values of a device.
func (s *Service) SaveProperties(ctx context.Context, pk, dn string, vals []PropertyValue) error {
	return s.store.SaveProperties(ctx, pk, dn, vals)
}

// DeviceProperties returns a device's latest property values.
func (s *Service) DeviceProperties(ctx context.Context, p Principal, pk, dn string) ([]PropertyValue, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	if _, err := s.device(ctx, p, pk, dn); err != nil {
		return nil, err
	}
	return s.store.Properties(ctx, pk, dn)
}

// LatestProperties returns any device's stored property values, for
// in-process device-facing services (no account scope): a history post
// must not replace a newer value.
func (s *Service) LatestProperties(ctx context.Context, pk, dn string) ([]PropertyValue, error) {
	return s.store.Properties(ctx, pk, dn)
}
