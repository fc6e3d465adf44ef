// Package sqlite is corral's embedded store: one SQLite file in WAL mode,
// migrations embedded in the binary and applied on open. It implements the
// store ports of the registry and audit packages.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" driver: pure Go, so the binary stays static
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure a Store.
type Options struct {
	// Driver is the database/sql driver name; "sqlite" (modernc) unless a
	// benchmark compares another that speaks the same SQL.
	Driver string
	// Synchronous is SQLite's synchronous pragma: FULL (default) makes every
	// commit durable across power loss; NORMAL across process crashes only.
	Synchronous string
	// GroupLinger bounds how long the single writer waits for more writes
	// before committing a group, when the group before it held more than
	// one (concurrent writers): bigger groups share one fsync, at the cost
	// of at most this much latency. 0 is the default (200 µs); negative,
	// never wait.
	GroupLinger time.Duration
	// AuthCacheBytes bounds the devices' auth rows kept in memory
	// (authcache.go): 0 is DefaultAuthCacheBytes; negative keeps none.
	AuthCacheBytes int
}

// Store is the SQLite adapter. Writes go through one connection (SQLite
// has one writer); reads use a pool.
type Store struct {
	w *sql.DB
	r *sql.DB

	stmts     sync.Map // query -> *sql.Stmt on r (hot read paths)
	wstmts    sync.Map // query -> *sql.Stmt on w (hot write paths)
	savepoint [3]*sql.Stmt
	auth      *authCache
	hints     *pastHints // shadow rows as this process last wrote them (pasthints.go)
	bound     boundStmts // the writer's statements bound to its group's transaction (writer goroutine only)
	log       logWork    // the shadow log's writes queued for the group's end (writer goroutine only)
	// presenceMu keeps ApplyPresence calls in order, so that the cache
	// applies their status changes in the order they committed.
	presenceMu sync.Mutex

	linger time.Duration // Options.GroupLinger, resolved
	ops    chan writeOp
	dones  sync.Pool // chan error: writeOp.done of submit's ops, reused
	puts   sync.Pool // *putWrite: PutShadow's operations, reused
	// groups and grouped count the writer's committed groups and the writes in them
	// (their ratio is the mean group size the benchmarks report).
	groups, grouped atomic.Uint64
	writerDone      chan struct{}
	// ckptStop ends the checkpointer, which closes ckptDone (nil without one).
	ckptStop, ckptDone chan struct{}
	// ckptCaughtUp is set by a checkpointer round that copied the whole
	// WAL it found; the writer then finishes the checkpoint (finishCheckpoint).
	ckptCaughtUp atomic.Bool
	closeOnce    sync.Once
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	if o.Driver == "" {
		o.Driver = "sqlite"
	}
	if o.Synchronous == "" {
		o.Synchronous = "FULL"
	}
	switch strings.ToUpper(o.Synchronous) {
	case "FULL", "NORMAL", "EXTRA", "OFF":
	default:
		return nil, fmt.Errorf("sqlite synchronous %q: want FULL, NORMAL, EXTRA or OFF", o.Synchronous)
	}
	drv, err := sql.Open(o.Driver, "") // for its driver: opens no connection
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	drv.Close()
	// The writer's statements run without their callers' cancellation
	// (quietConnector: an interrupt would fail the callers sharing a group).
	w := sql.OpenDB(quietConnector{dsn: dsnFor(o.Driver, path, o.Synchronous), drv: drv.Driver()})
	w.SetMaxOpenConns(1)
	r, err := sql.Open(o.Driver, dsnCache(o.Driver, path, o.Synchronous, readerCacheKiB))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	if o.GroupLinger == 0 {
		o.GroupLinger = defaultLinger
	}
	if o.AuthCacheBytes == 0 {
		o.AuthCacheBytes = DefaultAuthCacheBytes
	}
	s := &Store{w: w, r: r, linger: o.GroupLinger, auth: newAuthCache(max(o.AuthCacheBytes, 0)), hints: newPastHints(maxPastHints)}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.warmAuth(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startWriter(); err != nil {
		s.Close()
		return nil, err
	}
	if o.Driver != "sqlite3" {
		s.ckptStop, s.ckptDone = make(chan struct{}), make(chan struct{})
		go s.checkpointer(s.ckptStop, s.ckptDone)
	}
	return s, nil
}

// Page cache sizes (KiB). Each connection has its own cache, and modernc's
// allocator holds a 4 KiB page with its header in an 8 KiB slot, so a
// cache costs twice its size once full; the memory stays with the process.
// The writer keeps the pages it changes (rows appended, presence and
// shadow rows updated) and the B-tree interior pages above them; beyond
// that, a page it needs again is read from the WAL or the database file
// (the kernel's page cache), at a copy's cost. A reader's cache is
// emptied by SQLite whenever another connection has committed since its
// last read, which the writer does all the time under load, so a large
// one is mostly pages dropped soon. With 64 MiB each (the writer and 8
// readers), a server's SQLite memory grew with every device that ever
// connected (≈ 1.5 KB a device at 19,000 devices).
const (
	writerCacheKiB = 8 << 10
	readerCacheKiB = 2 << 10
)

// dsnFor is the writer connection's DSN. Its automatic checkpoint is a
// backstop only (walBackstopPages): the checkpointer copies the WAL back
// into the database beside the writer, whose commits would otherwise
// stop for a checkpoint every thousand pages (copying 4 MB and syncing
// the database file: the tail of every commit's latency under load).
func dsnFor(driver, path, sync string) string {
	d := dsnCache(driver, path, sync, writerCacheKiB)
	if driver != "sqlite3" {
		d += "&" + url.Values{"_pragma": {"wal_autocheckpoint(" + strconv.Itoa(walBackstopPages) + ")"}}.Encode()
	}
	return d
}

// walBackstopPages is the WAL size (pages) at which the writer checkpoints
// itself, should the checkpointer fall behind: 256 MiB. It also bounds the
// checkpointer's interval (walHigh): at 10,000 shadow updates a second on
// 10,000 shadows the WAL grows by ≈ 13,000 frames a second, so a 64 MiB
// backstop held the checkpointer at 500 ms, each round (10 MB copied back
// and the database file synced) and the writer's finishing copy after it
// a latency spike twice a second; with 256 MiB it runs every 2 s (rounds
// of ≈ 26,000 frames), and the paced p99 drops by ≈ 1 ms (bench/RESULTS.md
// session 18). The WAL file keeps its largest size (SQLite writes it over
// from the start once copied), so a busy store's WAL takes up to this much
// disk.
const walBackstopPages = 65536

// The checkpointer's interval adapts to the writes, between checkpointMin
// and checkpointMax. A checkpoint copies each page once however many
// commits changed it, so the longer the interval the fewer copies of
// pages many writes touch (at 2 s rather than 250 ms, ≈ 8 % less server
// CPU a shadow update at 10,000 devices, as a device's first CONNECT at
// 1 s; bench/RESULTS.md sessions 5 and 10); but the WAL must stay under
// the writer's backstop: a checkpoint that found more than walHigh frames
// halves the interval, one that found fewer than walLow doubles it.
const (
	checkpointMin   = 250 * time.Millisecond
	checkpointMax   = 2 * time.Second
	checkpointFirst = time.Second
	walHigh         = walBackstopPages * 3 / 4
	walLow          = walHigh / 4
)

// nextCheckpoint is the checkpointer's interval after one of d that found
// frames pages in the WAL.
func nextCheckpoint(d time.Duration, frames int) time.Duration {
	switch {
	case frames > walHigh:
		return max(d/2, checkpointMin)
	case frames < walLow:
		return min(d*2, checkpointMax)
	}
	return d
}

// checkpointer runs passive checkpoints on a reader connection while the
// writer has committed since the last one: they neither wait for nor
// block the writer or the readers (a page still read by a reader's
// snapshot waits for the next one). It ends when stop is closed.
func (s *Store) checkpointer(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	d := checkpointFirst
	t := time.NewTimer(d)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if g := s.groups.Load(); g != seen {
			seen = g
			// The writer's backstop remains should this fail.
			if frames, err := s.checkpointRound(); err == nil {
				d = nextCheckpoint(d, frames)
			}
		}
		t.Reset(d)
	}
}

