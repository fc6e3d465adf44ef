package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// The hot statements of PutShadow, prepared once on the writer
// connection. The version check is in the write itself (no row changed:
// stale), so a write reads nothing of its own. A shadow's history is its
// current version, when kept (shadows.kept = 1), and the versions it
// superseded in shadow_history (migration 00023; a row whose kept is NULL
// was written before it: its history is all in shadow_history). So a
// create is one statement; an update three (copy, update, trim), or two
// when it keeps at most its own version (update, then drop the rest).
const (
	// qShadowCreate stores a shadow where none is, or over a tombstone
	// (prev 0).
	qShadowCreate = `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted, kept) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT(product_key, device_name, name) DO UPDATE SET doc = excluded.doc, version = excluded.version, updated_at = excluded.updated_at, deleted = 0, kept = excluded.kept
		WHERE shadows.deleted = 1 OR shadows.version = 0`
	// qShadowInsert stores a shadow only where neither a shadow nor a
	// tombstone is (prev shadow.NoneStored).
	qShadowInsert = `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted, kept) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT(product_key, device_name, name) DO NOTHING`
	// qShadowUpdate replaces a live shadow at version prev.
	qShadowUpdate = `UPDATE shadows SET doc = ?, version = ?, updated_at = ?, deleted = 0, kept = ?
		WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0 AND version = ?`
	// qHistorySupersede copies the live shadow at version prev, if it is
	// part of its history, into shadow_history before an update replaces
	// it: nothing for a stale update.
	qHistorySupersede = `INSERT OR REPLACE INTO shadow_history(product_key, device_name, name, version, doc, updated_at)
		SELECT product_key, device_name, name, version, doc, updated_at FROM shadows
		WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0 AND version = ? AND kept = 1`
	// qHistoryTrim drops what is older than the newest ?4 versions below
	// ?5. The subquery walks ?4+1 entries of the primary key backwards,
	// and the DELETE a range of it.
	qHistoryTrim = `DELETE FROM shadow_history WHERE product_key = ?1 AND device_name = ?2 AND name = ?3 AND version <= (
		SELECT version FROM shadow_history WHERE product_key = ?1 AND device_name = ?2 AND name = ?3 AND version < ?5
		ORDER BY version DESC LIMIT 1 OFFSET ?4)`
	qHistoryClear = `DELETE FROM shadow_history WHERE product_key = ? AND device_name = ? AND name = ?`
)

// PutShadow implements shadow.Store.
func (s *Store) PutShadow(ctx context.Context, k shadow.Key, prev int64, st shadow.Stored, keep int) error {
	p := shadow.Put{Key: k, Prev: prev, S: st, Keep: keep}
	var stmts putStmts
	if err := s.prepPut(ctx, &stmts, p); err != nil {
		return err
	}
	// A stale write changes nothing (its version check is in each of its
	// statements), and nothing else but the store failing fails one: no
	// savepoint (writeBatch), the staleness told apart from a failure.
	var stale error
	fn := func(tx *sql.Tx) error {
		err := putOne(ctx, tx, &stmts, p)
		if errors.Is(err, shadow.ErrStale) {
			stale = err
			return nil
		}
		return err
	}
	var err error
	if prev <= 0 {
		err = s.writeOne(ctx, fn)
	} else {
		err = s.writeBatch(ctx, fn)
	}
	if err != nil {
		return err
	}
	return stale
}

