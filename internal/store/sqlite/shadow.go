package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
// connection. A shadow's history is its current version, when kept
// (shadows.kept = 1), and the versions it superseded: rows of shadow_log,
// appended in the order of writes, that its row lists in past (migration
// 00024). A create is one statement; an update reads the row it replaces
// (its version check: no row, stale), copies that version to the log when
// kept, writes the row with its new list, and has the log rows that fall
// out of the newest K deleted; a hinted update (updateHinted) reads
// nothing and leaves its log rows to the group's end (shadowlog.go).
const (
	// qShadowCreate stores a shadow where none is, or over a tombstone
	// (prev 0; a tombstone lists no past versions).
	qShadowCreate = `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted, kept, past) VALUES (?, ?, ?, ?, ?, ?, 0, ?, NULL)
		ON CONFLICT(product_key, device_name, name) DO UPDATE SET doc = excluded.doc, version = excluded.version, updated_at = excluded.updated_at, deleted = 0, kept = excluded.kept, past = NULL
		WHERE shadows.deleted = 1 OR shadows.version = 0`
	// qShadowInsert stores a shadow only where neither a shadow nor a
	// tombstone is (prev shadow.NoneStored).
	qShadowInsert = `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted, kept) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT(product_key, device_name, name) DO NOTHING`
	// qShadowPast reads what an update of a live shadow at version prev
	// replaces: whether its version is kept, and its past versions.
	qShadowPast = `SELECT kept, past FROM shadows WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0 AND version = ?`
	// qShadowUpdate replaces the live shadow qShadowPast read.
	qShadowUpdate = `UPDATE shadows SET doc = ?, version = ?, updated_at = ?, kept = ?, past = ?
		WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0 AND version = ?`
	// qLogSupersede copies the live shadow's current version to the log,
	// as the row whose id is given (logWork.take).
	qLogSupersede = `INSERT INTO shadow_log(id, version, doc, updated_at)
		SELECT ?, version, doc, updated_at FROM shadows WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0`
	// qShadowUpdateIf is qShadowUpdate for an update made from a
	// pastHint, without reading first: it changes nothing unless the row
	// holds the hint's version, kept and past.
	qShadowUpdateIf = qShadowUpdate + ` AND kept = ? AND past IS ?`
	qLogDrop        = `DELETE FROM shadow_log WHERE id = ?`
	qLogDropList    = `DELETE FROM shadow_log WHERE id IN (SELECT value FROM json_each(?))`
)

// PutShadow implements shadow.Store.
func (s *Store) PutShadow(ctx context.Context, k shadow.Key, prev int64, st shadow.Stored, keep int) error {
	w, _ := s.puts.Get().(*putWrite)
	if w == nil {
		w = &putWrite{}
		w.fn = w.run
	}
	defer func() {
		w.ctx, w.p, w.stale = nil, shadow.Put{}, nil // nothing of this write kept
		s.puts.Put(w)
	}()
	w.ctx, w.p = ctx, shadow.Put{Key: k, Prev: prev, S: st, Keep: keep}
	if err := s.prepPut(ctx, &w.stmts, w.p); err != nil {
		return err
	}
	var err error
	if prev <= 0 {
		err = s.submit(writeOp{ctx: ctx, fn: w.fn, single: true, log: true})
	} else {
		err = s.submit(writeOp{ctx: ctx, fn: w.fn, batch: true, log: true})
	}
	if err != nil {
		return err
	}
	return w.stale
}

// putWrite is one PutShadow's operation, reused (Store.puts: the writer
// is done with an op once its caller is answered), its statements staying
// prepared from one write to the next: a shadow update allocated its
// closure and statements each time.
type putWrite struct {
	ctx   context.Context
	p     shadow.Put
	stmts putStmts
	// A stale write changes nothing (its version check is in each of its
	// statements), and nothing else but the store failing fails one: no
	// savepoint (writeBatch), the staleness told apart from a failure.
	stale error
	fn    func(tx *sql.Tx) error // run, bound once
}

