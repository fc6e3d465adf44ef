package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/corral-iot/corral/internal/registry"
)

// TestMigratedProductsKeepEveryUserTopic: a product made before topic
// classes existed reads back with one catch-all '#' class, operation all
// (every /user/ topic both ways), so its devices in the field keep them.
func TestMigratedProductsKeepEveryUserTopic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", dsnFor("sqlite", path, "NORMAL"))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 11); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO accounts(id, name, created_at) VALUES ('acc1', 'one', 0)`,
		`INSERT INTO products(product_key, account_id, name, node_type, auth_type, dyn_reg, secret, created_at) VALUES ('PK000000001', 'acc1', 'old', 'direct', 'secret', 'off', x'00', 0)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

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
