package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// groupStore opens a store with two scratch tables: parent, and child whose
// foreign key is checked only at COMMIT (so an operation can make the
// whole group's commit fail).
func groupStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "g.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, q := range []string{
		`CREATE TABLE parent (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)`,
	} {
		if _, err := s.w.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func insert(id int) func(tx *sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO parent (id) VALUES (?)`, id)
		return err
	}
}

// group runs ops as one commit group: a first operation holds the writer
// until the others are queued behind it, so they are drained together.
// It returns each operation's result (the holder's first).
func group(t *testing.T, s *Store, ctxs []context.Context, ops ...func(tx *sql.Tx) error) []error {
	t.Helper()
	release := make(chan struct{})
	holding := make(chan struct{})
	results := make([]chan error, len(ops)+1)
	for i := range results {
		results[i] = make(chan error, 1)
	}
	go func() {
		results[0] <- s.write(context.Background(), func(tx *sql.Tx) error {
			close(holding)
			<-release
			return insert(1000)(tx)
		})
	}()
	<-holding
	for i, op := range ops {
		ctx := context.Background()
		if ctxs != nil && ctxs[i] != nil {
			ctx = ctxs[i]
		}
		go func() { results[i+1] <- s.write(ctx, op) }()
	}
	// The holder is running, so the queue holds exactly the others once
	// they are all sent.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.ops) < len(ops) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d operations queued", len(s.ops), len(ops))
		}
		runtime.Gosched()
	}
	close(release)
	// The holder's group takes the queued ones once the holder has run
	// (writes that arrive while a group runs join it).
	out := make([]error, len(results))
	for i, ch := range results {
		select {
		case out[i] = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("operation %d never answered", i)
		}
	}
	return out
}

func count(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.w.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGroupOneFailureRollsBackOnlyItself(t *testing.T) {
	s := groupStore(t)
	failing := func(tx *sql.Tx) error {
		if err := insert(2)(tx); err != nil {
			return err
		}
		return errors.New("refused after writing") // its write must not land
	}
	// The two inserts of id 3 queue in either order: one lands, the other
	// fails on the unique key, and neither disturbs the rest of the group.
	res := group(t, s, nil, insert(1), failing, insert(3), insert(3))
	if res[0] != nil || res[1] != nil || res[2] == nil || (res[3] == nil) == (res[4] == nil) {
		t.Fatalf("results %v: want the holder and op 1 to succeed, the refused op to fail, and one of the two id-3 inserts", res)
	}
	var ids []int
	rows, _ := s.w.Query(`SELECT id FROM parent ORDER BY id`)
	for rows.Next() {
		var id int
		rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) != 3 || ids[0] != 1 || ids[1] != 3 || ids[2] != 1000 {
		t.Fatalf("rows %v, want [1 3 1000]", ids)
	}
}

func TestGroupCancelledOperationDoesNotRun(t *testing.T) {
	s := groupStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := group(t, s, []context.Context{nil, ctx, nil}, insert(1), insert(2), insert(3))
	if !errors.Is(res[2], context.Canceled) || res[1] != nil || res[3] != nil {
		t.Fatalf("results %v: want only the cancelled op to fail with context.Canceled", res)
	}
	if n := count(t, s, "parent WHERE id = 2"); n != 0 {
		t.Fatal("a cancelled operation wrote")
	}
}

func TestGroupCommitFailureReachesEveryCaller(t *testing.T) {
	s := groupStore(t)
	orphan := func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO child (id, parent) VALUES (1, 99)`) // checked at COMMIT
		return err
	}
	res := group(t, s, nil, insert(1), orphan, insert(3))
	for i, err := range res[1:] {
		if err == nil {
			t.Fatalf("op %d succeeded though its group's commit failed: %v", i+1, res)
		}
	}
	if n := count(t, s, "parent WHERE id IN (1, 3)"); n != 0 {
		t.Fatalf("%d rows of a failed group were kept", n)
	}
	// The writer goes on: the next write commits.
	if err := s.write(context.Background(), insert(4)); err != nil {
		t.Fatalf("write after a failed group: %v", err)
	}
}

func TestGroupPanickingOperation(t *testing.T) {
	s := groupStore(t)
	boom := func(tx *sql.Tx) error {
		insert(2)(tx)
		panic("bug in an operation")
	}
	res := group(t, s, nil, insert(1), boom, insert(3))
	if res[1] != nil || res[3] != nil || !errors.Is(res[2], errOpPanicked) {
		t.Fatalf("results %v: want only the panicking op to fail", res)
	}
	if n := count(t, s, "parent WHERE id IN (1, 2, 3)"); n != 2 {
		t.Fatalf("%d rows, want 1 and 3 (the panicking op's write rolled back)", n)
	}
}