func (w *putWrite) run(tx *sql.Tx) error {
	err := putOne(w.ctx, tx, &w.stmts, w.p)
	if errors.Is(err, shadow.ErrStale) {
		w.stale = err
		return nil
	}
	return err
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
	err := s.submit(writeOp{ctx: ctx, batch: true, log: true, fn: func(tx *sql.Tx) error {
		for i, p := range puts {
			err := putOne(ctx, tx, &stmts, p)
			if err != nil && !errors.Is(err, shadow.ErrStale) {
				return err
			}
			errs[i] = err
		}
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// putStmts are the prepared statements of shadow writes, the ones a write
// needs set by prepPut.
type putStmts struct {
	create, insert, past, update, supersede, updateIf *sql.Stmt
	hints                                             *pastHints
	bound                                             *boundStmts
	log                                               *logWork // the writer's queued log work (shadowlog.go)
}

// in is st bound to tx (the writer's group).
func (p *putStmts) in(ctx context.Context, tx *sql.Tx, st *sql.Stmt) *sql.Stmt {
	return p.bound.get(ctx, tx, st)
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
	st.hints, st.bound, st.log = s.hints, &s.bound, &s.log
	switch {
	case p.Prev == shadow.NoneStored:
		return need(&st.insert, qShadowInsert)
	case p.Prev == 0:
		return need(&st.create, qShadowCreate)
	}
	for _, q := range []struct {
		dst **sql.Stmt
		q   string
	}{{&st.past, qShadowPast}, {&st.update, qShadowUpdate}, {&st.supersede, qLogSupersede},
		{&st.updateIf, qShadowUpdateIf}} {
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
		res, err = stmts.in(ctx, tx, stmts.insert).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, st.Doc, st.Version, at, kept)
	case 0:
		res, err = stmts.in(ctx, tx, stmts.create).ExecContext(ctx, k.ProductKey, k.DeviceName, k.Name, st.Doc, st.Version, at, kept)
	default:
		return updateOne(ctx, tx, stmts, p, kept)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		stmts.hints.forget(k)
		return shadow.ErrStale // nothing changed
	}
	stmts.hints.set(k, hintOf(st, kept, ""))
	return nil
}

// updateOne replaces the live shadow at version p.Prev (ErrStale, nothing
// changed, when there is none), keeping the newest p.Keep versions: from
// the row's hint when there is one for p.Prev, else from what it reads.
func updateOne(ctx context.Context, tx *sql.Tx, stmts *putStmts, p shadow.Put, kept int) error {
	k := p.Key
	if h, ok := stmts.hints.get(k); ok && h.version == p.Prev {
		done, err := updateHinted(ctx, tx, stmts, p, kept, h)
		if err != nil || done {
			return err
		}
	}
	var wasKept sql.NullInt64
	var pastText sql.NullString
	err := stmts.in(ctx, tx, stmts.past).QueryRowContext(ctx, k.ProductKey, k.DeviceName, k.Name, p.Prev).Scan(&wasKept, &pastText)
	if errors.Is(err, sql.ErrNoRows) {
		stmts.hints.forget(k)
		return shadow.ErrStale
	}
	if err != nil {
		return err
	}
	past, err := parsePast(pastText.String)
	if err != nil {
		return fmt.Errorf("shadow %s/%s %q: %w", k.ProductKey, k.DeviceName, k.Name, err)
	}
	if p.Keep > 1 && wasKept.Int64 == 1 {
		id, err := stmts.log.take(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := stmts.in(ctx, tx, stmts.supersede).ExecContext(ctx, id, k.ProductKey, k.DeviceName, k.Name); err != nil {
			return err
		}
		past = append(past, id)
	}
	drop, list := trimPast(past, p.Keep)
	st := p.S
	if _, err = stmts.in(ctx, tx, stmts.update).ExecContext(ctx, st.Doc, st.Version, ms(st.UpdatedAt), kept, nullable(list),
		k.ProductKey, k.DeviceName, k.Name, p.Prev); err != nil {
		return err
	}
	stmts.log.drop = append(stmts.log.drop, drop...)
	stmts.hints.set(k, hintOf(st, kept, list))
	return nil
}

// updateHinted is updateOne from h, the row as this process last wrote
// it, without reading it: done is false, with nothing changed, when the
// row is not what h says (stale or not), and updateOne then reads it.
func updateHinted(ctx context.Context, tx *sql.Tx, stmts *putStmts, p shadow.Put, kept int, h pastHint) (done bool, err error) {
	k, st := p.Key, p.S
	past, err := parsePast(h.past)
	if err != nil {
		return false, nil
	}
	// The update's statement is the check. The version it supersedes (as
	// h says it is kept) goes to the log: from h, queued for the group's
	// end once the update has applied (logWork); from the row, when h
	// holds no document, first, and deleted again when the row is not
	// what h says.
	var added int64  // the log row this update adds; 0 none
	queued := false  // added is queued, not yet written
	b := stmts.bound // the statements run directly on the group's connection
	// The key as driver arguments once: each conversion to an interface
	// is an allocation, and the UPDATE and a copy from the row both take it.
	pk, dn, name := driver.Value(k.ProductKey), driver.Value(k.DeviceName), driver.Value(k.Name)
	if p.Keep > 1 && h.kept == 1 {
		if added, err = stmts.log.take(ctx, tx); err != nil {
			return false, err
		}
		if queued = h.doc != nil; !queued {
			b.arg(added)
			b.arg(pk)
			b.arg(dn)
			b.arg(name)
			res, err := b.exec(qLogSupersede)
			if err != nil || res.rows == 0 {
				return false, err
			}
		}
		past = append(past, added)
	}
	drop, list := trimPast(past, p.Keep)
	for _, v := range [...]driver.Value{st.Doc, st.Version, ms(st.UpdatedAt), int64(kept), nullable(list),
		pk, dn, name, p.Prev, int64(h.kept), nullable(h.past)} {
		b.arg(v)
	}
	res, err := b.exec(qShadowUpdateIf)
	if err != nil {
		return false, err
	}
	if res.rows == 0 {
		if added != 0 && !queued {
			b.arg(added)
			_, err = b.exec(qLogDrop)
		}
		return false, err
	}
	if queued {
		stmts.log.ins = append(stmts.log.ins, logRow{id: added, version: h.version, doc: h.doc, at: h.at})
	}
	stmts.log.drop = append(stmts.log.drop, drop...)
	stmts.hints.set(k, hintOf(st, kept, list))
	stmts.hints.hit()
	return true, nil
}

// trimPast splits a shadow's past versions, with the one just superseded,
// into those that leave the log (beyond the newest keep-1: with the
// current one, keep) and the list of those that stay ("" none).
func trimPast(past []int64, keep int) (drop []int64, list string) {
	drop = past[:max(0, len(past)-max(keep-1, 0))]
	if rest := past[len(drop):]; len(rest) > 0 {
		var buf [256]byte // room for the default history's list: appended on the stack, one allocation, the string
		list = string(appendPast(buf[:0], rest))
	}
	return drop, list
}

// nullable is s as a statement argument: NULL when empty.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// parsePast reads a shadows.past list: a JSON array of shadow_log ids
// ("" for NULL: none).
func parsePast(s string) ([]int64, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, errors.New("past versions: not a list")
	}
	body := s[1 : len(s)-1]
	if body == "" {
		return nil, nil
	}
	out := make([]int64, 0, strings.Count(body, ",")+1)
	for f := range strings.SplitSeq(body, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || id <= 0 {
			return nil, errors.New("past versions: not a list of ids")
		}
		out = append(out, id)
	}
	return out, nil
}

// appendPast appends ids as a shadows.past list.
func appendPast(b []byte, ids []int64) []byte {
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return append(b, ']')
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
		// Its past versions leave the log before the row forgets them.
		if _, err := tx.ExecContext(ctx, `DELETE FROM shadow_log WHERE id IN (SELECT j.value FROM shadows s, json_each(s.past) j
			WHERE s.product_key = ? AND s.device_name = ? AND s.name = ?)`, k.ProductKey, k.DeviceName, k.Name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE shadows SET doc = NULL, kept = NULL, past = NULL, deleted = 1, updated_at = ? WHERE product_key = ? AND device_name = ? AND name = ?`,
			ms(at), k.ProductKey, k.DeviceName, k.Name)
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

// ShadowHistory implements shadow.Store: the versions the shadow's row
// lists in the log and its current one if kept, read in one transaction.
func (s *Store) ShadowHistory(ctx context.Context, k shadow.Key, since int64) ([]shadow.Stored, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var cur shadow.Stored
	var at int64
	var kept sql.NullInt64
	var past sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT doc, version, updated_at, kept, past FROM shadows WHERE product_key = ? AND device_name = ? AND name = ? AND deleted = 0`,
		k.ProductKey, k.DeviceName, k.Name).Scan(&cur.Doc, &cur.Version, &at, &kept, &past)
	if errors.Is(err, sql.ErrNoRows) {
		return []shadow.Stored{}, nil // a tombstone's history went with the shadow
	}
	if err != nil {
		return nil, err
	}
	cur.UpdatedAt = fromMS(at)
	out := []shadow.Stored{}
	if past.Valid {
		rows, err := tx.QueryContext(ctx, `SELECT doc, version, updated_at FROM shadow_log WHERE id IN (SELECT value FROM json_each(?)) AND version > ?
			ORDER BY version`, past.String, since)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
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
	}
	if kept.Int64 == 1 && cur.Version > since {
		out = append(out, cur)
	}
	return out, nil
}
