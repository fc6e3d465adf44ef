package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
	sqlitedrv "modernc.org/sqlite"
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
// stale). A shadow's history is its current version (when kept) and the
// superseded ones in its row's past (shadowpast.go), older ones that did
// not fit there in shadow_history; so a create is one statement, and an
// update of a small document a read of the row it then writes.
const (
	// qShadowCreate stores a shadow where none is, or over a tombstone
	// (prev 0).
	qShadowCreate = `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted, past) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT(product_key, device_name, name) DO UPDATE SET doc = excluded.doc, version = excluded.version, updated_at = excluded.updated_at, deleted = 0, past = excluded.past
		WHERE shadows.deleted = 1 OR shadows.version = 0`
	// qShadowInsert stores a shadow only where neither a shadow nor a
	// tombstone is (prev shadow.NoneStored).
	qShadowInsert = `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted, past) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT(product_key, device_name, name) DO NOTHING`
	// qShadowUpdate replaces a live shadow at version prev, its past
	// given.
	qShadowUpdate = `UPDATE shadows SET doc = ?, version = ?, updated_at = ?, deleted = 0, past = ?
		WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0 AND version = ?`
	// qShadowSupersede replaces a live shadow at version prev, its past
	// built from the row it replaces; it returns the past only when
	// pending (nextPast).
	qShadowSupersede = `UPDATE shadows SET past = corral_shadow_past(doc, version, updated_at, past, ?4), doc = ?1, version = ?2, updated_at = ?3, deleted = 0
		WHERE product_key = ?5 AND device_name = ?6 AND name = ?7 AND deleted = 0 AND version = ?8
		RETURNING CASE WHEN past >= X'04' THEN past END`
	qShadowSetPast = `UPDATE shadows SET past = ? WHERE product_key = ? AND device_name = ? AND name = ?`
	// qShadowPrev reads the live shadow at version prev an update with
	// history supersedes (a driver without corral_shadow_past).
	qShadowPrev = `SELECT doc, updated_at, past FROM shadows
		WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0 AND version = ?`
	qHistoryAdd = `INSERT OR REPLACE INTO shadow_history(product_key, device_name, name, version, doc, updated_at) VALUES (?, ?, ?, ?, ?, ?)`
	// qHistoryTrim drops what is older than the newest ?4 versions below
	// ?5. The subquery walks ?4+1 entries of the primary key backwards,
	// and the DELETE a range of it. It runs before versions are added, so
	// that they take the place the oldest left in the shadow's leaf page.
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
	fn := func(tx *sql.Tx) error { return putOne(ctx, tx, &stmts, p) }
	if keep <= 0 || prev <= 0 {
		return s.writeOne(ctx, fn)
	}
	return s.write(ctx, fn)
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
	err := s.write(ctx, func(tx *sql.Tx) error {
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
	create, insert, clear, update, prev, setPast, histAdd, histTrim, histClear *sql.Stmt
	fn                                                                         bool // update is qShadowSupersede
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
	switch p.Prev {
	case shadow.NoneStored:
		return need(&st.insert, qShadowInsert)
	case 0:
		return need(&st.create, qShadowCreate)
	}
	if p.Keep <= 0 {
		if err := need(&st.clear, qShadowUpdate); err != nil {
			return err
		}
		return need(&st.histClear, qHistoryClear)
	}
	qs := []struct {
		dst **sql.Stmt
		q   string
	}{{&st.histAdd, qHistoryAdd}, {&st.histTrim, qHistoryTrim}, {&st.histClear, qHistoryClear}}
	if st.fn = s.pastFn; st.fn {
		qs = append(qs, struct {
			dst **sql.Stmt
			q   string
		}{&st.update, qShadowSupersede}, struct {
			dst **sql.Stmt
			q   string
		}{&st.setPast, qShadowSetPast})
	} else {
		qs = append(qs, struct {
			dst **sql.Stmt
			q   string
		}{&st.update, qShadowUpdate}, struct {
			dst **sql.Stmt
			q   string
		}{&st.prev, qShadowPrev})
	}
	for _, q := range qs {
		if err := need(q.dst, q.q); err != nil {
			return err
		}
	}
	return nil
}

// putOne runs one write of a shadow in tx: ErrStale when its version
// check fails (nothing changed).
func putOne(ctx context.Context, tx *sql.Tx, stmts *putStmts, p shadow.Put) error {
	k, st, at := p.Key, p.S, ms(p.S.UpdatedAt)
	// A created shadow has no history before it: a tombstone's was
	// dropped with the shadow.
	past := []byte{0}
	if p.Keep > 0 {
		past[0] = pastCurrent
	}
	var res sql.Result
	var err error
	switch p.Prev {
	case shadow.NoneStored:
		res, err = tx.StmtContext(ctx, stmts.insert).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, st.Doc, st.Version, at, past)
	case 0:
		res, err = tx.StmtContext(ctx, stmts.create).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, st.Doc, st.Version, at, past)
	default:
		if p.Keep > 0 {
			return supersede(ctx, tx, stmts, p)
		}
		res, err = tx.StmtContext(ctx, stmts.clear).ExecContext(ctx, st.Doc, st.Version, at, past, k.ProductKey, k.DeviceName, k.Name, p.Prev)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return shadow.ErrStale // nothing changed
	}
	if p.Prev > 0 && p.Keep <= 0 {
		// Nothing kept: the row's past went with the update, and what
		// shadow_history holds of the shadow (usually nothing: one seek)
		// goes here.
		_, err = tx.StmtContext(ctx, stmts.histClear).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name)
	}
	return err
}

