package shadowsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
)

// Settings are a product's shadow settings.
type Settings struct {
	// MaxStateBytes bounds desired + reported of each shadow after an
	// update is merged (1 to 65536; 8192 by default).
	MaxStateBytes int `json:"maxStateBytes"`
	// CheckThingModel checks the desired and reported values of updates
	// against the product's thing model (off by default).
	CheckThingModel bool `json:"checkThingModel"`
	// Presence keeps reported.connected in each device's classic shadow
	// (on by default).
	Presence bool `json:"presence"`
	// History is how many versions of each shadow are kept for
	// "changed since" and the history API (0 to MaxHistory; 10 by
	// default; 0 keeps none).
	History int `json:"history"`
}

// Bounds of the settings.
const (
	DefaultHistory = 10
	MaxHistory     = 100
)

// DefaultSettings are the settings of a product that set none.
func DefaultSettings() Settings {
	return Settings{MaxStateBytes: shadow.DefaultMaxStateBytes, Presence: true, History: DefaultHistory}
}

// ErrInvalidSettings wraps every refusal of SetSettings.
var ErrInvalidSettings = errors.New("invalid shadow settings")

// Validate refuses settings out of bounds.
func (s Settings) Validate() error {
	if s.MaxStateBytes < 1 || s.MaxStateBytes > shadow.MaxMaxStateBytes {
		return fmt.Errorf("%w: maxStateBytes must be 1 to %d", ErrInvalidSettings, shadow.MaxMaxStateBytes)
	}
	if s.History < 0 || s.History > MaxHistory {
		return fmt.Errorf("%w: history must be 0 to %d", ErrInvalidSettings, MaxHistory)
	}
	return nil
}

func (s Settings) limits() shadow.Limits { return shadow.Limits{MaxStateBytes: s.MaxStateBytes} }

// SettingsStore keeps products' shadow settings as opaque JSON.
type SettingsStore interface {
	// ShadowSettings returns a product's settings, nil when none are
	// stored.
	ShadowSettings(ctx context.Context, pk string) ([]byte, error)
	// SetShadowSettings stores a product's settings.
	SetShadowSettings(ctx context.Context, pk string, raw []byte) error
}

// settingsTTL bounds how stale a product's settings changed on another
// node may be read here (a change on this node drops them at once).
const settingsTTL = 30 * time.Second

// Settings returns a product's shadow settings (the defaults when it set
// none). It does not check that the product exists.
func (s *Service) Settings(ctx context.Context, pk string) (Settings, error) {
	return s.settings.GetOrLoad(pk, func() (Settings, error) { return s.loadSettings(ctx, pk) })
}

func (s *Service) loadSettings(ctx context.Context, pk string) (Settings, error) {
	set := DefaultSettings()
	set.History = s.o.History
	if s.o.Settings == nil {
		return set, nil
	}
	raw, err := s.o.Settings.ShadowSettings(ctx, pk)
	if err != nil {
		return Settings{}, fmt.Errorf("reading shadow settings of %q: %w", pk, err)
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &set); err != nil {
			return Settings{}, fmt.Errorf("reading shadow settings of %q: %w", pk, err)
		}
	}
	return set, nil
}

// UpdateSettings applies a JSON patch of settings (members left out keep
// their value) and stores the result; bad input changes nothing and is
// ErrInvalidSettings. The caller checks that the product exists and may
// be changed.
func (s *Service) UpdateSettings(ctx context.Context, pk string, patch []byte) (Settings, error) {
	set, err := s.Settings(ctx, pk)
	if err != nil {
		return Settings{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&set); err != nil {
		return Settings{}, fmt.Errorf("%w: %s", ErrInvalidSettings, jsonReason(err))
	}
	if dec.More() {
		return Settings{}, fmt.Errorf("%w: trailing data after the object", ErrInvalidSettings)
	}
	if err := set.Validate(); err != nil {
		return Settings{}, err
	}
	raw, _ := json.Marshal(set)
	err = s.o.Settings.SetShadowSettings(ctx, pk, raw)
	s.settings.Delete(pk) // after the write: a load racing it is not kept
	if err != nil {
		return Settings{}, fmt.Errorf("storing shadow settings of %q: %w", pk, err)
	}
	return set, nil
}

// jsonReason describes a decoding error without quoting the input.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s must be a %s", te.Field, te.Type)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field") {
		return strings.TrimPrefix(msg, "json: ")
	}
	return "not a JSON object"
}

// ProductChanged implements registry.ProductObserver: a product's
// settings are read again after any change (a deleted product's are gone
// with it), and the event is passed on to every observer that is a
// registry.ProductObserver too (such as Webhooks, which caches URLs).
func (s *Service) ProductChanged(ctx context.Context, kind registry.ProductEventKind, pk string) {
	s.settings.Delete(pk)
	s.mu.RLock()
	obs := s.observers
	s.mu.RUnlock()
	for _, o := range obs {
		if po, ok := o.(registry.ProductObserver); ok {
			po.ProductChanged(ctx, kind, pk)
		}
	}
}

// errCheck wraps thing-model refusals.
var errCheck = errors.New("thing model check")

type checkError struct{ msg string }

func (e *checkError) Error() string { return e.msg }
func (e *checkError) Unwrap() error { return errCheck }

// checkModel checks the desired and reported sections of an update
// request (already accepted by the shadow core) against the product's
// thing model, as a property post is checked: the error names the
// property. Deletions (null, or "null" in Alibaba's dialect) are not
// checked. A product without a model refuses every value.
func (s *Service) checkModel(ctx context.Context, pk string, req []byte, alibaba bool) error {
	var r struct {
		State struct {
			Desired  json.RawMessage `json:"desired"`
			Reported json.RawMessage `json:"reported"`
		} `json:"state"`
	}
	if err := json.Unmarshal(req, &r); err != nil {
		return nil // the core took it; nothing more to check
	}
	m, err := s.o.Devices.LookupThingModel(ctx, pk)
	if err != nil {
		return fmt.Errorf("reading thing model: %w", err)
	}
	for _, sec := range []struct {
		name string
		raw  json.RawMessage
	}{{"desired", r.State.Desired}, {"reported", r.State.Reported}} {
		var vals map[string]json.RawMessage
		if json.Unmarshal(sec.raw, &vals) != nil || len(vals) == 0 {
			continue // absent, null or "null"
		}
		for id, v := range vals {
			if t := string(v); t == "null" || (alibaba && t == `"null"`) {
				delete(vals, id)
			}
		}
		if len(vals) == 0 {
			continue
		}
		if m == nil {
			return &checkError{sec.name + ": the product has no thing model"}
		}
		params, _ := json.Marshal(vals)
		if _, err := m.ValidateProperties(params); err != nil {
			return &checkError{sec.name + "." + err.Error()}
		}
	}
	return nil
}
