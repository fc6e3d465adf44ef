package sqlite

import (
	"context"
	"database/sql"

	"github.com/corral-iot/corral/internal/registry"
)

// SetProductConfig implements registry.ConfigStore.
func (s *Store) SetProductConfig(ctx context.Context, pk string, c registry.ProductConfig) error {
	return s.writeOne(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO product_configs(product_key, config_id, content, sign, created_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(product_key) DO UPDATE SET config_id = excluded.config_id, content = excluded.content, sign = excluded.sign, created_at = excluded.created_at`,
			pk, c.ConfigID, c.Content, c.Sign, ms(c.CreatedAt))
		return err
	})
}

// ProductConfig implements registry.ConfigStore.
func (s *Store) ProductConfig(ctx context.Context, pk string) (registry.ProductConfig, error) {
	var c registry.ProductConfig
	var created int64
	err := s.queryRow(ctx, `SELECT config_id, content, sign, created_at FROM product_configs WHERE product_key = ?`, pk).Scan(&c.ConfigID, &c.Content, &c.Sign, &created)
	if err != nil {
		return registry.ProductConfig{}, notFound(err)
	}
	c.Size, c.SignMethod, c.CreatedAt = len(c.Content), "Sha256", fromMS(created)
	return c, nil
}