// TestGroupEarlyOperation: an early operation is answered before its group
// commits; when that commit fails, the operations after it in the group
// (which the caller waits for before saying anything) get the error.
func TestGroupEarlyOperation(t *testing.T) {
	s := groupStore(t)
	if err := s.writeEarly(context.Background(), insert(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "parent WHERE id = 1"); n != 1 {
		t.Fatal("an early write was not committed by the next flush")
	}
	// An early write and an orphan child (failing the commit) in one group.
	release := make(chan struct{})
	holding := make(chan struct{})
	go s.write(context.Background(), func(tx *sql.Tx) error { close(holding); <-release; return nil })
	<-holding
	early := make(chan error, 1)
	later := make(chan error, 1)
	go func() { early <- s.writeEarly(context.Background(), insert(2)) }()
	for len(s.ops) < 1 {
		runtime.Gosched()
	}
	go func() {
		later <- s.write(context.Background(), func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO child (id, parent) VALUES (1, 99)`)
			return err
		})
	}()
	for len(s.ops) < 2 {
		runtime.Gosched()
	}
	close(release)
	if err := <-early; err != nil {
		t.Fatalf("early op: %v", err)
	}
	if err := <-later; err == nil {
		t.Fatal("the later op of a failed group succeeded")
	}
	if n := count(t, s, "parent WHERE id = 2"); n != 0 {
		t.Fatal("the failed group's early write was kept")
	}
}

// pairGroup runs two writes in one group: the first holds the writer until
// the second is queued. It returns the groups and writes the writer counted.
func pairGroup(t *testing.T, s *Store) (groups, writes uint64) {
	t.Helper()
	g0, w0 := s.groups.Load(), s.grouped.Load()
	second := make(chan error, 1)
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		go func() { second <- s.write(context.Background(), insert(2)) }()
		for len(s.ops) < 1 {
			runtime.Gosched()
		}
		return insert(1)(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	return s.groups.Load() - g0, s.grouped.Load() - w0
}

// TestGroupTakesWritesArrivingWhileItRuns: a write queued while a group
// runs is committed with it, not by the next group.
func TestGroupTakesWritesArrivingWhileItRuns(t *testing.T) {
	s := groupStore(t)
	if g, w := pairGroup(t, s); g != 1 || w != 2 {
		t.Fatalf("%d groups of %d writes; want both writes in one group", g, w)
	}
	if n := count(t, s, "parent WHERE id IN (1, 2)"); n != 2 {
		t.Fatalf("%d of the 2 rows committed", n)
	}
}

// TestGroupLinger: after a group of two, the next group waits (at most
// GroupLinger) for a second write before committing; a negative linger
// never waits, and a lone write is answered once the linger has passed.
func TestGroupLinger(t *testing.T) {
	open := func(linger time.Duration) *Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "g.db"), Options{Synchronous: "NORMAL", GroupLinger: linger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.w.Exec(`CREATE TABLE parent (id INTEGER PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("waits for the second writer", func(t *testing.T) {
		s := open(time.Minute)
		pairGroup(t, s)
		g0 := s.groups.Load()
		first := make(chan error, 1)
		go func() { first <- s.write(context.Background(), insert(3)) }()
		time.Sleep(50 * time.Millisecond)
		select {
		case err := <-first:
			t.Fatalf("the first write was answered (%v) before the group's second arrived", err)
		default:
		}
		if err := s.write(context.Background(), insert(4)); err != nil {
			t.Fatal(err)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if g := s.groups.Load() - g0; g != 1 {
			t.Fatalf("%d groups for the two writes, want 1", g)
		}
	})
	for _, linger := range []time.Duration{-1, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("lone write, linger %v", linger), func(t *testing.T) {
			s := open(linger)
			pairGroup(t, s)
			start := time.Now()
			if err := s.write(context.Background(), insert(3)); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("a lone write took %v", d)
			}
			// Serial writes after it wait for nobody: the last group had one.
			for id := 4; id < 14; id++ {
				if err := s.write(context.Background(), insert(id)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestGroupBatchOperation: a batch op (no savepoint) that succeeds commits
// with its group; one that fails rolls back its whole group, every caller
// of it getting the error, and the writer goes on with the next.
func TestGroupBatchOperation(t *testing.T) {
	s := groupStore(t)
	batch := func(id int, fail bool) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			if err := insert(id)(tx); err != nil {
				return err
			}
			if fail {
				return errors.New("the store failed")
			}
			return nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, fail := range []bool{false, true} {
		release, holding := make(chan struct{}), make(chan struct{})
		held := make(chan error, 1)
		go func() {
			held <- s.write(context.Background(), func(tx *sql.Tx) error {
				close(holding)
				<-release
				return nil
			})
		}()
		<-holding
		base := 10
		if fail {
			base = 20
		}
		res := make([]chan error, 3)
		for i := range res {
			res[i] = make(chan error, 1)
		}
		go func() { res[0] <- s.write(context.Background(), insert(base+1)) }()
		for len(s.ops) < 1 {
			runtime.Gosched()
		}
		go func() { res[1] <- s.writeBatch(ctx, batch(base+2, fail)) }()
		for len(s.ops) < 2 {
			runtime.Gosched()
		}
		go func() { res[2] <- s.write(context.Background(), insert(base+3)) }()
		for len(s.ops) < 3 {
			runtime.Gosched()
		}
		close(release)
		errs := []error{<-held, <-res[0], <-res[1], <-res[2]}
		n := count(t, s, fmt.Sprintf("parent WHERE id BETWEEN %d AND %d", base+1, base+3))
		switch {
		case !fail && (errs[0] != nil || errs[1] != nil || errs[2] != nil || errs[3] != nil || n != 3):
			t.Fatalf("succeeding batch op: results %v, %d rows of 3", errs, n)
		// The group ends at the failure: the op queued after it runs in the
		// next one.
		case fail && (errs[0] == nil || errs[1] == nil || errs[2] == nil || errs[3] != nil || n != 1):
			t.Fatalf("failing batch op: results %v (want every op of its group to fail, the next to land), %d rows kept of 1", errs, n)
		}
	}
	if err := s.write(context.Background(), insert(30)); err != nil {
		t.Fatalf("write after a failed batch: %v", err)
	}
}

// TestGroupCallerHangingUpMidStatement: a caller whose context ends while
// its op's statement runs does not interrupt it, so the other ops of its
// group (and its own, which was accepted) commit: an interrupted write
// would roll back the whole shared transaction.
func TestGroupCallerHangingUpMidStatement(t *testing.T) {
	s := groupStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	long := func(tx *sql.Tx) error {
		close(started)
		// Long enough for the cancel below to land while it runs.
		_, err := tx.ExecContext(ctx, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000)
			INSERT INTO parent (id) SELECT x + 10000 FROM c`)
		return err
	}
	go func() {
		<-started
		time.Sleep(5 * time.Millisecond)
		cancel()
	}()
	res := group(t, s, []context.Context{nil, ctx, nil}, insert(1), long, insert(3))
	for i, err := range res {
		if err != nil {
			t.Fatalf("op %d: %v (results %v): a caller hanging up failed its group", i, err, res)
		}
	}
	if n := count(t, s, "parent"); n != 50000+3 {
		t.Fatalf("%d rows, want %d", n, 50000+3)
	}
}

// TestAnsweredCallersRunBeforeTheNextGroup: once a group is committed, its
// callers run before the writer starts the next group. On one processor,
// with the next group's write queued, none of them would run until the
// writer blocked otherwise.
func TestAnsweredCallersRunBeforeTheNextGroup(t *testing.T) {
	s := groupStore(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var returned atomic.Int64
	seen := make(chan int64, 1)
	next := writeOp{ctx: context.Background(), done: make(chan error, 1), fn: func(*sql.Tx) error {
		seen <- returned.Load()
		return nil
	}}
	var wg sync.WaitGroup
	callers := func(from, n int) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.write(context.Background(), insert(from+i)); err != nil {
					t.Error(err)
				}
				returned.Add(1)
			}()
		}
	}
	// The first write holds the writer until maxGroup-1 more are queued
	// and then queues next: the group takes maxGroup, next is the
	// following group's.
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := s.write(context.Background(), func(tx *sql.Tx) error {
			callers(1, maxGroup-1)
			for len(s.ops) < maxGroup-1 {
				runtime.Gosched()
			}
			s.ops <- next
			return insert(0)(tx)
		})
		if err != nil {
			t.Error(err)
		}
		returned.Add(1)
	}()
	wg.Wait()
	if err := <-next.done; err != nil {
		t.Fatal(err)
	}
	if n := <-seen; n == 0 {
		t.Fatalf("the next group ran before any of the %d callers answered", maxGroup)
	}
	if n := count(t, s, "parent"); n != maxGroup {
		t.Fatalf("%d rows, want %d", n, maxGroup)
	}
}
