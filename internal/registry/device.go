package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/audit"
)

func isConflict(err error) bool { return errors.Is(err, ErrConflict) }

func deviceAAD(pk, dn string) []byte { return []byte("device:" + pk + "/" + dn) }

// DeviceInput creates one device.
type DeviceInput struct {
	DeviceName string            `json:"deviceName"`
	ThingName  string            `json:"thingName,omitempty" doc:"name in $aws/things/{thingName}/… topics, unique across the instance, [a-zA-Z0-9:_-]{1,128}; default {productKey}.{deviceName}"`
	Nickname   string            `json:"nickname,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// DevicePatch changes a device; nil fields stay as they are.
type DevicePatch struct {
	Nickname   *string            `json:"nickname,omitempty"`
	ThingName  *string            `json:"thingName,omitempty" doc:"a new thing name (empty: back to the default {productKey}.{deviceName}); closes the device's live session"`
	Attributes *map[string]string `json:"attributes,omitempty"`
}

// newDevice builds a device with a fresh secret and iotId, sealed for the store.
func (s *Service) newDevice(prod Product, in DeviceInput, now time.Time) (Device, error) {
	if err := ValidateDeviceName(in.DeviceName); err != nil {
		return Device{}, err
	}
	if err := validateText("nickname", in.Nickname, MaxNameLen, false); err != nil {
		return Device{}, err
	}
	if err := ValidateAttributes("attributes", in.Attributes); err != nil {
		return Device{}, err
	}
	thing, err := thingName(prod.ProductKey, in.DeviceName, in.ThingName)
	if err != nil {
		return Device{}, err
	}
	secret, err := randString(s.rand, DeviceSecretLen)
	if err != nil {
		return Device{}, err
	}
	iot, err := newIotID(s.rand, now)
	if err != nil {
		return Device{}, err
	}
	sealed, err := s.box.Seal([]byte(secret), deviceAAD(prod.ProductKey, in.DeviceName))
	if err != nil {
		return Device{}, fmt.Errorf("sealing device secret: %w", err)
	}
	attrs := in.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	return Device{AccountID: prod.AccountID, ProductKey: prod.ProductKey, DeviceName: in.DeviceName, ThingName: thing,
		DeviceSecret: secret, SealedSecret: sealed, IotID: iot, Nickname: in.Nickname,
		Status: StatusInactive, Attributes: attrs, CreatedAt: now}, nil
}

// thingName is the effective thing name of a device given an explicit one
// ("" or the default form itself: the default).
func thingName(pk, dn, explicit string) (string, error) {
	if explicit == "" || explicit == DefaultThingName(pk, dn) {
		return DefaultThingName(pk, dn), nil
	}
	if err := ValidateThingName(explicit); err != nil {
		return "", err
	}
	return explicit, nil
}

// CreateDevice creates one device and returns it with its DeviceSecret.
func (s *Service) CreateDevice(ctx context.Context, p Principal, pk string, in DeviceInput) (Device, error) {
	ds, err := s.createDevices(ctx, p, pk, []DeviceInput{in})
	if err != nil {
		return Device{}, err
	}
	return ds[0], nil
}

// BatchInput creates up to MaxBatch devices: the given names, or Count
// devices with generated names.
type BatchInput struct {
	DeviceNames []string `json:"deviceNames,omitempty"`
	ThingNames  []string `json:"thingNames,omitempty" doc:"explicit thing names, one for each of deviceNames (\"\" for the default); unique across the instance"`
	Count       int      `json:"count,omitempty"`
}

// CreateDevices creates a batch of devices, all or none, and returns them
// with their secrets.
func (s *Service) CreateDevices(ctx context.Context, p Principal, pk string, in BatchInput) ([]Device, error) {
	if len(in.DeviceNames) > 0 && in.Count > 0 {
		return nil, invalid("count", "give deviceNames or count, not both")
	}
	if len(in.DeviceNames) > MaxBatch || in.Count > MaxBatch {
		return nil, fmt.Errorf("a batch holds at most %d devices: %w", MaxBatch, ErrTooLarge)
	}
	if in.Count < 0 {
		return nil, invalid("count", "must be positive")
	}
	if len(in.ThingNames) > 0 && (in.Count > 0 || len(in.ThingNames) != len(in.DeviceNames)) {
		return nil, invalid("thingNames", "give one for each of deviceNames (%d), got %d", len(in.DeviceNames), len(in.ThingNames))
	}
	inputs := make([]DeviceInput, 0, max(len(in.DeviceNames), in.Count))
	if in.Count > 0 {
		seen := map[string]bool{}
		for len(inputs) < in.Count {
			name, err := randString(s.rand, 16)
			if err != nil {
				return nil, err
			}
			if !seen[name] {
				seen[name] = true
				inputs = append(inputs, DeviceInput{DeviceName: name})
			}
		}
	} else {
		if len(in.DeviceNames) == 0 {
			return nil, invalid("deviceNames", "give at least one name, or a count")
		}
		seen := make(map[string]int, len(in.DeviceNames))
		for i, n := range in.DeviceNames {
			if err := ValidateDeviceName(n); err != nil {
				return nil, invalid(fmt.Sprintf("deviceNames[%d]", i), "%s", err.(*ValidationError).Reason)
			}
			if j, dup := seen[n]; dup {
				return nil, fmt.Errorf("deviceNames[%d] %q repeats deviceNames[%d]: %w", i, n, j, ErrConflict)
			}
			seen[n] = i
			di := DeviceInput{DeviceName: n}
			if len(in.ThingNames) > 0 {
				di.ThingName = in.ThingNames[i]
				if di.ThingName != "" && di.ThingName != DefaultThingName(pk, n) {
					if err := ValidateThingName(di.ThingName); err != nil {
						return nil, invalid(fmt.Sprintf("thingNames[%d]", i), "%s", err.(*ValidationError).Reason)
					}
				}
			}
			inputs = append(inputs, di)
		}
	}
	return s.createDevices(ctx, p, pk, inputs)
}

func (s *Service) createDevices(ctx context.Context, p Principal, pk string, ins []DeviceInput) ([]Device, error) {
	if err := need(p, RoleOperator); err != nil {
		return nil, err
	}
	prod, _, err := s.writableProduct(ctx, p, pk)
	if err != nil {
		return nil, err
	}
	now := s.nowUTC()
	ds := make([]Device, len(ins))
	for i, in := range ins {
		if ds[i], err = s.newDevice(prod, in, now); err != nil {
			return nil, err
		}
	}
	if err := s.store.CreateDevices(ctx, ds); err != nil {
		return nil, fmt.Errorf("creating devices: %w", err)
	}
	for i := range ds {
		ds[i].SealedSecret = nil
		s.notify(ctx, DeviceCreated, ds[i])
	}
	return ds, nil
}

// device returns a device of a product of the caller's account.
func (s *Service) device(ctx context.Context, p Principal, pk, dn string) (Device, error) {
	d, err := s.store.GetDevice(ctx, pk, dn)
	if err != nil {
		return Device{}, fmt.Errorf("device %s/%s: %w", pk, dn, err)
	}
	if d.AccountID != p.AccountID {
		return Device{}, fmt.Errorf("device %s/%s: %w", pk, dn, ErrNotFound)
	}
	d.SealedSecret = nil
	return d, nil
}

// GetDevice returns a device without its secret.
func (s *Service) GetDevice(ctx context.Context, p Principal, pk, dn string) (Device, error) {
	if err := need(p, RoleReadonly); err != nil {
		return Device{}, err
	}
	return s.device(ctx, p, pk, dn)
}

// ListDevices lists a product's devices, without secrets.
func (s *Service) ListDevices(ctx context.Context, p Principal, f DeviceFilter) ([]Device, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	if _, _, err := s.product(ctx, p, f.ProductKey); err != nil {
		return nil, err
	}
	switch f.Status {
	case "", StatusInactive, StatusOnline, StatusOffline, StatusDisabled:
	default:
		return nil, invalid("status", "must be inactive, online, offline or disabled")
	}
	if f.AttrKey != "" {
		if err := ValidateAttrKey("attribute", f.AttrKey); err != nil {
			return nil, err
		}
	}
	f.Limit = clampLimit(f.Limit)
	ds, err := s.store.ListDevices(ctx, f)
	for i := range ds {
		ds[i].SealedSecret = nil
	}
	return ds, err
}

// UpdateDevice applies a patch to a device.
func (s *Service) UpdateDevice(ctx context.Context, p Principal, pk, dn string, patch DevicePatch) (Device, error) {
	if err := need(p, RoleOperator); err != nil {
		return Device{}, err
	}
	d, err := s.device(ctx, p, pk, dn)
	if err != nil {
		return Device{}, err
	}
	if patch.Nickname != nil {
		if err := validateText("nickname", *patch.Nickname, MaxNameLen, false); err != nil {
			return Device{}, err
		}
		d.Nickname = *patch.Nickname
	}
	if patch.Attributes != nil {
		if err := ValidateAttributes("attributes", *patch.Attributes); err != nil {
			return Device{}, err
		}
		d.Attributes = *patch.Attributes
		if d.Attributes == nil {
			d.Attributes = map[string]string{}
		}
	}
	renamed, previous := false, d.ThingName
	if patch.ThingName != nil {
		name, err := thingName(pk, dn, *patch.ThingName)
		if err != nil {
			return Device{}, err
		}
		renamed, d.ThingName = name != d.ThingName, name
	}
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return Device{}, fmt.Errorf("updating device %s/%s: %w", pk, dn, err)
	}
	if renamed {
		ev := d
		ev.PreviousThingName = previous
		s.notify(ctx, DeviceRenamed, ev)
		s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.rename", Target: pk + "/" + dn, Outcome: "ok", Reason: "thing name " + d.ThingName})
	}
	return d, nil
}

// SetDisabled disables or enables a device. A disabled device may not
// connect; enabling returns it to offline (or inactive if never seen).
func (s *Service) SetDisabled(ctx context.Context, p Principal, pk, dn string, disabled bool) (Device, error) {
	if err := need(p, RoleOperator); err != nil {
		return Device{}, err
	}
	d, err := s.device(ctx, p, pk, dn)
	if err != nil {
		return Device{}, err
	}
	if disabled == (d.Status == StatusDisabled) {
		return d, nil // already so
	}
	kind := DeviceEnabled
	if disabled {
		kind = DeviceDisabled
	}
	if d.Status, err = s.store.SetDeviceDisabled(ctx, pk, dn, disabled); err != nil {
		return Device{}, fmt.Errorf("updating device %s/%s: %w", pk, dn, err)
	}
	s.notify(ctx, kind, d)
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device." + string(kind), Target: pk + "/" + dn, Outcome: "ok"})
	return d, nil
}

// DeleteDevice deletes a device.
func (s *Service) DeleteDevice(ctx context.Context, p Principal, pk, dn string) error {
	if err := need(p, RoleOperator); err != nil {
		return err
	}
	d, err := s.device(ctx, p, pk, dn)
	if err != nil {
		return err
	}
	if err := s.store.DeleteDevice(ctx, pk, dn); err != nil {
		return fmt.Errorf("deleting device %s/%s: %w", pk, dn, err)
	}
	s.notify(ctx, DeviceDeleted, d)
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.delete", Target: pk + "/" + dn, Outcome: "ok"})
	return nil
}

// DeviceSecret returns a device's secret to an admin, and audits it.
func (s *Service) DeviceSecret(ctx context.Context, p Principal, pk, dn string) (string, error) {
	if err := need(p, RoleAdmin); err != nil {
		s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.secret.read", Target: pk + "/" + dn, Outcome: "denied", Reason: "role " + string(p.Role)})
		return "", err
	}
	if _, err := s.device(ctx, p, pk, dn); err != nil {
		return "", err
	}
	d, err := s.LookupDevice(ctx, pk, dn)
	if err != nil {
		return "", err
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "device.secret.read", Target: pk + "/" + dn, Outcome: "ok"})
	return d.DeviceSecret, nil
}

// LookupDevice returns any device with its plaintext DeviceSecret, for
// in-process device-facing protocols (no account scope). This is the path
// every MQTT CONNECT takes.
func (s *Service) LookupDevice(ctx context.Context, pk, dn string) (Device, error) {
	d, err := s.store.GetDevice(ctx, pk, dn)
	if err != nil {
		return Device{}, fmt.Errorf("device %s/%s: %w", pk, dn, err)
	}
	secret, err := s.box.Open(d.SealedSecret, deviceAAD(pk, dn))
	if err != nil {
		return Device{}, fmt.Errorf("opening secret of device %s/%s: %w", pk, dn, err)
	}
	d.DeviceSecret = string(secret)
	d.SealedSecret = nil
	return d, nil
}

// LookupThing returns the device a thing name names (without its
// secret), for in-process device-facing protocols (no account scope).
func (s *Service) LookupThing(ctx context.Context, name string) (Device, error) {
	var d Device
	var err error
	if pk, dn, ok := strings.Cut(name, "."); ok {
		d, err = s.store.GetDevice(ctx, pk, dn)
		if err == nil && d.ThingName != name {
			err = ErrNotFound // renamed: its default name is not its name
		}
	} else {
		d, err = s.store.GetDeviceByThingName(ctx, name)
	}
	if err != nil {
		return Device{}, fmt.Errorf("thing %q: %w", name, err)
	}
	d.SealedSecret = nil
	return d, nil
}

// GetThing returns a device of the caller's account by its thing name.
func (s *Service) GetThing(ctx context.Context, p Principal, name string) (Device, error) {
	if err := need(p, RoleReadonly); err != nil {
		return Device{}, err
	}
	d, err := s.LookupThing(ctx, name)
	if err == nil && d.AccountID != p.AccountID {
		err = fmt.Errorf("thing %q: %w", name, ErrNotFound)
	}
	return d, err
}

// LookupDeviceAuth is LookupDevice narrowed to what a CONNECT needs
// (account, status, secret): the hot path of every MQTT CONNECT.
func (s *Service) LookupDeviceAuth(ctx context.Context, pk, dn string) (Device, error) {
	d, err := s.store.GetDeviceAuth(ctx, pk, dn)
	if err != nil {
		return Device{}, fmt.Errorf("device %s/%s: %w", pk, dn, err)
	}
	secret, err := s.box.Open(d.SealedSecret, deviceAAD(pk, dn))
	if err != nil {
		return Device{}, fmt.Errorf("opening secret of device %s/%s: %w", pk, dn, err)
	}
	d.DeviceSecret, d.SealedSecret = string(secret), nil
	return d, nil
}

// LookupDeviceOwner reads a device's account and thing name (its status
// and distribution mark come along), not its secret: the device's auth
// row, which stores may serve from memory (store/sqlite does), for
// services that name a device's owner or thing on every message.
func (s *Service) LookupDeviceOwner(ctx context.Context, pk, dn string) (Device, error) {
	d, err := s.store.GetDeviceAuth(ctx, pk, dn)
	if err != nil {
		return Device{}, fmt.Errorf("device %s/%s: %w", pk, dn, err)
	}
	d.SealedSecret = nil
	return d, nil
}

// LookupAPIKey reads an API key by id, without its hash, for a component
// that has no principal of its own (the broker, naming the owner of a
// session restored from its store before the client comes back).
func (s *Service) LookupAPIKey(ctx context.Context, id string) (APIKey, error) {
	k, err := s.store.GetAPIKey(ctx, id)
	if err != nil {
		return APIKey{}, fmt.Errorf("API key %s: %w", id, err)
	}
	k.Hash = nil
	return k, nil
}

// Stats returns registry sizes.
func (s *Service) Stats(ctx context.Context) (Stats, error) { return s.store.Stats(ctx) }
