package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

// TestShadowHistoryKeepsNewest: after every write the history holds the
// newest keep versions exactly, whether or not the write had any to trim
// (versions up to keep are written without a trim).
func TestShadowHistoryKeepsNewest(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, keep := range []int{1, 3} {
		k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev", Name: string(rune('a' + keep))}
		for v := int64(1); v <= 6; v++ {
			if err := s.PutShadow(ctx, k, v-1, shadow.Stored{Doc: []byte(`{}`), Version: v, UpdatedAt: time.Now()}, keep); err != nil {
				t.Fatal(err)
			}
			h, err := s.ShadowHistory(ctx, k, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := min(v, int64(keep))
			if int64(len(h)) != want || h[len(h)-1].Version != v || h[0].Version != v-want+1 {
				t.Fatalf("keep %d, after version %d: %d versions from %d; want the newest %d", keep, v, len(h), h[0].Version, want)
			}
		}
	}
}

// TestShadowHistoryModel: random writes, stale ones among them, with keep
// changing between writes, always leave the newest keep versions (none
// for keep 0), the current one in its row and the superseded ones in
// shadow_log, listed by the row; the log holds nothing else.
func TestShadowHistoryModel(t *testing.T) {
	ctx := context.Background()
	s, _ := openShadows(t)
	sizes := []int{20, 1500, 5000}
	base := time.UnixMilli(1765000000000)
	doc := func(v int64, size int) shadow.Stored {
		d := fmt.Appendf(nil, `{"version":%d,"pad":"`, v)
		d = append(append(d, bytes.Repeat([]byte("x"), size)...), `"}`...)
		return shadow.Stored{Doc: d, Version: v, UpdatedAt: base.Add(time.Duration(v) * time.Millisecond)}
	}
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 1))
		k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev", Name: fmt.Sprint("s", seed)}
		var model []shadow.Stored
		v := int64(1)
		{
			st := doc(v, sizes[r.IntN(len(sizes))])
			keep := r.IntN(5)
			if err := s.PutShadow(ctx, k, shadow.NoneStored, st, keep); err != nil {
				t.Fatal(err)
			}
			if keep > 0 {
				model = append(model, st)
			}
		}
		check := func(what string) {
			t.Helper()
			since := int64(r.IntN(int(v) + 1))
			h, err := s.ShadowHistory(ctx, k, since)
			if err != nil {
				t.Fatalf("seed %d, %s: %v", seed, what, err)
			}
			want := []shadow.Stored{}
			for _, st := range model {
				if st.Version > since {
					want = append(want, st)
				}
			}
			if len(h) != len(want) {
				t.Fatalf("seed %d, %s, since %d: %d versions; want %d", seed, what, since, len(h), len(want))
			}
			for i := range h {
				if h[i].Version != want[i].Version || !bytes.Equal(h[i].Doc, want[i].Doc) || !h[i].UpdatedAt.Equal(want[i].UpdatedAt) {
					t.Fatalf("seed %d, %s, since %d: version %d, %d bytes at %v; want %d, %d bytes at %v", seed, what, since,
						h[i].Version, len(h[i].Doc), h[i].UpdatedAt, want[i].Version, len(want[i].Doc), want[i].UpdatedAt)
				}
			}
		}
		check("first")
		for range 60 {
			keep := []int{0, 1, 2, 4, 8, 10, 10, 10}[r.IntN(8)]
			next := v + 1 + int64(r.IntN(3))
			st := doc(next, sizes[r.IntN(len(sizes))])
			if r.IntN(4) == 0 {
				misleadHint(r, s, k, v)
			}
			if r.IntN(10) == 0 {
				if err := s.PutShadow(ctx, k, v-1, st, keep); !errors.Is(err, shadow.ErrStale) {
					t.Fatalf("seed %d: a stale write: %v", seed, err)
				}
				check("a stale write")
				continue
			}
			if err := s.PutShadow(ctx, k, v, st, keep); err != nil {
				t.Fatalf("seed %d, version %d: %v", seed, next, err)
			}
			v = next
			model = append(model, st)
			model = model[max(0, len(model)-keep):]
			check(fmt.Sprintf("version %d keeping %d", v, keep))
			if rows := pastRows(t, s, k); rows != max(len(model)-1, 0) {
				t.Fatalf("seed %d: %d past versions listed; want the %d superseded versions kept", seed, rows, max(len(model)-1, 0))
			}
			logHoldsListed(t, s)
			if got, err := s.GetShadow(ctx, k); err != nil || got.Version != v || !bytes.Equal(got.Doc, st.Doc) {
				t.Fatalf("seed %d: GetShadow = %d %v; want version %d", seed, got.Version, err, v)
			}
		}
		if err := s.DeleteShadow(ctx, k, v, base); err != nil {
			t.Fatal(err)
		}
		if n := pastRows(t, s, k); n != 0 {
			t.Fatalf("seed %d: %d past versions listed after the delete", seed, n)
		}
		logHoldsListed(t, s)
		if h, err := s.ShadowHistory(ctx, k, 0); err != nil || len(h) != 0 {
			t.Fatalf("seed %d: history after the delete: %d %v", seed, len(h), err)
		}
		if err := s.PutShadow(ctx, k, 0, doc(v+1, 10), 3); err != nil {
			t.Fatal(err)
		}
		if h, err := s.ShadowHistory(ctx, k, 0); err != nil || len(h) != 1 || h[0].Version != v+1 {
			t.Fatalf("seed %d: history after the re-creation: %+v %v", seed, h, err)
		}
	}
}

