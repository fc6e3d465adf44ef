package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
	"github.com/corral-iot/corral/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, registry.Account{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("reopen (migrations again): %v", err)
	}
	defer s.Close()
	if _, err := s.GetAccount(ctx, "a"); err != nil {
		t.Fatal(err)
	}
}

func TestBadSynchronous(t *testing.T) {
	if _, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: "MAYBE"}); err == nil {
		t.Fatal("accepted")
	}
}

// TestEffectivePragmas reads back what SQLite runs with: a DSN option the
// driver silently ignored would leave synchronous at its default, which no
// kill -9 test can notice (the page cache survives a process kill).
func TestEffectivePragmas(t *testing.T) {
	for _, tt := range []struct{ set, want string }{{"", "FULL"}, {"FULL", "FULL"}, {"NORMAL", "NORMAL"}, {"extra", "EXTRA"}} {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: tt.set})
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Effective(context.Background())
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if p.Synchronous != tt.want || p.JournalMode != "wal" || !p.ForeignKeys {
			t.Errorf("synchronous %q: effective %+v, want synchronous %s, wal, foreign keys on", tt.set, p, tt.want)
		}
	}
}
