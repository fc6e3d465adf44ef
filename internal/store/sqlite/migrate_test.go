package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
)

// TestMigratedProductsKeepEveryUserTopic: a product made before topic
// classes existed reads back with one catch-all '#' class, operation all
// (every /user/ topic both ways), so its devices in the field keep them.
func TestMigratedProductsKeepEveryUserTopic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	olderDB(t, path, 11,
		`INSERT INTO accounts(id, name, created_at) VALUES ('acc1', 'one', 0)`,
		`INSERT INTO products(product_key, account_id, name, node_type, auth_type, dyn_reg, secret, created_at) VALUES ('PK000000001', 'acc1', 'old', 'direct', 'secret', 'off', x'00', 0)`,
	)

	s, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _, err := s.GetProduct(ctx, "PK000000001")
	if err != nil {
		t.Fatal(err)
	}
	want := []registry.TopicClass{{Suffix: "#", Operation: registry.TopicAll, Description: "migrated: every user topic, both ways"}}
	if len(got.TopicClasses) != len(want) {
		t.Fatalf("migrated classes %+v, want %+v", got.TopicClasses, want)
	}
	for i := range want {
		if got.TopicClasses[i] != want[i] {
			t.Fatalf("migrated class %d = %+v, want %+v", i, got.TopicClasses[i], want[i])
		}
	}
	if err := registry.ValidateTopicClasses("topicClasses", got.TopicClasses); err != nil {
		t.Fatalf("the migrated set does not pass validation: %v", err)
	}
	for suffix, op := range map[string]registry.TopicOperation{"update": registry.TopicAll, "get": registry.TopicAll, "anything/else": registry.TopicAll} {
		if c, ok := registry.MatchTopicClass(got.TopicClasses, suffix); !ok || c.Operation != op {
			t.Errorf("user/%s matches %+v %v, want %s", suffix, c, ok, op)
		}
	}
}

