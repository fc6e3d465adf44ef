package shadowsvc_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
	"github.com/corral-iot/corral/internal/shadowsvc"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// plainBox is a SecretBox for tests (no secrecy).
type plainBox struct{}

func (plainBox) Seal(p, _ []byte) ([]byte, error) { return append([]byte{}, p...), nil }
func (plainBox) Open(s, _ []byte) ([]byte, error) { return s, nil }

// env is a shadow service on a real SQLite store with one account
// ("acc1"), one product (e.pk, random) with devices "dev1" and "dev2" (thing
// names {pk}.dev1 and {pk}.dev2), and a clock tests move.
type env struct {
	st  *sqlite.Store
	reg *registry.Service
	svc *shadowsvc.Service
	rec *changes
	pk  string

	mu  sync.Mutex
	now time.Time
}

var operator = registry.Principal{KeyID: "op", AccountID: "acc1", Role: registry.RoleOperator}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateAccount(ctx, registry.Account{ID: "acc1", Name: "acc1"}); err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, now: time.Unix(1_800_000_000, 0), rec: &changes{}}
	e.reg = registry.New(registry.Options{Store: st, Box: plainBox{}, Now: e.clock})
	prod, err := e.reg.CreateProduct(ctx, operator, registry.ProductInput{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	e.pk = prod.ProductKey
	for _, dn := range []string{"dev1", "dev2"} {
		if _, err := e.reg.CreateDevice(ctx, operator, e.pk, registry.DeviceInput{DeviceName: dn}); err != nil {
			t.Fatal(err)
		}
	}
	e.svc = shadowsvc.New(shadowsvc.Options{Store: st, Settings: st, Devices: e.reg, Now: e.clock})
	e.svc.AddObserver(e.rec)
	e.reg.AddProductObserver(e.svc) // as app wires it
	e.reg.AddObserver(e.svc)
	return e
}

// key names a shadow of device dn of the product.
func (e *env) key(dn, name string) shadow.Key {
	return shadow.Key{ProductKey: e.pk, DeviceName: dn, Name: name}
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// changes records what observers are told.
type changes struct {
	mu  sync.Mutex
	all []shadowsvc.Change
}

func (c *changes) ShadowChanged(_ context.Context, ch shadowsvc.Change) {
	c.mu.Lock()
	c.all = append(c.all, ch)
	c.mu.Unlock()
}

func (c *changes) take() []shadowsvc.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.all
	c.all = nil
	return out
}
