package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corral-iot/corral/internal/distribution/jobs"
)

// The jobs.CodeStore port (migration 00021): cross-account authorisation
// codes and grants, by hash.

// PutAuthCode implements jobs.CodeStore.
func (s *Store) PutAuthCode(ctx context.Context, hash, accountID string, expires time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO dist_auth_codes(code_hash, account_id, expires_at) VALUES (?, ?, ?)`, hash, accountID, ms(expires))
	if isUnique(err) {
		return fmt.Errorf("authorisation code: %w", jobs.ErrConflict)
	}
	return err
}

// TakeAuthCode implements jobs.CodeStore: one transaction drops the
// expired codes and deletes this one if it is still good.
func (s *Store) TakeAuthCode(ctx context.Context, hash, accountID string, now time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM dist_auth_codes WHERE expires_at <= ?`, ms(now)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM dist_auth_codes WHERE code_hash = ? AND account_id = ?`, hash, accountID)
		return jobAffected(res, err, "authorisation code")
	})
}

// PutGrant implements jobs.CodeStore.
func (s *Store) PutGrant(ctx context.Context, hash, from, to string, created time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO dist_grants(grant_hash, from_account, to_account, created_at) VALUES (?, ?, ?, ?)`, hash, from, to, ms(created))
	if isUnique(err) {
		return fmt.Errorf("grant: %w", jobs.ErrConflict)
	}
	return err
}

// GetGrant implements jobs.CodeStore.
func (s *Store) GetGrant(ctx context.Context, hash string) (from, to string, err error) {
	err = s.queryRow(ctx, `SELECT from_account, to_account FROM dist_grants WHERE grant_hash = ?`, hash).Scan(&from, &to)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("grant: %w", jobs.ErrNotFound)
	}
	return from, to, err
}

// Grants implements jobs.CodeStore.
func (s *Store) Grants(ctx context.Context, to string) ([]jobs.GrantInfo, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT grant_hash, from_account, created_at FROM dist_grants WHERE to_account = ? ORDER BY created_at, grant_hash`, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	gs := []jobs.GrantInfo{}
	for rows.Next() {
		var g jobs.GrantInfo
		var created int64
		if err := rows.Scan(&g.ID, &g.FromAccount, &created); err != nil {
			return nil, err
		}
		g.Created = fromMS(created)
		gs = append(gs, g)
	}
	return gs, rows.Err()
}

// DeleteGrant implements jobs.CodeStore.
func (s *Store) DeleteGrant(ctx context.Context, hash string) error {
	res, err := s.exec(ctx, `DELETE FROM dist_grants WHERE grant_hash = ?`, hash)
	return jobAffected(res, err, "grant")
}
