package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

// The shadow.Store port. Writes go through the group-committing writer,
// each one operation (the version check and the write in one transaction).

// GetShadow implements shadow.Store.
func (s *Store) GetShadow(ctx context.Context, k shadow.Key) (shadow.Stored, error) {
	var st shadow.Stored
	var at int64
	err := s.queryRow(ctx, `SELECT doc, version, updated_at, deleted FROM shadows WHERE product_key = ? AND device_name = ? AND name = ?`,
		k.ProductKey, k.DeviceName, k.Name).Scan(&st.Doc, &st.Version, &at, &st.Deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return shadow.Stored{}, shadow.ErrNoShadow
	}
	st.UpdatedAt = fromMS(at)
	return st, err
}

// storedVersion reads the version a write is checked against: a live
// shadow's, or 0 for none or a tombstone.
func storedVersion(ctx context.Context, tx *sql.Tx, k shadow.Key) (v int64, exists bool, err error) {
	var deleted bool
	err = tx.QueryRowContext(ctx, `SELECT version, deleted FROM shadows WHERE product_key = ? AND device_name = ? AND name = ?`,
		k.ProductKey, k.DeviceName, k.Name).Scan(&v, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if deleted {
		v = 0
	}
	return v, true, err
}

// PutShadow implements shadow.Store.
func (s *Store) PutShadow(ctx context.Context, k shadow.Key, prev int64, st shadow.Stored, keep int) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		cur, _, err := storedVersion(ctx, tx, k)
		if err != nil {
			return err
		}
		if cur != prev {
			return shadow.ErrStale
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted) VALUES (?, ?, ?, ?, ?, ?, 0)
			ON CONFLICT(product_key, device_name, name) DO UPDATE SET doc = excluded.doc, version = excluded.version, updated_at = excluded.updated_at, deleted = 0`,
			k.ProductKey, k.DeviceName, k.Name, st.Doc, st.Version, ms(st.UpdatedAt)); err != nil {
			return err
		}
		if keep <= 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO shadow_history(product_key, device_name, name, version, doc, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
			k.ProductKey, k.DeviceName, k.Name, st.Version, st.Doc, ms(st.UpdatedAt)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM shadow_history WHERE product_key = ? AND device_name = ? AND name = ? AND version <= (
			SELECT version FROM shadow_history WHERE product_key = ? AND device_name = ? AND name = ? ORDER BY version DESC LIMIT 1 OFFSET ?)`,
			k.ProductKey, k.DeviceName, k.Name, k.ProductKey, k.DeviceName, k.Name, keep)
		return err
	})
}

// DeleteShadow implements shadow.Store.
func (s *Store) DeleteShadow(ctx context.Context, k shadow.Key, prev int64, at time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		cur, exists, err := storedVersion(ctx, tx, k)
		if err != nil {
			return err
		}
		if !exists || cur == 0 {
			return shadow.ErrNoShadow
		}
		if cur != prev {
			return shadow.ErrStale
		}
		if _, err := tx.ExecContext(ctx, `UPDATE shadows SET doc = NULL, deleted = 1, updated_at = ? WHERE product_key = ? AND device_name = ? AND name = ?`,
			ms(at), k.ProductKey, k.DeviceName, k.Name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM shadow_history WHERE product_key = ? AND device_name = ? AND name = ?`, k.ProductKey, k.DeviceName, k.Name)
		return err
	})
}

// ListShadows implements shadow.Store.
func (s *Store) ListShadows(ctx context.Context, pk, dn, after string, limit int) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM shadows WHERE product_key = ? AND device_name = ? AND name > ? AND deleted = 0
		ORDER BY name LIMIT ?`, pk, dn, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// ShadowHistory implements shadow.Store.
func (s *Store) ShadowHistory(ctx context.Context, k shadow.Key, since int64) ([]shadow.Stored, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT doc, version, updated_at FROM shadow_history WHERE product_key = ? AND device_name = ? AND name = ? AND version > ?
		ORDER BY version`, k.ProductKey, k.DeviceName, k.Name, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []shadow.Stored{}
	for rows.Next() {
		var st shadow.Stored
		var at int64
		if err := rows.Scan(&st.Doc, &st.Version, &at); err != nil {
			return nil, err
		}
		st.UpdatedAt = fromMS(at)
		out = append(out, st)
	}
	return out, rows.Err()
}
