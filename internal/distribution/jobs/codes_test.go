package jobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

func openCodeStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCodes: a code is the issuing admin's account's, good once and for
// CodeTTL; a grant is the authorising account's. Codes and grants outlive
// a restart (a new Codes over the reopened store), and neither is stored
// in clear.
func TestCodes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "corral.db")
	st := openCodeStore(t, path)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c := jobs.NewCodes(st, clock)
	b := registry.Principal{AccountID: "acc-b", Role: registry.RoleAdmin}
	a := registry.Principal{AccountID: "acc-a", Role: registry.RoleAdmin}
	if _, err := c.Issue(ctx, registry.Principal{AccountID: "acc-b", Role: registry.RoleOperator}); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("an operator issued a code: %v", err)
	}
	if _, err := c.Authorize(ctx, registry.Principal{AccountID: "acc-a", Role: registry.RoleOperator}, jobs.Authorization{AuthCode: "x", TargetAccountID: "acc-b"}); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("an operator authorised: %v", err)
	}
	code, err := c.Issue(ctx, b)
	if err != nil || code.AccountID != "acc-b" || !code.ExpiresAt.Equal(now.Add(jobs.CodeTTL)) {
		t.Fatalf("Issue = %+v, %v", code, err)
	}
	expiring, _ := c.Issue(ctx, b)
	afterRestart, _ := c.Issue(ctx, b)
	for _, tc := range []struct {
		name string
		in   jobs.Authorization
	}{
		{"wrong code", jobs.Authorization{AuthCode: "nope", TargetAccountID: "acc-b"}},
		{"empty code", jobs.Authorization{TargetAccountID: "acc-b"}},
		{"oversized code", jobs.Authorization{AuthCode: strings.Repeat("a", 10000), TargetAccountID: "acc-b"}},
		{"another account's", jobs.Authorization{AuthCode: code.AuthCode, TargetAccountID: "acc-c"}},
		{"no account", jobs.Authorization{AuthCode: code.AuthCode}},
	} {
		if _, err := c.Authorize(ctx, a, tc.in); !errors.Is(err, jobs.ErrInvalid) {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	// Of concurrent exchanges of one code, one wins (the others used
	// above did not use it up).
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []jobs.Grant
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g, err := c.Authorize(ctx, a, jobs.Authorization{AuthCode: code.AuthCode, TargetAccountID: "acc-b"}); err == nil {
				mu.Lock()
				won = append(won, g)
				mu.Unlock()
			} else if !errors.Is(err, jobs.ErrInvalid) {
				t.Errorf("exchange: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || won[0].Grant == "" {
		t.Fatalf("a code exchanged %d times: %+v", len(won), won)
	}
	g := won[0]
	if _, err := c.Authorize(ctx, a, jobs.Authorization{AuthCode: code.AuthCode, TargetAccountID: "acc-b"}); !errors.Is(err, jobs.ErrInvalid) {
		t.Fatalf("a code used twice: %v", err)
	}

	// A restart: the grant and the unused code survive; nothing is in
	// clear in the database.
	st.Close()
	raw, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c = jobs.NewCodes(raw, clock)
	d := jobs.Destination{Codes: c}
	for _, v := range []string{code.AuthCode, expiring.AuthCode, afterRestart.AuthCode, g.Grant} {
		if _, _, err := raw.GetGrant(ctx, v); !errors.Is(err, jobs.ErrNotFound) {
			t.Fatalf("a value stored in clear as a grant: %v", err)
		}
	}
	h := sha256.Sum256([]byte(g.Grant))
	if from, to, err := raw.GetGrant(ctx, hex.EncodeToString(h[:])); err != nil || from != "acc-a" || to != "acc-b" {
		t.Fatalf("the grant after a restart: %s → %s, %v", from, to, err)
	}
	if _, err := d.ImportProduct(ctx, registry.Principal{AccountID: "acc-c", Role: registry.RoleAdmin}, "pk", jobs.ProductImport{Grant: g.Grant,
		Product: jobs.Product{ProductKey: "pk", Info: []byte(`{"productKey":"pk"}`)}}); !errors.Is(err, jobs.ErrInvalid) {
		t.Fatalf("another account used the grant: %v", err)
	}
	if _, err := c.Authorize(ctx, a, jobs.Authorization{AuthCode: afterRestart.AuthCode, TargetAccountID: "acc-b"}); err != nil {
		t.Fatalf("a code issued before the restart: %v", err)
	}
	now = now.Add(jobs.CodeTTL) // the remaining code expires now
	if _, err := c.Authorize(ctx, a, jobs.Authorization{AuthCode: expiring.AuthCode, TargetAccountID: "acc-b"}); !errors.Is(err, jobs.ErrInvalid) {
		t.Fatalf("an expired code: %v", err)
	}
}

// TestGrantEnds: a grant ends when its job's account releases it or the
// destination account revokes it; after either, imports carrying it are
// refused, on this node at once and on another (its own Codes over the
// same store) once it reads the grant again. Only the granting account
// releases, only the destination account lists and revokes.
func TestGrantEnds(t *testing.T) {
	ctx := context.Background()
	st := openCodeStore(t, filepath.Join(t.TempDir(), "corral.db"))
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c, other := jobs.NewCodes(st, clock), jobs.NewCodes(st, clock)
	a := registry.Principal{AccountID: "acc-a", Role: registry.RoleAdmin}
	b := registry.Principal{AccountID: "acc-b", Role: registry.RoleAdmin}
	grant := func() jobs.Grant {
		t.Helper()
		code, err := c.Issue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		g, err := c.Authorize(ctx, a, jobs.Authorization{AuthCode: code.AuthCode, TargetAccountID: "acc-b"})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	imports := func(c *jobs.Codes, g jobs.Grant) error {
		acc, err := c.AccountOf(ctx, a, g.Grant)
		if err == nil && acc != "acc-b" {
			t.Fatalf("the grant imports into %s", acc)
		}
		return err
	}
	g1, g2 := grant(), grant()
	for _, cs := range []*jobs.Codes{c, other} {
		if err := imports(cs, g1); err != nil {
			t.Fatalf("a fresh grant: %v", err)
		}
	}

	gs, err := c.Grants(ctx, b)
	if err != nil || len(gs) != 2 || gs[0].FromAccount != "acc-a" || len(gs[0].ID) != 64 {
		t.Fatalf("Grants = %+v, %v", gs, err)
	}
	if gs, err := c.Grants(ctx, a); err != nil || len(gs) != 0 {
		t.Fatalf("the granted account sees %+v, %v", gs, err)
	}
	if _, err := c.Grants(ctx, registry.Principal{AccountID: "acc-b", Role: registry.RoleOperator}); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("an operator listed grants: %v", err)
	}

	// Release: by the granting account only.
	for _, p := range []registry.Principal{b, {AccountID: "acc-c", Role: registry.RoleAdmin}} {
		if err := c.Release(ctx, p, g1); !errors.Is(err, jobs.ErrInvalid) {
			t.Fatalf("%s released another's grant: %v", p.AccountID, err)
		}
	}
	if err := c.Release(ctx, a, g1); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, a, g1); !errors.Is(err, jobs.ErrInvalid) {
		t.Fatalf("released twice: %v", err)
	}
	if err := imports(c, g1); err == nil {
		t.Fatal("a released grant still imports here")
	}
	if err := imports(other, g1); err != nil {
		t.Fatalf("within the re-check time another node still believes it: %v", err)
	}
	now = now.Add(time.Minute)
	if err := imports(other, g1); err == nil {
		t.Fatal("a released grant still imports on another node after the re-check time")
	}

	// Revoke: by the destination account, by id.
	gs, _ = c.Grants(ctx, b)
	if len(gs) != 1 {
		t.Fatalf("after the release: %+v", gs)
	}
	for _, tc := range []struct {
		p  registry.Principal
		id string
	}{{a, gs[0].ID}, {b, "nope"}, {b, strings.Repeat("0", 64)}} {
		if err := c.Revoke(ctx, tc.p, tc.id); !errors.Is(err, jobs.ErrNotFound) {
			t.Fatalf("Revoke(%s, %.8s) = %v, want ErrNotFound", tc.p.AccountID, tc.id, err)
		}
	}
	if err := imports(c, g2); err != nil {
		t.Fatalf("refused revokes ended the grant: %v", err)
	}
	if err := c.Revoke(ctx, b, gs[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := imports(c, g2); err == nil {
		t.Fatal("a revoked grant still imports")
	}
}