// checkpointRound is one of the checkpointer's passive checkpoints: it
// returns the WAL's size in frames, and has the writer finish the
// checkpoint when it copied all of them.
func (s *Store) checkpointRound() (frames int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, copied int
	if err := s.r.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		return 0, fmt.Errorf("checkpointing: %w", err)
	}
	if busy == 0 && frames > 0 && copied == frames {
		s.ckptCaughtUp.Store(true)
	}
	return frames, nil
}

// boundStmts binds the writer's prepared statements to a group's
// transaction once a group rather than once an op: tx.StmtContext makes a
// new *sql.Stmt each call, which the transaction keeps and closes at its
// end. Only the writer goroutine, running the ops, uses it. It holds the
// last group's transaction until the next begins, so a new one cannot
// take its address.
//
// The hottest statements (a shadow update's) skip database/sql altogether
// (exec): run on the group's connection (conn, on which its transaction
// began) as driver statements prepared once on that connection, their
// arguments in a reused slice, they cost no argument conversion, no
// result or argument slice allocated and no pool locking a statement.
type boundStmts struct {
	tx *sql.Tx
	m  map[*sql.Stmt]*sql.Stmt

	conn *sql.Conn              // the group's connection: tx's
	dc   any                    // the driver connection raw was prepared on
	raw  map[string]driver.Stmt // by query
	args []driver.NamedValue    // exec's arguments, reused
}

