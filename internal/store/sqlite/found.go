package sqlite

import (
	"context"
	"database/sql"

	"github.com/corral-iot/corral/internal/registry"
)

// AddFound implements registry.FoundStore.
func (s *Store) AddFound(ctx context.Context, gw string, fs []registry.FoundDevice, max int) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		for _, f := range fs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO found_subdevices(gateway, product_key, device_name, found_at) VALUES (?, ?, ?, ?)
				ON CONFLICT(gateway, product_key, device_name) DO UPDATE SET found_at = excluded.found_at`,
				gw, f.ProductKey, f.DeviceName, ms(f.FoundAt)); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM found_subdevices WHERE gateway = ? AND (product_key, device_name) NOT IN
			(SELECT product_key, device_name FROM found_subdevices WHERE gateway = ? ORDER BY found_at DESC, product_key DESC, device_name DESC LIMIT ?)`,
			gw, gw, max)
		return err
	})
}

// ListFound implements registry.FoundStore.
func (s *Store) ListFound(ctx context.Context, gw string) ([]registry.FoundDevice, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT product_key, device_name, found_at FROM found_subdevices WHERE gateway = ?
		ORDER BY found_at, product_key, device_name`, gw)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []registry.FoundDevice{}
	for rows.Next() {
		var f registry.FoundDevice
		var at int64
		if err := rows.Scan(&f.ProductKey, &f.DeviceName, &at); err != nil {
			return nil, err
		}
		f.FoundAt = fromMS(at)
		out = append(out, f)
	}
	return out, rows.Err()
}

// RemoveFound implements registry.FoundStore.
func (s *Store) RemoveFound(ctx context.Context, gw string, subs [][2]string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		for _, k := range subs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM found_subdevices WHERE gateway = ? AND product_key = ? AND device_name = ?`, gw, k[0], k[1]); err != nil {
				return err
			}
		}
		return nil
	})
}