// PutShadows implements shadow.Store: one operation of the writer, a
// stale put changing nothing of its own (its statement matched no row).
func (s *Store) PutShadows(ctx context.Context, puts []shadow.Put) ([]error, error) {
	var stmts putStmts
	for _, p := range puts {
		if err := s.prepPut(ctx, &stmts, p); err != nil {
			return nil, err
		}
	}
	errs := make([]error, len(puts))
	// As PutShadow's: a stale put changes nothing, no savepoint needed.
	err := s.writeBatch(ctx, func(tx *sql.Tx) error {
		for i, p := range puts {
			err := putOne(ctx, tx, &stmts, p)
			if err != nil && !errors.Is(err, shadow.ErrStale) {
				return err
			}
			errs[i] = err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// putStmts are the prepared statements of shadow writes, the ones a write
// needs set by prepPut.
type putStmts struct {
	create, insert, update, supersede, histTrim, histClear *sql.Stmt
}

// prepPut sets the statements p needs.
func (s *Store) prepPut(ctx context.Context, st *putStmts, p shadow.Put) error {
	need := func(dst **sql.Stmt, q string) error {
		if *dst != nil {
			return nil
		}
		var err error
		if *dst, err = s.wprep(ctx, q); err != nil {
			return fmt.Errorf("preparing: %w", err)
		}
		return nil
	}
	switch {
	case p.Prev == shadow.NoneStored:
		return need(&st.insert, qShadowInsert)
	case p.Prev == 0:
		return need(&st.create, qShadowCreate)
	}
	err := need(&st.update, qShadowUpdate)
	if err == nil {
		err = need(&st.histClear, qHistoryClear)
	}
	if err == nil && p.Keep > 1 {
		err = need(&st.supersede, qHistorySupersede)
	}
	if err == nil && p.Keep > 0 {
		err = need(&st.histTrim, qHistoryTrim)
	}
	return err
}

// putOne runs one write of a shadow in tx: ErrStale when its version
// check fails (nothing changed).
func putOne(ctx context.Context, tx *sql.Tx, stmts *putStmts, p shadow.Put) error {
	k, st, at := p.Key, p.S, ms(p.S.UpdatedAt)
	kept := 0 // 1: the current version is part of the history
	if p.Keep > 0 {
		kept = 1
	}
	var res sql.Result
	var err error
	switch p.Prev {
	case shadow.NoneStored:
		// A created shadow has no history before it (a tombstone's went
		// with the shadow).
		res, err = tx.StmtContext(ctx, stmts.insert).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, st.Doc, st.Version, at, kept)
	case 0:
		res, err = tx.StmtContext(ctx, stmts.create).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, st.Doc, st.Version, at, kept)
	default:
		if p.Keep > 1 {
			if _, err := tx.StmtContext(ctx, stmts.supersede).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, p.Prev); err != nil {
				return err
			}
		}
		res, err = tx.StmtContext(ctx, stmts.update).ExecContext(ctx, st.Doc, st.Version, at, kept, k.ProductKey, k.DeviceName, k.Name, p.Prev)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return shadow.ErrStale // nothing changed (a stale update copied nothing)
	}
	if p.Prev <= 0 {
		return nil
	}
	switch {
	case p.Keep <= 1:
		// No superseded version kept (usually none stored: one seek).
		_, err = tx.StmtContext(ctx, stmts.histClear).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name)
	case st.Version > int64(p.Keep):
		// Versions are distinct and positive, all below this one: with
		// st.Version <= keep, fewer than keep are, nothing to trim.
		_, err = tx.StmtContext(ctx, stmts.histTrim).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, p.Keep-1, st.Version)
	}
	return err
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
		if _, err := tx.ExecContext(ctx, `UPDATE shadows SET doc = NULL, kept = NULL, deleted = 1, updated_at = ? WHERE product_key = ? AND device_name = ? AND name = ?`,
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

// ShadowHistory implements shadow.Store: the versions in shadow_history
// and the current one if kept, read in one transaction.
func (s *Store) ShadowHistory(ctx context.Context, k shadow.Key, since int64) ([]shadow.Stored, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var cur shadow.Stored
	var at int64
	var kept sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT doc, version, updated_at, kept FROM shadows WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0`,
		k.ProductKey, k.DeviceName, k.Name).Scan(&cur.Doc, &cur.Version, &at, &kept)
	if errors.Is(err, sql.ErrNoRows) {
		return []shadow.Stored{}, nil // a tombstone's history went with the shadow
	}
	if err != nil {
		return nil, err
	}
	cur.UpdatedAt = fromMS(at)
	rows, err := tx.QueryContext(ctx, `SELECT doc, version, updated_at FROM shadow_history WHERE product_key = ? AND device_name = ? AND name = ? AND version > ?
		ORDER BY version`, k.ProductKey, k.DeviceName, k.Name, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []shadow.Stored{}
	for rows.Next() {
		var st shadow.Stored
		if err := rows.Scan(&st.Doc, &st.Version, &at); err != nil {
			return nil, err
		}
		st.UpdatedAt = fromMS(at)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if kept.Valid && kept.Int64 == 1 && cur.Version > since {
		out = append(out, cur)
	}
	return out, nil
}
