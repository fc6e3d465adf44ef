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