// supersede writes the update p (keeping some versions) over the live
// shadow at p.Prev, its row's past built from the row in the UPDATE itself
// (corral_shadow_past) where the driver has the function, else from a read
// of the row; ErrStale (nothing changed) if no shadow is at p.Prev. When
// shadow_history has to change (a version that does not fit the row, or
// older ones to trim), the past comes back pending and is finished here.
func supersede(ctx context.Context, tx *sql.Tx, stmts *putStmts, p shadow.Put) error {
	k, st := p.Key, p.S
	var pending []byte
	if stmts.fn {
		err := tx.StmtContext(ctx, stmts.update).QueryRowContext(ctx, st.Doc, st.Version, ms(st.UpdatedAt), p.Keep,
			k.ProductKey, k.DeviceName, k.Name, p.Prev).Scan(&pending)
		if errors.Is(err, sql.ErrNoRows) {
			return shadow.ErrStale
		}
		if err != nil {
			return err
		}
	} else {
		cur := pastVersion{version: p.Prev}
		var old []byte
		err := tx.StmtContext(ctx, stmts.prev).QueryRowContext(ctx, k.ProductKey, k.DeviceName, k.Name, p.Prev).Scan(&cur.doc, &cur.at, &old)
		if errors.Is(err, sql.ErrNoRows) {
			return shadow.ErrStale
		}
		if err != nil {
			return err
		}
		next, err := nextPast(cur, old, p.Keep)
		if err != nil {
			return fmt.Errorf("shadow %s/%s %q: %w", k.ProductKey, k.DeviceName, k.Name, err)
		}
		if next[0]&pastPending == 0 {
			_, err = tx.StmtContext(ctx, stmts.update).ExecContext(ctx, st.Doc, st.Version, ms(st.UpdatedAt), next, k.ProductKey, k.DeviceName, k.Name, p.Prev)
			return err
		}
		pending = next
	}
	if pending == nil {
		return nil
	}
	final, err := finishPast(ctx, tx, stmts, p, pending)
	if err != nil {
		return err
	}
	if stmts.fn {
		_, err = tx.StmtContext(ctx, stmts.setPast).ExecContext(ctx, final, k.ProductKey, k.DeviceName, k.Name)
	} else {
		_, err = tx.StmtContext(ctx, stmts.update).ExecContext(ctx, st.Doc, st.Version, ms(st.UpdatedAt), final, k.ProductKey, k.DeviceName, k.Name, p.Prev)
	}
	return err
}

// nextPast is the past of a shadow whose current version cur (past old)
// a write keeping keep (> 0) supersedes: the newest keep-1 superseded
// versions, inline. When shadow_history has to change (some of them do not
// fit pastBudget, or it may hold older ones), the result is pending: all
// of them inline, for finishPast.
func nextPast(cur pastVersion, old []byte, keep int) ([]byte, error) {
	var flags byte
	var kept []pastVersion
	var err error
	if old == nil {
		flags = pastSpilled // written before 00023: its history is all in shadow_history
	} else if flags, kept, err = parsePast(old); err != nil {
		return nil, err
	} else if flags&pastCurrent != 0 {
		kept = append([]pastVersion{cur}, kept...)
	}
	kept = kept[:min(len(kept), keep-1)]
	next, size := pastCurrent, 1
	for _, v := range kept {
		size += v.size()
	}
	if flags&pastSpilled != 0 || size-1 > pastBudget {
		next |= pastPending | flags&pastSpilled
	}
	return appendPast(make([]byte, 0, size), next, kept), nil
}

