package sqlite

import (
	"context"
	"database/sql"
	"errors"
)

// ShadowSettings implements shadowsvc.SettingsStore: a product's shadow
// settings, nil when none are stored.
func (s *Store) ShadowSettings(ctx context.Context, pk string) ([]byte, error) {
	var raw []byte
	err := s.queryRow(ctx, `SELECT settings FROM shadow_settings WHERE product_key = ?`, pk).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return raw, err
}

// SetShadowSettings implements shadowsvc.SettingsStore.
func (s *Store) SetShadowSettings(ctx context.Context, pk string, raw []byte) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO shadow_settings(product_key, settings) VALUES (?, ?)
			ON CONFLICT(product_key) DO UPDATE SET settings = excluded.settings`, pk, raw)
		return err
	})
}