// TestShadowHistoryAcross00023: a history written before migration 00023
// (the current version in shadow_history too) reads the same after it and
// goes on from there; migrating down puts the current version kept only in
// its row back into shadow_history, where the code before 00023 reads it.
func TestShadowHistoryAcross00023(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	olderDB(t, path, 22,
		`INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at) VALUES ('PK000000001', 'd', '', '{"v":3}', 3, 3000)`,
		`INSERT INTO shadow_history(product_key, device_name, name, version, doc, updated_at) VALUES ('PK000000001', 'd', '', 2, '{"v":2}', 2000), ('PK000000001', 'd', '', 3, '{"v":3}', 3000)`,
	)

	s, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	k := shadow.Key{ProductKey: "PK000000001", DeviceName: "d"}
	versions := func() string {
		t.Helper()
		h, err := s.ShadowHistory(ctx, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		var vs []string
		for _, st := range h {
			vs = append(vs, string(st.Doc))
		}
		return strings.Join(vs, " ")
	}
	if got := versions(); got != `{"v":2} {"v":3}` {
		t.Fatalf("history after 00023: %s", got)
	}
	if err := s.PutShadow(ctx, k, 3, shadow.Stored{Doc: []byte(`{"v":4}`), Version: 4, UpdatedAt: time.UnixMilli(4000)}, 3); err != nil {
		t.Fatal(err)
	}
	if got := versions(); got != `{"v":2} {"v":3} {"v":4}` {
		t.Fatalf("history after a write keeping 3: %s", got)
	}
	s.Close()

	db, p := rawDB(t, path)
	defer db.Close()
	if _, err := p.DownTo(ctx, 22); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM shadow_history WHERE version IN (2, 3, 4)`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("shadow_history after migrating down: %d of versions 2, 3, 4 (%v)", n, err)
	}
}

// TestShadowHistoryAcross00024: the superseded versions in shadow_history
// move to shadow_log, listed by their shadows (those of tombstones, and a
// pre-00023 row's current version, do not), read the same and go on from
// there; migrating down puts them back.
func TestShadowHistoryAcross00024(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	olderDB(t, path, 23,
		// a: current version 5 kept, 3 and 4 superseded; b: written before
		// 00023, its current version 3 kept in shadow_history too; c: the
		// same, its current version not kept; d: a tombstone with a stray
		// row; e: keeping nothing.
		`INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted, kept) VALUES
			('PK000000001', 'a', '', '{"v":5}', 5, 5000, 0, 1), ('PK000000001', 'b', '', '{"v":3}', 3, 3000, 0, NULL),
			('PK000000001', 'c', '', '{"v":2}', 2, 2000, 0, NULL), ('PK000000001', 'd', '', NULL, 7, 7000, 1, NULL),
			('PK000000001', 'e', '', '{"v":1}', 1, 1000, 0, 0)`,
		`INSERT INTO shadow_history(product_key, device_name, name, version, doc, updated_at) VALUES
			('PK000000001', 'a', '', 4, '{"v":4}', 4000), ('PK000000001', 'a', '', 3, '{"v":3}', 3000),
			('PK000000001', 'b', '', 2, '{"v":2}', 2000), ('PK000000001', 'b', '', 3, '{"v":3}', 3000),
			('PK000000001', 'c', '', 1, '{"v":1}', 1000), ('PK000000001', 'd', '', 6, '{"v":6}', 6000)`,
	)

	s, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	history := func(dn string) string {
		t.Helper()
		h, err := s.ShadowHistory(ctx, shadow.Key{ProductKey: "PK000000001", DeviceName: dn}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var vs []string
		for _, st := range h {
			vs = append(vs, fmt.Sprintf("%s@%d", st.Doc, st.UpdatedAt.UnixMilli()))
		}
		return strings.Join(vs, " ")
	}
	for dn, want := range map[string]string{"a": `{"v":3}@3000 {"v":4}@4000 {"v":5}@5000`, "b": `{"v":2}@2000 {"v":3}@3000`, "c": `{"v":1}@1000`, "d": ``, "e": `{"v":1}@1000`} {
		if dn == "e" {
			want = "" // kept = 0: no version kept
		}
		if got := history(dn); got != want {
			t.Errorf("history of %s after 00024: %s; want %s", dn, got, want)
		}
	}
	logHoldsListed(t, s)
	if err := s.PutShadow(ctx, shadow.Key{ProductKey: "PK000000001", DeviceName: "a"}, 5, shadow.Stored{Doc: []byte(`{"v":6}`), Version: 6, UpdatedAt: time.UnixMilli(6000)}, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.PutShadow(ctx, shadow.Key{ProductKey: "PK000000001", DeviceName: "c"}, 2, shadow.Stored{Doc: []byte(`{"v":3}`), Version: 3, UpdatedAt: time.UnixMilli(3000)}, 3); err != nil {
		t.Fatal(err)
	}
	if got := history("a"); got != `{"v":4}@4000 {"v":5}@5000 {"v":6}@6000` {
		t.Fatalf("history of a after a write keeping 3: %s", got)
	}
	if got := history("c"); got != `{"v":1}@1000 {"v":3}@3000` {
		t.Fatalf("history of c after a write keeping 3: %s", got)
	}
	logHoldsListed(t, s)
	s.Close()

	db, p := rawDB(t, path)
	defer db.Close()
	if _, err := p.DownTo(ctx, 23); err != nil {
		t.Fatal(err)
	}
	var got []string
	rows, err := db.QueryContext(ctx, `SELECT device_name || version FROM shadow_history ORDER BY device_name, version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if strings.Join(got, " ") != "a4 a5 b2 c1" {
		t.Fatalf("shadow_history after migrating down: %v; want a4 a5 b2 c1", got)
	}
}

// olderDB makes the database at path as corral left it at migration
// version, then runs stmts on it.
func olderDB(t *testing.T, path string, version int64, stmts ...string) {
	t.Helper()
	db, p := rawDB(t, path)
	defer db.Close()
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// rawDB opens the database at path without the store, and the goose
// provider of corral's migrations on it, to build a database as an older
// corral left it.
func rawDB(t *testing.T, path string) (*sql.DB, *goose.Provider) {
	t.Helper()
	db, err := sql.Open("sqlite", dsnFor("sqlite", path, "NORMAL"))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db, p
}
