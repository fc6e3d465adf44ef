package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/corral-iot/corral/internal/registry"
)

// UpdateDesired implements registry.DesiredStore: the read, fn and the
// write are one operation of the group-committing writer.
func (s *Store) UpdateDesired(ctx context.Context, pk, dn string, fn func([]registry.DesiredValue) ([]registry.DesiredValue, error)) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		cur, err := desiredRows(ctx, tx, pk, dn)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_desired WHERE product_key = ? AND device_name = ?`, pk, dn); err != nil {
			return err
		}
		for _, v := range next {
			if _, err := tx.ExecContext(ctx, `INSERT INTO device_desired(product_key, device_name, identifier, value, version, time, delivered_version) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				pk, dn, v.Identifier, string(v.Value), v.Version, ms(v.Time), v.Delivered); err != nil {
				return err
			}
		}
		return nil
	})
}

// Desired implements registry.DesiredStore.
func (s *Store) Desired(ctx context.Context, pk, dn string) ([]registry.DesiredValue, error) {
	return desiredRows(ctx, s.r, pk, dn)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func desiredRows(ctx context.Context, q querier, pk, dn string) ([]registry.DesiredValue, error) {
	rows, err := q.QueryContext(ctx, `SELECT identifier, value, version, time, delivered_version FROM device_desired
		WHERE product_key = ? AND device_name = ? ORDER BY identifier`, pk, dn)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []registry.DesiredValue{}
	for rows.Next() {
		var v registry.DesiredValue
		var val string
		var t int64
		if err := rows.Scan(&v.Identifier, &val, &v.Version, &t, &v.Delivered); err != nil {
			return nil, err
		}
		v.Value, v.Time = json.RawMessage(val), fromMS(t)
		out = append(out, v)
	}
	return out, rows.Err()
}

// UndeliveredDesired implements registry.DesiredStore.
func (s *Store) UndeliveredDesired(ctx context.Context, add func(pk, dn string)) error {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT product_key, device_name FROM device_desired WHERE delivered_version < version`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var pk, dn string
		if err := rows.Scan(&pk, &dn); err != nil {
			return err
		}
		add(pk, dn)
	}
	return rows.Err()
}
