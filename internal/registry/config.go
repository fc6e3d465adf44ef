package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/corral-iot/corral/internal/audit"
)

// Remote configuration: a product's configuration file, which its devices
// fetch (thing.config.get answers with a download URL and the file's
// SHA-256) or are told about (thing.config.push). One file a product; a
// new upload replaces it with a new configId.

// ProductConfig is a product's configuration file and its identity.
type ProductConfig struct {
	ConfigID   string    `json:"configId"`
	Size       int       `json:"configSize"`
	Sign       string    `json:"sign"`       // hex SHA-256 of the content
	SignMethod string    `json:"signMethod"` // "Sha256", as the Link SDKs expect
	CreatedAt  time.Time `json:"createdAt"`
	Content    []byte    `json:"-"`
}

// ConfigStore persists products' configuration files.
type ConfigStore interface {
	// SetProductConfig stores (or replaces) a product's file.
	SetProductConfig(ctx context.Context, pk string, c ProductConfig) error
	// ProductConfig returns a product's file; ErrNotFound without one.
	ProductConfig(ctx context.Context, pk string) (ProductConfig, error)
}

// MaxConfigSize is the largest configuration file, as on Alibaba's
// platform (64 KB).
const MaxConfigSize = 64 << 10

// SetProductConfig uploads the configuration file of a product of the
// caller's account.
func (s *Service) SetProductConfig(ctx context.Context, p Principal, pk string, content []byte) (ProductConfig, error) {
	if err := need(p, RoleOperator); err != nil {
		return ProductConfig{}, err
	}
	if _, _, err := s.product(ctx, p, pk); err != nil {
		return ProductConfig{}, err
	}
	if len(content) == 0 || len(content) > MaxConfigSize {
		return ProductConfig{}, invalid("content", "a configuration file is 1 byte to %d KB, got %d bytes", MaxConfigSize>>10, len(content))
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return ProductConfig{}, fmt.Errorf("configId: %w", err)
	}
	sum := sha256.Sum256(content)
	c := ProductConfig{ConfigID: hex.EncodeToString(id), Size: len(content), Sign: hex.EncodeToString(sum[:]), SignMethod: "Sha256",
		CreatedAt: s.nowUTC(), Content: append([]byte(nil), content...)}
	if err := s.store.SetProductConfig(ctx, pk, c); err != nil {
		return ProductConfig{}, fmt.Errorf("storing the configuration of %s: %w", pk, err)
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "product.config.set", Target: pk, Outcome: "ok",
		Reason: fmt.Sprintf("configId %s, %d bytes", c.ConfigID, c.Size)})
	return c, nil
}

// GetProductConfig returns the configuration file of a product of the
// caller's account.
func (s *Service) GetProductConfig(ctx context.Context, p Principal, pk string) (ProductConfig, error) {
	if err := need(p, RoleReadonly); err != nil {
		return ProductConfig{}, err
	}
	if _, _, err := s.product(ctx, p, pk); err != nil {
		return ProductConfig{}, err
	}
	return s.store.ProductConfig(ctx, pk)
}

// LookupProductConfig returns any product's configuration file (for its
// devices; no principal).
func (s *Service) LookupProductConfig(ctx context.Context, pk string) (ProductConfig, error) {
	return s.store.ProductConfig(ctx, pk)
}
