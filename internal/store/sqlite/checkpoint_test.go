package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointer: the writer no longer checkpoints every thousand pages
// (its backstop is walBackstopPages), and the checkpointer copies what it
// commits back into the database file on its own.
func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	s, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var backstop int
	if err := s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&backstop); err != nil || backstop != walBackstopPages {
		t.Fatalf("writer wal_autocheckpoint = %d, %v; want %d", backstop, err, walBackstopPages)
	}
	// Without the checkpointer, 8 MB of commits (2,000 pages) stay in the
	// WAL: the writer did not checkpoint at 1,000 pages.
	stopCheckpointer(s)
	if _, err := s.exec(ctx, `CREATE TABLE blobs (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	blob := []byte(strings.Repeat("x", 4000))
	for range 2000 {
		if err := s.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO blobs VALUES (?)`, blob)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got := size(); got-before > 1<<20 {
		t.Fatalf("the database file grew by %d bytes: the writer checkpointed", got-before)
	}
	// The checkpointer copies them within a few of its rounds.
	s.ckptStop, s.ckptDone = make(chan struct{}), make(chan struct{})
	go s.checkpointer(s.ckptStop, s.ckptDone)
	if _, err := s.exec(ctx, `INSERT INTO blobs VALUES (x'00')`); err != nil { // a commit since its last round
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * checkpointMax)
	for size()-before < 7<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file grew by %d bytes in %v: no checkpoint", size()-before, 3*checkpointMax)
		}
		time.Sleep(checkpointMin / 2)
	}
}

// TestNextCheckpoint: the checkpointer waits longer while the WAL it
// finds is small, and less long when it nears the writer's backstop,
// within its bounds.
func TestNextCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		frames int
		want   time.Duration
	}{
		{time.Second, 0, 2 * time.Second},
		{time.Second, walLow - 1, 2 * time.Second},
		{time.Second, walLow, time.Second},
		{time.Second, walHigh, time.Second},
		{time.Second, walHigh + 1, 500 * time.Millisecond},
		{checkpointMax, 10, checkpointMax},
		{checkpointMin, walBackstopPages, checkpointMin},
		{300 * time.Millisecond, walBackstopPages, checkpointMin},
	} {
		if got := nextCheckpoint(tc.d, tc.frames); got != tc.want {
			t.Errorf("nextCheckpoint(%v, %d) = %v, want %v", tc.d, tc.frames, got, tc.want)
		}
	}
	if walHigh >= walBackstopPages || walLow >= walHigh || checkpointMin > checkpointFirst || checkpointFirst > checkpointMax {
		t.Fatal("bounds out of order")
	}
}

// TestWriterFinishesCheckpoint: under a steady stream of commits, each of
// which lands while a checkpointer round copies, the WAL still starts over
// after the rounds (the writer finishes what a round missed) instead of
// growing round after round until the writer's backstop.
func TestWriterFinishesCheckpoint(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "t.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stopCheckpointer(s) // the test runs the rounds
	if _, err := s.exec(ctx, `CREATE TABLE blobs (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	writing := make(chan error, 1)
	go func() {
		blob := []byte(strings.Repeat("x", 1000))
		for {
			select {
			case <-stop:
				writing <- nil
				return
			default:
			}
			if err := s.write(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO blobs VALUES (?)`, blob)
				return err
			}); err != nil {
				writing <- err
				return
			}
		}
	}()
	var sizes []int
	for range 40 {
		time.Sleep(10 * time.Millisecond)
		frames, err := s.checkpointRound()
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, frames)
	}
	close(stop)
	if err := <-writing; err != nil {
		t.Fatal(err)
	}
	restarts := 0
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < sizes[i-1] {
			restarts++
		}
	}
	if restarts < len(sizes)/4 {
		t.Fatalf("the WAL started over %d times in %d rounds (frames a round found: %v)", restarts, len(sizes), sizes)
	}
}

// stopCheckpointer ends s's checkpointer, so that a test runs its rounds
// (or none).
func stopCheckpointer(s *Store) {
	close(s.ckptStop)
	<-s.ckptDone
	s.ckptStop = nil
}