// misleadHint replaces the hint of k (at version v) with one that is
// wrong in one way, or drops it: the next write must not be misled.
func misleadHint(r *rand.Rand, s *Store, k shadow.Key, v int64) {
	h, ok := s.hints.get(k)
	if !ok {
		return
	}
	switch r.IntN(5) {
	case 0:
		h.kept = 1 - h.kept
	case 1:
		h.past = ""
	case 2:
		h.past = "[999999]"
	case 3:
		h.version = v - 1
	default:
		s.hints.forget(k)
		return
	}
	s.hints.set(k, h)
}

// TestShadowHintsUsed: updates of a shadow written here read nothing
// first (the hint path is taken), and one another writer made stale
// through the same database is refused and changes nothing.
func TestShadowHintsUsed(t *testing.T) {
	ctx := context.Background()
	s, path := openShadows(t)
	k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev"}
	put := func(prev, v int64) error {
		return s.PutShadow(ctx, k, prev, shadow.Stored{Doc: fmt.Appendf(nil, `{"v":%d}`, v), Version: v, UpdatedAt: time.UnixMilli(v)}, 3)
	}
	if err := put(shadow.NoneStored, 1); err != nil {
		t.Fatal(err)
	}
	for v := int64(2); v <= 10; v++ {
		if err := put(v-1, v); err != nil {
			t.Fatal(err)
		}
	}
	if s.hints.hits.Load() != 9 {
		t.Fatalf("%d of 9 updates used their hint", s.hints.hits.Load())
	}
	// Another writer moves the row on: the hint (version 10) is wrong now.
	other := otherWriter(t, path)
	if _, err := other.Exec(`DELETE FROM shadow_log; UPDATE shadows SET version = 11, doc = '{"v":11}', kept = 0, past = NULL`); err != nil {
		t.Fatal(err)
	}
	if err := put(10, 12); !errors.Is(err, shadow.ErrStale) {
		t.Fatalf("a write from version 10: %v; want stale", err)
	}
	if got, err := s.GetShadow(ctx, k); err != nil || got.Version != 11 {
		t.Fatalf("after the stale write: version %d %v", got.Version, err)
	}
	if n := pastRows(t, s, k); n != 0 {
		t.Fatalf("%d past versions listed", n)
	}
	logHoldsListed(t, s)
	if err := put(11, 12); err != nil {
		t.Fatal(err)
	}
	if h, err := s.ShadowHistory(ctx, k, 0); err != nil || len(h) != 1 || h[0].Version != 12 {
		t.Fatalf("history %+v %v", h, err)
	}
}

