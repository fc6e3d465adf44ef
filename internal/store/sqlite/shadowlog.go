package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// The shadow log's rows an update adds and drops are written once a
// group, not one statement each: a hinted update (updateHinted) runs one
// statement of its own, its row's UPDATE, and queues the version it
// supersedes (copied from its hint, not from the row) and the ids that
// fall out of its history; the writer inserts and deletes them all before
// the group commits (three statements an update were half a store
// write's cost at 10,000 shadows). Log ids are given out here, so that an
// update can list its new row before the row is written.
//
// Only shadow writes (writeOp.log) run while work is queued: any other
// operation, which may read or delete log rows, finds the log as if each
// update had written it at once, since the queue is written first. A
// failed operation's queued work is taken back with it; a group rolled
// back takes back everything, and the next id is read again.

// logRow is a log row to insert.
type logRow struct {
	id, version, at int64
	doc             []byte
}

// logWork is the writer's queued log work (writer goroutine only).
type logWork struct {
	next int64 // the next log id; 0 until read from the table
	ins  []logRow
	drop []int64
}

// logInsertRows are the sizes of the multi-row inserts flush runs, each
// as many rows of a group's queue as it can take.
var logInsertRows = [...]int{32, 8, 1}

// qLogInsert holds the insert of n rows for each n of logInsertRows.
var qLogInsert = func() map[int]string {
	m := map[int]string{}
	for _, n := range logInsertRows {
		m[n] = `INSERT INTO shadow_log(id, version, doc, updated_at) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", n), ", ")
	}
	return m
}()

// take gives out the next log id, reading the table's largest first when
// it is not known.
func (w *logWork) take(ctx context.Context, tx *sql.Tx) (int64, error) {
	if w.next == 0 {
		if err := tx.QueryRowContext(ctx, `SELECT IFNULL(MAX(id), 0) + 1 FROM shadow_log`).Scan(&w.next); err != nil {
			return 0, fmt.Errorf("reading the shadow log's last id: %w", err)
		}
	}
	w.next++
	return w.next - 1, nil
}

// pending reports whether work is queued.
func (w *logWork) pending() bool { return len(w.ins) > 0 || len(w.drop) > 0 }

// mark is the queue's length, to undo an operation's work with.
func (w *logWork) mark() [2]int { return [2]int{len(w.ins), len(w.drop)} }

// undo takes back what was queued since m.
func (w *logWork) undo(m [2]int) {
	clear(w.ins[m[0]:])
	w.ins, w.drop = w.ins[:m[0]], w.drop[:m[1]]
}

// reset drops the queue of a group rolled back, and the next id with it:
// read again, it cannot be one a row written meanwhile took.
func (w *logWork) reset() {
	w.undo([2]int{})
	w.next = 0
}

// flush writes the queue in the group's transaction, the inserts first
// (a row may be dropped by a later update of the same group).
func (w *logWork) flush(b *boundStmts) error {
	for rows := w.ins; len(rows) > 0; {
		n := logInsertRows[len(logInsertRows)-1]
		for _, size := range logInsertRows {
			if len(rows) >= size {
				n = size
				break
			}
		}
		for _, r := range rows[:n] {
			b.arg(r.id)
			b.arg(r.version)
			b.arg(r.doc)
			b.arg(r.at)
		}
		if _, err := b.exec(qLogInsert[n]); err != nil {
			return fmt.Errorf("writing the shadow log: %w", err)
		}
		rows = rows[n:]
	}
	clear(w.ins) // the documents not held on to
	w.ins = w.ins[:0]
	var err error
	switch len(w.drop) {
	case 0:
	case 1:
		b.arg(w.drop[0])
		_, err = b.exec(qLogDrop)
	default:
		var buf [512]byte
		b.arg(string(appendPast(buf[:0], w.drop)))
		_, err = b.exec(qLogDropList)
	}
	w.drop = w.drop[:0]
	if err != nil {
		return fmt.Errorf("trimming the shadow log: %w", err)
	}
	return nil
}
