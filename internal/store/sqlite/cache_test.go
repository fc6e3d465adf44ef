package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestPageCacheSizes checks that the writer and the readers open with
// their own page cache sizes: SQLite ignores a pragma it cannot parse, so
// a DSN typo would silently give every connection the default.
func TestPageCacheSizes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "t.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tt := range []struct {
		name string
		db   *sql.DB
		want int
	}{
		{"writer", s.w, -writerCacheKiB},
		{"reader", s.r, -readerCacheKiB},
	} {
		var got int
		if err := tt.db.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&got); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s cache_size = %d, want %d", tt.name, got, tt.want)
		}
	}
}