// finishPast finishes a pending past for the write p: the versions that do
// not fit pastBudget go to shadow_history, which keeps only what p keeps,
// and the past left inline is returned.
func finishPast(ctx context.Context, tx *sql.Tx, stmts *putStmts, p shadow.Put, pending []byte) ([]byte, error) {
	k := p.Key
	flags, kept, err := parsePast(pending)
	if err != nil {
		return nil, fmt.Errorf("shadow %s/%s %q: %w", k.ProductKey, k.DeviceName, k.Name, err)
	}
	i, size := 0, 0 // the first i inline
	for ; i < len(kept) && size+kept[i].size() <= pastBudget; i++ {
		size += kept[i].size()
	}
	next := pastCurrent
	if flags&pastSpilled != 0 {
		// What shadow_history holds is older than every version in kept.
		if left := p.Keep - 1 - len(kept); left <= 0 {
			_, err = tx.StmtContext(ctx, stmts.histClear).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name)
		} else {
			next |= pastSpilled
			_, err = tx.StmtContext(ctx, stmts.histTrim).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, left, p.S.Version)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, v := range kept[i:] {
		next |= pastSpilled
		if _, err := tx.StmtContext(ctx, stmts.histAdd).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, v.version, v.doc, v.at); err != nil {
			return nil, err
		}
	}
	return appendPast(make([]byte, 0, 1+size), next, kept[:i]), nil
}

// pastFunc is corral_shadow_past(doc, version, updated_at, past, keep):
// nextPast of the row an UPDATE rewrites, so that the write reads nothing
// of its own.
func pastFunc(_ *sqlitedrv.FunctionContext, args []driver.Value) (driver.Value, error) {
	doc, _ := args[0].([]byte)
	version, ok1 := args[1].(int64)
	at, ok2 := args[2].(int64)
	old, ok3 := args[3].([]byte)
	keep, ok4 := args[4].(int64)
	if !ok1 || !ok2 || !ok4 || !ok3 && args[3] != nil || keep <= 0 || keep > 1<<20 {
		return nil, fmt.Errorf("corral_shadow_past: arguments of the wrong types")
	}
	return nextPast(pastVersion{version: version, at: at, doc: doc}, old, int(keep))
}

func init() {
	// The driver's functions are the process's: this one is pure.
	sqlitedrv.MustRegisterDeterministicScalarFunction("corral_shadow_past", 5, pastFunc)
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
		if _, err := tx.ExecContext(ctx, `UPDATE shadows SET doc = NULL, past = NULL, deleted = 1, updated_at = ? WHERE product_key = ? AND device_name = ? AND name = ?`,
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

// ShadowHistory implements shadow.Store: the shadow's current version
// (if kept), the superseded ones in its row and those in shadow_history,
// read in one transaction.
func (s *Store) ShadowHistory(ctx context.Context, k shadow.Key, since int64) ([]shadow.Stored, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var cur pastVersion
	var deleted bool
	var past []byte
	err = tx.QueryRowContext(ctx, `SELECT doc, version, updated_at, deleted, past FROM shadows WHERE product_key = ? AND device_name = ? AND name = ?`,
		k.ProductKey, k.DeviceName, k.Name).Scan(&cur.doc, &cur.version, &cur.at, &deleted, &past)
	if errors.Is(err, sql.ErrNoRows) || err == nil && deleted {
		return []shadow.Stored{}, nil // a tombstone's history went with the shadow
	}
	if err != nil {
		return nil, err
	}
	flags, inline := pastSpilled, []pastVersion(nil) // NULL: written before 00023, all in shadow_history
	if past != nil {
		if flags, inline, err = parsePast(past); err != nil {
			return nil, fmt.Errorf("shadow %s/%s %q: %w", k.ProductKey, k.DeviceName, k.Name, err)
		}
	}
	out := []shadow.Stored{}
	if flags&pastSpilled != 0 {
		rows, err := tx.QueryContext(ctx, `SELECT doc, version, updated_at FROM shadow_history WHERE product_key = ? AND device_name = ? AND name = ? AND version > ?
			ORDER BY version`, k.ProductKey, k.DeviceName, k.Name, since)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var st shadow.Stored
			var at int64
			if err := rows.Scan(&st.Doc, &st.Version, &at); err != nil {
				return nil, err
			}
			st.UpdatedAt = fromMS(at)
			out = append(out, st)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for i := len(inline) - 1; i >= 0; i-- {
		if v := inline[i]; v.version > since {
			out = append(out, shadow.Stored{Doc: v.doc, Version: v.version, UpdatedAt: fromMS(v.at)})
		}
	}
	if flags&pastCurrent != 0 && cur.version > since {
		out = append(out, shadow.Stored{Doc: cur.doc, Version: cur.version, UpdatedAt: fromMS(cur.at)})
	}
	return out, nil
}
