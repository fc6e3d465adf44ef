package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Group commit: writes from many goroutines are queued and run by one
// writer, each inside its own savepoint of a shared transaction, and the
// transaction is committed once for the whole group. Every caller still
// gets its own result only after the commit (so a 2xx is durable), but a
// burst of N writes costs one fsync instead of N.
//
// A group takes every write that arrives while it runs, not only those
// queued when it began: the writes answered by the last commit are queued
// again while this group's first ones run. When the last group held more
// than one write (concurrent writers), the writer also lingers, at most
// Options.GroupLinger, until this group is as large as the last one: in a
// closed loop (each writer waits for its answer, then writes again), the
// groups would otherwise split the writers in two halves that take turns.

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
	// batch says fn's statements fail only when the store itself does (I/O,
	// a full disk, a panic), never on their input, so the op needs no
	// savepoint either: a failure rolls back its whole group, whose ops all
	// get that error (as when a savepoint statement fails). Pages it changes
	// are then not copied into a savepoint's journal: ≈ 10 µs an op writing
	// a few random leaves, as presence and shadow batches do.
	batch bool
	// log says fn may queue shadow log work (logWork) and touches the
	// log no other way: it runs with work queued; any other op runs after
	// the queue is written.
	log bool
}

const maxGroup = 512

// defaultLinger is Options.GroupLinger's default: a fraction of one
// fsync on a virtual disk (0.1 to 1 ms), so that lingering costs a
// concurrent writer less than the commit it may share.
const defaultLinger = 200 * time.Microsecond

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

// writer runs the groups one after the other. It alone uses the writer
// connection between groups' statements.
func (s *Store) writer() {
	defer close(s.writerDone)
	g := commitGroup{s: s}
	last := 0 // the size of the last group
	for first := range s.ops {
		last = g.run(first, last)
		if s.ckptCaughtUp.CompareAndSwap(true, false) {
			s.finishCheckpoint()
		}
	}
}

// finishCheckpoint copies back into the database what the writer
// committed while the checkpointer's last round ran, so that the WAL is
// wholly copied and the next group starts it over from its beginning.
//
// A passive checkpoint copies the frames the WAL held when it began, and
// SQLite starts the WAL over only once all of them are copied. Under a
// steady load the writer commits during every round: the WAL was never
// wholly copied, grew round after round to the writer's backstop
// (walBackstopPages, at 10,000 shadow updates a second every 1.2 s), and
// there the writer stopped to copy the thousands of pages since the last
// round itself, a commit of 10 to 17 ms with every write waiting on it.
// Run by the writer between groups, when no commit can come in between,
// this copies only what the last round missed.
func (s *Store) finishCheckpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Should this fail, the WAL goes on to the next round or the backstop.
	_, _ = s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
}

// commitGroup is the writer's state for one group; its slices are reused.
type commitGroup struct {
	s       *Store
	tx      *sql.Tx
	ops     []writeOp
	results []error
	told    []bool // ops[i] has been answered (an early op, once run)
}

// run runs first and every write that arrives while the group is open,
// commits them, answers them, and returns the group's size.
func (g *commitGroup) run(first writeOp, last int) int {
	g.ops, g.results, g.told = g.ops[:0], g.results[:0], g.told[:0]
	// The group's transaction on a connection of its own, so that the
	// hottest statements can run on it directly (boundStmts.exec); given
	// back to the pool once the transaction has ended, whichever way.
	conn, err := g.s.w.Conn(context.Background())
	var tx *sql.Tx
	if err == nil {
		defer conn.Close()
		tx, err = conn.BeginTx(context.Background(), nil)
	}
	if err != nil {
		g.ops, g.told = append(g.ops, first), append(g.told, false)
		g.fail(err)
		return 1
	}
	g.tx, g.s.bound.conn = tx, conn
	if !g.exec(first) {
		return len(g.ops)
	}
	// The linger's timer is a new one each group that lingers, stopped
	// when done, never reset: resetting a timer still in the runtime's
	// heap marks it modified, and the scheduler then walks the whole heap
	// once its new time comes, every group. With a socket deadline's timer
	// a connection (10,000 devices: 10,000 timers) that walk was 2 to 3 %
	// of the server's CPU. A stopped one costs nothing until the stopped
	// ones are a quarter of the heap.
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for len(g.ops) < maxGroup {
		select {
		case op, ok := <-g.s.ops:
			if !ok {
				goto commit
			}
			if !g.exec(op) {
				return len(g.ops)
			}
			continue
		default:
		}
		// Nothing queued: linger for the writers of the last group.
		if len(g.ops) >= last || g.s.linger <= 0 {
			break
		}
		if linger == nil {
			linger = time.NewTimer(g.s.linger)
		}
		select {
		case op, ok := <-g.s.ops:
			if !ok {
				goto commit
			}
			if !g.exec(op) {
				return len(g.ops)
			}
			continue
		case <-linger.C:
		}
		break // lingered for as long as it may
	}
commit:
	if err := g.s.log.flush(&g.s.bound); err != nil {
		g.abort(err)
		return len(g.ops)
	}
	if err := tx.Commit(); err != nil {
		g.s.log.reset()
		g.fail(fmt.Errorf("committing: %w", err))
		return len(g.ops)
	}
	// Counted before anyone is answered, so that a caller reading the
	// counters after its write returned sees its group.
	g.s.groups.Add(1)
	g.s.grouped.Add(uint64(len(g.ops)))
	for i, op := range g.ops {
		if !g.told[i] {
			op.done <- g.results[i]
		}
	}
	// The callers just answered wait in this goroutine's run queue; left
	// there, they would wait for the next group's statements and commit
	// (whose system calls hold the processor) unless another processor
	// stole them. Yield, so they run now, and the next group gathers what
	// they send meanwhile.
	runtime.Gosched()
	return len(g.ops)
}

