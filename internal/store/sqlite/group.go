package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Group commit: writes from many goroutines are queued and run by one
// writer, each inside its own savepoint of a shared transaction, and the
// transaction is committed once for the whole group. Every caller still
// gets its own result only after the commit (so a 2xx is durable), but a
// burst of N writes costs one fsync instead of N.

type writeOp struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	done chan error
	// early answers as soon as fn has run, before its group commits (see
	// writeEarly); such an op is not answered again.
	early bool
	// single says fn runs exactly one statement: SQLite undoes a failed
	// statement by itself, so the op needs no savepoint of its own (two
	// statements fewer in the writer, which every write waits behind).
	single bool
}

const maxGroup = 512

var errClosed = errors.New("store is closed")

func (s *Store) startWriter() error {
	for i, q := range []string{`SAVEPOINT op`, `ROLLBACK TO op`, `RELEASE op`} {
		st, err := s.w.Prepare(q)
		if err != nil {
			return fmt.Errorf("preparing %s: %w", q, err)
		}
		s.savepoint[i] = st
	}
	s.ops = make(chan writeOp, 4096)
	s.writerDone = make(chan struct{})
	go s.writer()
	return nil
}

func (s *Store) writer() {
	defer close(s.writerDone)
	for first := range s.ops {
		batch := []writeOp{first}
	drain:
		for len(batch) < maxGroup {
			select {
			case op, ok := <-s.ops:
				if !ok {
					break drain
				}
				batch = append(batch, op)
			default:
				break drain
			}
		}
		s.commitGroup(batch)
	}
}

func (s *Store) commitGroup(batch []writeOp) {
	answered := make([]bool, len(batch)) // early ops already told their result
	fail := func(err error) {
		for i, op := range batch {
			if !answered[i] {
				op.done <- err
			}
		}
	}
	tx, err := s.w.BeginTx(context.Background(), nil)
	if err != nil {
		fail(err)
		return
	}
	results := make([]error, len(batch))
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if op.single {
			results[i] = runOp(op.fn, tx)
		} else {
			if _, err := tx.Stmt(s.savepoint[0]).Exec(); err != nil {
				tx.Rollback()
				fail(err)
				return
			}
			results[i] = runOp(op.fn, tx)
			if results[i] != nil {
				if _, err := tx.Stmt(s.savepoint[1]).Exec(); err != nil {
					tx.Rollback()
					fail(err)
					return
				}
			}
			if _, err := tx.Stmt(s.savepoint[2]).Exec(); err != nil {
				tx.Rollback()
				fail(err)
				return
			}
		}
		if op.early {
			op.done <- results[i]
			answered[i] = true
		}
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("committing: %w", err))
		return
	}
	for i, op := range batch {
		if !answered[i] {
			op.done <- results[i]
		}
	}
}

// errOpPanicked is the result of an operation that panicked: its
// savepoint is rolled back and the rest of its group commits.
var errOpPanicked = errors.New("store operation panicked")

// runOp runs one operation of a group, turning a panic into its error so
// that one bad operation cannot take the writer (and every waiting caller)
// down with it.
func runOp(fn func(tx *sql.Tx) error, tx *sql.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errOpPanicked, r)
		}
	}()
	return fn(tx)
}

// write runs fn in the group-committed writer and returns its result once
// the group is durable.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	op := writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	defer func() {
		if recover() != nil { // send on a closed queue: the store is closing
			err = errClosed
		}
	}()
	s.ops <- op
	return <-op.done
}

// writeOne is write for an fn that runs exactly one statement.
func (s *Store) writeOne(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	op := writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), single: true}
	defer func() {
		if recover() != nil {
			err = errClosed
		}
	}()
	s.ops <- op
	return <-op.done
}

// writeEarly runs fn in the writer like write, but returns its result as
// soon as fn has run, before the group commits. Use it only for a write
// whose effect nobody outside learns of until a later write of the same
// caller has returned: the writer commits groups in order, so that later
// write's durability implies this one's. (A registration's random is
// recorded this way, then the device it registers, in one commit.)
func (s *Store) writeEarly(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	op := writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), early: true}
	defer func() {
		if recover() != nil {
			err = errClosed
		}
	}()
	s.ops <- op
	return <-op.done
}

// Flush returns once every write queued before it is durable.
func (s *Store) Flush(ctx context.Context) error {
	return s.write(ctx, func(*sql.Tx) error { return nil })
}

func (s *Store) stopWriter() {
	if s.ops == nil {
		return
	}
	close(s.ops)
	<-s.writerDone
}

// writeAsync queues fn, which runs one statement, for the next group
// commit without waiting for it; its result is dropped, so use it only for
// records whose loss in a crash is acceptable (the audit trail).
func (s *Store) writeAsync(fn func(tx *sql.Tx) error) (err error) {
	op := writeOp{ctx: context.Background(), fn: fn, done: make(chan error, 1), single: true}
	defer func() {
		if recover() != nil {
			err = errClosed
		}
	}()
	s.ops <- op
	return nil
}