// get returns st bound to tx.
func (b *boundStmts) get(ctx context.Context, tx *sql.Tx, st *sql.Stmt) *sql.Stmt {
	if b.tx != tx {
		b.tx = tx
		clear(b.m)
	}
	if t, ok := b.m[st]; ok {
		return t
	}
	t := tx.StmtContext(ctx, st)
	if b.m == nil {
		b.m = map[*sql.Stmt]*sql.Stmt{}
	}
	b.m[st] = t
	return t
}

// rawResult is what exec's statement changed.
type rawResult struct{ rows, lastID int64 }

// arg appends one argument of the next exec: nil, int64, string or
// []byte, the types a driver takes as they are.
func (b *boundStmts) arg(v driver.Value) {
	b.args = append(b.args, driver.NamedValue{Ordinal: len(b.args) + 1, Value: v})
}

// exec runs query in the group's transaction with the arguments arg
// added since the last exec, and clears them.
func (b *boundStmts) exec(query string) (rawResult, error) {
	var out rawResult
	err := b.conn.Raw(func(dc any) error {
		st, err := b.prepared(dc, query)
		if err != nil {
			return err
		}
		// The writer's statements are never cancelled (quiet.go).
		res, err := st.(driver.StmtExecContext).ExecContext(context.Background(), b.args)
		if err != nil {
			return err
		}
		if out.rows, err = res.RowsAffected(); err != nil {
			return err
		}
		out.lastID, err = res.LastInsertId()
		return err
	})
	clear(b.args)
	b.args = b.args[:0]
	return out, err
}

// prepared returns query prepared on dc, once: anew should database/sql
// have replaced the writer's connection.
func (b *boundStmts) prepared(dc any, query string) (driver.Stmt, error) {
	if b.dc != dc {
		b.dc, b.raw = dc, map[string]driver.Stmt{} // a replaced connection took its statements with it
	}
	if st, ok := b.raw[query]; ok {
		return st, nil
	}
	st, err := dc.(driver.ConnPrepareContext).PrepareContext(context.Background(), query)
	if err != nil {
		return nil, fmt.Errorf("preparing: %w", err)
	}
	if q, ok := st.(quietStmt); ok {
		st = q.Stmt // exec's context is never cancelled: no wrapper needed
	}
	if _, ok := st.(driver.StmtExecContext); !ok {
		st.Close()
		return nil, errors.New("the driver's statements lack ExecContext")
	}
	b.raw[query] = st
	return st, nil
}