// exec runs op in the group's transaction, in its own savepoint unless it
// is a single statement. On a failure of the savepoint statements
// themselves it rolls the transaction back, fails the whole group and
// returns false.
func (g *commitGroup) exec(op writeOp) bool {
	g.ops, g.told = append(g.ops, op), append(g.told, false)
	if !op.log && g.s.log.pending() {
		if err := g.s.log.flush(&g.s.bound); err != nil {
			g.abort(err)
			return false
		}
	}
	mark := g.s.log.mark()
	var res error
	switch {
	case op.ctx.Err() != nil:
		res = op.ctx.Err()
	case op.single:
		res = runOp(op.fn, g.tx)
	case op.batch:
		if err := runOp(op.fn, g.tx); err != nil {
			g.abort(err)
			return false
		}
	default:
		if _, err := g.tx.Stmt(g.s.savepoint[0]).Exec(); err != nil {
			g.abort(err)
			return false
		}
		res = runOp(op.fn, g.tx)
		if res != nil {
			if _, err := g.tx.Stmt(g.s.savepoint[1]).Exec(); err != nil {
				g.abort(err)
				return false
			}
		}
		if _, err := g.tx.Stmt(g.s.savepoint[2]).Exec(); err != nil {
			g.abort(err)
			return false
		}
	}
	if res != nil {
		g.s.log.undo(mark) // its statements were undone
	}
	g.results = append(g.results, res)
	if op.early {
		op.done <- res
		g.told[len(g.told)-1] = true
	}
	return true
}

func (g *commitGroup) abort(err error) {
	g.tx.Rollback()
	g.s.log.reset()
	g.fail(err)
}

// fail answers every op of the group not yet answered with err.
func (g *commitGroup) fail(err error) {
	for i, op := range g.ops {
		if !g.told[i] {
			op.done <- err
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
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.submit(writeOp{ctx: ctx, fn: fn})
}

// writeOne is write for an fn that runs exactly one statement.
func (s *Store) writeOne(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.submit(writeOp{ctx: ctx, fn: fn, single: true})
}

// writeBatch is write for an fn whose statements fail only when the store
// does (see writeOp.batch).
func (s *Store) writeBatch(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.submit(writeOp{ctx: ctx, fn: fn, batch: true})
}

// writeEarly runs fn in the writer like write, but returns its result as
// soon as fn has run, before the group commits. Use it only for a write
// whose effect nobody outside learns of until a later write of the same
// caller has returned: the writer commits groups in order, so that later
// write's durability implies this one's. (A registration's random is
// recorded this way, then the device it registers, in one commit.)
func (s *Store) writeEarly(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.submit(writeOp{ctx: ctx, fn: fn, early: true})
}

// submit queues op for the writer and returns its answer.
func (s *Store) submit(op writeOp) (err error) {
	op.done, _ = s.dones.Get().(chan error)
	if op.done == nil {
		op.done = make(chan error, 1)
	}
	defer func() {
		if recover() != nil { // send on a closed queue: the store is closing
			err = errClosed
		}
	}()
	s.ops <- op
	err = <-op.done
	s.dones.Put(op.done) // answered once (commitGroup.told), so empty again
	return err
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