// TestShadowStaleWriteInAGroup: a stale shadow write (no savepoint of its
// own) changes nothing and fails nothing else of the group it ran in.
func TestShadowStaleWriteInAGroup(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev"}
	other := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "other"}
	at := time.Now()
	for _, key := range []shadow.Key{k, other} {
		for v := int64(1); v <= 2; v++ {
			if err := s.PutShadow(ctx, key, v-1, shadow.Stored{Doc: []byte(`{"v":1}`), Version: v, UpdatedAt: at}, 10); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Hold the writer so that the two writes below share a group.
	release, holding := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.write(ctx, func(*sql.Tx) error { close(holding); <-release; return nil })
	}()
	<-holding
	stale, fresh := make(chan error, 1), make(chan error, 1)
	go func() {
		stale <- s.PutShadow(ctx, k, 1, shadow.Stored{Doc: []byte(`{"stale":1}`), Version: 2, UpdatedAt: at}, 10)
	}()
	for len(s.ops) < 1 {
		runtime.Gosched()
	}
	go func() {
		fresh <- s.PutShadow(ctx, other, 2, shadow.Stored{Doc: []byte(`{"v":3}`), Version: 3, UpdatedAt: at}, 10)
	}()
	for len(s.ops) < 2 {
		runtime.Gosched()
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-stale; !errors.Is(err, shadow.ErrStale) {
		t.Fatalf("stale write: %v, want ErrStale", err)
	}
	if err := <-fresh; err != nil {
		t.Fatalf("the write sharing its group: %v", err)
	}
	for key, want := range map[shadow.Key]int64{k: 2, other: 3} {
		h, err := s.ShadowHistory(ctx, key, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != int(want) || h[len(h)-1].Version != want || (key == k && bytes.Contains(h[len(h)-1].Doc, []byte("stale"))) {
			t.Fatalf("%s: history %d versions, newest %+v; want %d up to %d", key.DeviceName, len(h), h[len(h)-1], want, want)
		}
	}
}

// pastRows counts the log rows k's row lists.
func pastRows(t *testing.T, s *Store, k shadow.Key) int {
	t.Helper()
	var n int
	if err := s.w.QueryRow(`SELECT IFNULL(json_array_length(past), 0) FROM shadows WHERE product_key = ? AND device_name = ? AND name = ?`,
		k.ProductKey, k.DeviceName, k.Name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// logHoldsListed fails unless shadow_log holds exactly the rows the
// shadows list, each listed once: nothing left behind, nothing missing.
func logHoldsListed(t *testing.T, s *Store) {
	t.Helper()
	var rows, listed, distinct, found int
	if err := s.w.QueryRow(`SELECT (SELECT count(*) FROM shadow_log),
		(SELECT count(*) FROM shadows s, json_each(s.past) j),
		(SELECT count(DISTINCT j.value) FROM shadows s, json_each(s.past) j),
		(SELECT count(*) FROM shadows s, json_each(s.past) j JOIN shadow_log l ON l.id = j.value)`).Scan(&rows, &listed, &distinct, &found); err != nil {
		t.Fatal(err)
	}
	if rows != listed || listed != distinct || found != listed {
		t.Fatalf("shadow_log: %d rows; the shadows list %d (%d distinct, %d found)", rows, listed, distinct, found)
	}
}

// TestShadowLogKeptOutOfDeletedOwners: deleting a device or a product
// takes its shadows' past versions out of the log, and no one else's.
func TestShadowLogKeptOutOfDeletedOwners(t *testing.T) {
	ctx := context.Background()
	s := openAuth(t, filepath.Join(t.TempDir(), "s.db"), 0)
	authSeed(t, s, "a1B2c3D4e5F", "d1", "d2")
	authSeed(t, s, "b1B2c3D4e5F", "d1")
	keys := []shadow.Key{{ProductKey: "a1B2c3D4e5F", DeviceName: "d1"}, {ProductKey: "a1B2c3D4e5F", DeviceName: "d1", Name: "n"},
		{ProductKey: "a1B2c3D4e5F", DeviceName: "d2"}, {ProductKey: "b1B2c3D4e5F", DeviceName: "d1"}}
	for _, k := range keys {
		for v := int64(1); v <= 4; v++ {
			if err := s.PutShadow(ctx, k, v-1, shadow.Stored{Doc: []byte(`{}`), Version: v, UpdatedAt: time.Now()}, 3); err != nil {
				t.Fatal(err)
			}
		}
	}
	logSize := func() (n int) {
		t.Helper()
		if err := s.w.QueryRow(`SELECT count(*) FROM shadow_log`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := logSize(); n != 8 {
		t.Fatalf("%d log rows; want 2 for each of 4 shadows", n)
	}
	if err := s.DeleteDevice(ctx, "a1B2c3D4e5F", "d1"); err != nil {
		t.Fatal(err)
	}
	logHoldsListed(t, s)
	if n := logSize(); n != 4 {
		t.Fatalf("%d log rows after deleting d1; want 4", n)
	}
	if err := s.DeleteProduct(ctx, "a1B2c3D4e5F"); err != nil {
		t.Fatal(err)
	}
	logHoldsListed(t, s)
	if n := logSize(); n != 2 {
		t.Fatalf("%d log rows after deleting the product; want 2", n)
	}
}

func FuzzParsePast(f *testing.F) {
	for _, s := range []string{"", "[]", "[1]", "[1,2,3]", "[ 4, 5 ]", "[0]", "[-1]", "[1,,2]", "1,2", "[9223372036854775807]", "[99999999999999999999]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := parsePast(s)
		if err != nil {
			return
		}
		for _, id := range ids {
			if id <= 0 {
				t.Fatalf("%q: id %d", s, id)
			}
		}
		again, err := parsePast(string(appendPast(nil, ids)))
		if err != nil || len(again) != len(ids) {
			t.Fatalf("%q: %v read back as %v (%v)", s, ids, again, err)
		}
		for i := range ids {
			if again[i] != ids[i] {
				t.Fatalf("%q: %v read back as %v", s, ids, again)
			}
		}
	})
}

// TestShadowRawStatements: a hinted update runs its statements on the
// group's connection as driver statements (boundStmts.exec), prepared
// once however many groups use them, and the store closes cleanly with
// them prepared; a store whose writer's connection is replaced prepares
// them anew on the new one.
func TestShadowRawStatements(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev"}
	put := func(v int64) {
		t.Helper()
		if err := s.PutShadow(ctx, k, v-1, shadow.Stored{Doc: fmt.Appendf(nil, `{"v":%d}`, v), Version: v, UpdatedAt: time.Now()}, 2); err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
	}
	for v := int64(1); v <= 5; v++ {
		put(v)
	}
	if s.hints.hits.Load() != 4 || len(s.bound.raw) != 3 { // update, and the log's insert and drop at the group's end
		t.Fatalf("%d hinted updates, %d driver statements; want 4 and 3", s.hints.hits.Load(), len(s.bound.raw))
	}
	dc := s.bound.dc
	s.bound.dc = struct{}{} // as if database/sql had replaced the connection
	put(6)
	if s.bound.dc != dc || len(s.bound.raw) != 3 {
		t.Fatalf("after a replaced connection: %d driver statements, on the same connection %v", len(s.bound.raw), s.bound.dc == dc)
	}
	h, err := s.ShadowHistory(ctx, k, 0)
	if err != nil || len(h) != 2 || h[0].Version != 5 || string(h[1].Doc) != `{"v":6}` {
		t.Fatalf("history = %+v, %v; want versions 5 and 6", h, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestTrimPastAllocates: trimming a full default history (10 versions)
// allocates only its list's string, and keeps the newest keep-1 ids.
func TestTrimPastAllocates(t *testing.T) {
	past := []int64{1000001, 1000002, 1000003, 1000004, 1000005, 1000006, 1000007, 1000008, 1000009, 1000010}
	drop, list := trimPast(past, 10)
	if want := "[1000002,1000003,1000004,1000005,1000006,1000007,1000008,1000009,1000010]"; len(drop) != 1 || drop[0] != 1000001 || list != want {
		t.Fatalf("trimPast = %v, %q; want [1000001], %q", drop, list, want)
	}
	if n := testing.AllocsPerRun(100, func() { trimPast(past, 10) }); n != 1 {
		t.Fatalf("trimPast allocated %v times, want 1 (the list)", n)
	}
}

// holdWriter runs an op that blocks the writer until the returned
// function is called, so that the writes queued meanwhile share a group;
// queued waits until n ops wait behind it.
func holdWriter(t *testing.T, s *Store) (queued func(n int), release func()) {
	t.Helper()
	hold, holding := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.write(context.Background(), func(*sql.Tx) error { close(holding); <-hold; return nil })
	}()
	<-holding
	queued = func(n int) {
		for len(s.ops) < n {
			runtime.Gosched()
		}
	}
	return queued, func() {
		close(hold)
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	}
}

// TestShadowLogQueuedInAGroup: the log rows hinted updates queue are
// written before any other operation of their group runs (which finds
// each version they superseded in the log, each dropped one gone), an
// operation that fails takes back what it queued, and the history is
// whole after the commit.
func TestShadowLogQueuedInAGroup(t *testing.T) {
	ctx := context.Background()
	s, _ := openShadows(t)
	k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev"}
	doc := func(v int64) shadow.Stored {
		return shadow.Stored{Doc: fmt.Appendf(nil, `{"v":%d}`, v), Version: v, UpdatedAt: time.UnixMilli(1765000000000 + v)}
	}
	for v := int64(1); v <= 3; v++ {
		if err := s.PutShadow(ctx, k, v-1, doc(v), 3); err != nil {
			t.Fatal(err)
		}
	}
	queued, release := holdWriter(t, s)
	results := make(chan error, 4)
	put := func(v int64) { results <- s.PutShadow(ctx, k, v-1, doc(v), 3) }
	// In one group: version 4 (supersedes 3, drops 1), an operation that
	// reads the log, version 5 (supersedes 4, drops 2), one that queues
	// the drop of a live row and fails.
	go put(4)
	queued(1)
	var inGroup []int64
	go func() {
		results <- s.write(ctx, func(tx *sql.Tx) error {
			rows, err := tx.Query(`SELECT version FROM shadow_log ORDER BY id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var v int64
				if err := rows.Scan(&v); err != nil {
					return err
				}
				inGroup = append(inGroup, v)
			}
			return rows.Err()
		})
	}()
	queued(2)
	go put(5)
	queued(3)
	failed := errors.New("failed after queuing")
	go func() {
		results <- s.submit(writeOp{ctx: ctx, log: true, fn: func(tx *sql.Tx) error {
			s.log.drop = append(s.log.drop, 1, 2, 3, 4, 5, 6, 7, 8)
			return failed
		}})
	}()
	queued(4)
	hits := s.hints.hits.Load()
	release()
	fails := 0
	for range 4 {
		switch err := <-results; {
		case errors.Is(err, failed):
			fails++
		case err != nil:
			t.Fatal(err)
		}
	}
	if fails != 1 {
		t.Fatalf("%d operations failed; want the one", fails)
	}
	if got := s.hints.hits.Load() - hits; got != 2 {
		t.Fatalf("%d of the group's 2 updates used their hint", got)
	}
	if fmt.Sprint(inGroup) != "[2 3]" {
		t.Fatalf("the log as the group's next operation found it: versions %v; want [2 3]", inGroup)
	}
	h, err := s.ShadowHistory(ctx, k, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range h {
		got = append(got, fmt.Sprintf("%d:%s@%d", st.Version, st.Doc, st.UpdatedAt.UnixMilli()-1765000000000))
	}
	if fmt.Sprint(got) != `[3:{"v":3}@3 4:{"v":4}@4 5:{"v":5}@5]` {
		t.Fatalf("history %v; want versions 3 to 5 as written", got)
	}
	logHoldsListed(t, s)
}

// TestShadowLogIDsReadAgain: a group that fails to write its queued log
// rows (here: another process took the next id) fails its writes and
// changes nothing; the next group reads the log's last id again (not
// the next of the ids given out: the other process took those too) and
// succeeds.
func TestShadowLogIDsReadAgain(t *testing.T) {
	ctx := context.Background()
	s, path := openShadows(t)
	k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev"}
	put := func(v int64) error {
		return s.PutShadow(ctx, k, v-1, shadow.Stored{Doc: fmt.Appendf(nil, `{"v":%d}`, v), Version: v, UpdatedAt: time.UnixMilli(v)}, 4)
	}
	for v := int64(1); v <= 3; v++ {
		if err := put(v); err != nil {
			t.Fatal(err)
		}
	}
	other := otherWriter(t, path)
	for id := s.log.next; id < s.log.next+3; id++ {
		if _, err := other.Exec(`INSERT INTO shadow_log(id, version, doc, updated_at) VALUES (?, 99, '{}', 0)`, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(4); err == nil {
		t.Fatal("a write whose log row's id was taken succeeded")
	}
	if got, err := s.GetShadow(ctx, k); err != nil || got.Version != 3 {
		t.Fatalf("after the failed write: version %d %v; want 3", got.Version, err)
	}
	if err := put(4); err != nil {
		t.Fatalf("the write again: %v", err)
	}
	h, err := s.ShadowHistory(ctx, k, 0)
	if err != nil || len(h) != 4 || h[0].Version != 1 || h[3].Version != 4 {
		t.Fatalf("history %+v %v; want versions 1 to 4", h, err)
	}
}

// openShadows opens a store (synchronous=OFF) at path in a new temporary
// directory, closed when the test ends, and returns it with its path.
func openShadows(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(context.Background(), path, Options{Synchronous: "OFF"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// otherWriter opens the database at path a second time, as another
// process would, closed when the test ends.
func otherWriter(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