// closeRaw closes the driver statements exec prepared, on the writer's
// connection, once the writer has stopped.
func (b *boundStmts) closeRaw(ctx context.Context, w *sql.DB) {
	if len(b.raw) == 0 {
		return
	}
	c, err := w.Conn(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	c.Raw(func(dc any) error {
		if dc == b.dc {
			for _, st := range b.raw {
				st.Close()
			}
		}
		return nil
	})
	b.raw = nil
}

// dsnCache is a DSN with a page cache of cacheKiB.
func dsnCache(driver, path, sync string, cacheKiB int) string {
	size := strconv.Itoa(-cacheKiB) // negative: KiB rather than pages
	// No memory-mapped reads (mmap_size 0, SQLite's default): a mapped page
	// a read touched stays in the process's RSS for the life of the mapping
	// (1.0-1.6 KB an idle device connection at 19,000: its device row, its
	// shadow and their index pages), where read pages sit in the kernel's
	// page cache, reclaimable and shared, outside it. The price is a pread
	// for a page not in SQLite's own cache (a device look-up at 100,000
	// devices: p50 6.8 -> 10.7 µs, bench/RESULTS.md).
	pragmas := []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(" + sync + ")",
		"cache_size(" + size + ")", "mmap_size(0)", "temp_store(MEMORY)"}
	if driver == "sqlite3" { // mattn/go-sqlite3 spells options its own way
		return "file:" + path + "?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=1&_cache_size=" + size + "&_synchronous=" + sync
	}
	v := url.Values{}
	for _, p := range pragmas {
		v.Add("_pragma", p)
	}
	return "file:" + path + "?" + v.Encode()
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, sub)
	if err != nil {
		return fmt.Errorf("preparing migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
}

// queryRow runs a hot read through a statement prepared once: parsing
// SQL costs more than the look-up itself.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	// A point read runs for microseconds: without ctx's cancellation, which
	// makes the driver start a goroutine a statement to watch it (≈ 1 KB
	// and two goroutine switches a read); a ctx already done still fails.
	if ctx.Err() == nil {
		ctx = context.WithoutCancel(ctx)
	}
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	st, err := s.r.PrepareContext(ctx, query)
	if err != nil {
		return s.r.QueryRowContext(ctx, query, args...)
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		st = prev.(*sql.Stmt)
	}
	return st.QueryRowContext(ctx, args...)
}

// wprep returns a statement prepared once on the writer connection. Call
// it outside the writer goroutine (it may wait for the connection), then
// bind it to the group's transaction with tx.StmtContext (or, where a
// group runs it many times, boundStmts).
func (s *Store) wprep(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.wstmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.w.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.wstmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// Pragmas are the settings SQLite reports for a connection, read back
// rather than taken from the DSN, so that a driver ignoring an option shows.
type Pragmas struct {
	JournalMode string // "wal"
	Synchronous string // OFF, NORMAL, FULL or EXTRA
	ForeignKeys bool
}

// Effective reads the pragmas in force on the writer connection (every
// write goes through it) and checks that a reader agrees.
func (s *Store) Effective(ctx context.Context) (Pragmas, error) {
	w, err := readPragmas(ctx, s.w)
	if err != nil {
		return w, err
	}
	r, err := readPragmas(ctx, s.r)
	if err != nil {
		return w, err
	}
	if r != w {
		return w, fmt.Errorf("reader pragmas %+v differ from the writer's %+v", r, w)
	}
	return w, nil
}

func readPragmas(ctx context.Context, db *sql.DB) (Pragmas, error) {
	var p Pragmas
	var sync, fk int
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&p.JournalMode); err != nil {
		return p, fmt.Errorf("reading journal_mode: %w", err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return p, fmt.Errorf("reading synchronous: %w", err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return p, fmt.Errorf("reading foreign_keys: %w", err)
	}
	levels := []string{"OFF", "NORMAL", "FULL", "EXTRA"}
	if sync < 0 || sync >= len(levels) {
		return p, fmt.Errorf("synchronous = %d: not a known level", sync)
	}
	p.Synchronous, p.ForeignKeys = levels[sync], fk == 1
	return p, nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.ckptStop != nil {
			close(s.ckptStop)
			<-s.ckptDone
		}
		s.stopWriter()
		s.bound.closeRaw(context.Background(), s.w)
		for _, st := range s.savepoint {
			if st != nil {
				st.Close()
			}
		}
		s.stmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
		s.wstmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
		err = errors.Join(s.r.Close(), s.w.Close())
	})
	return err
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}
