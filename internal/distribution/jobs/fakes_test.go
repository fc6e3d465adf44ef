package jobs_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/distribution/transit"
	"github.com/corral-iot/corral/internal/registry"
)

const pk = "a1prod"

// world is this corral's registry, the destinations and the broker, as
// fakes sharing one lock.
type world struct {
	t  testing.TB
	mu sync.Mutex

	secrets     map[string]string // device name → secret (the source registry)
	audits      []audit.Entry
	marked      map[string]string // device name → instance it went to
	online      map[string]netip.Addr
	notified    map[string]int
	records     map[string]distribution.Record
	keys        map[string]transit.Key       // destination instance → its transit key
	imported    map[string]map[string]string // instance → device → opened secret
	importCalls map[string]int               // device → ImportDevice calls that succeeded
	products    map[string]int               // instance → ImportProduct calls
	conflict    map[string]bool              // device names the destination refuses with a conflict
	codes       map[string]string            // target account → the code it issued
	released    []string                     // grants released, in order
	block       chan struct{}                // non-nil: ImportDevice waits on it (or ctx) after blockAfter imports
	blockAfter  int
	events      []string
}

func newWorld(t testing.TB, n int) *world {
	w := &world{t: t, secrets: map[string]string{}, marked: map[string]string{}, online: map[string]netip.Addr{},
		notified: map[string]int{}, records: map[string]distribution.Record{}, keys: map[string]transit.Key{},
		imported: map[string]map[string]string{}, importCalls: map[string]int{}, products: map[string]int{},
		conflict: map[string]bool{}, codes: map[string]string{}}
	for i := range n {
		dn := fmt.Sprintf("dev-%04d", i)
		w.secrets[dn] = fmt.Sprintf("secret-%04d-0123456789abcdef", i)
	}
	for _, id := range []string{"ap-southeast-1", "eu-central-1"} {
		k, err := transit.NewKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		w.keys[id] = k
		w.imported[id] = map[string]string{}
	}
	return w
}

// Source.
func (w *world) ExportProduct(_ context.Context, p registry.Principal, key string) (jobs.Product, error) {
	if key != pk || p.AccountID != "acc-1" {
		return jobs.Product{}, fmt.Errorf("product %s: %w", key, registry.ErrNotFound)
	}
	return jobs.Product{ProductKey: pk, Info: []byte(`{"productName":"meter"}`)}, nil
}

func (w *world) MissingDevices(_ context.Context, key string, names []string) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, n := range names {
		if _, ok := w.secrets[n]; !ok {
			out = append(out, n)
		}
	}
	return out, nil
}

func (w *world) DeviceSecret(_ context.Context, key, dn string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.secrets[dn]
	if !ok {
		return "", registry.ErrNotFound
	}
	return s, nil
}

func (w *world) MarkDistributed(_ context.Context, key, dn, to string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.marked[dn] = to
	return nil
}

// Remote.
func (w *world) Authorize(_ context.Context, t jobs.Target) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.codes[t.TargetAccountID]; !ok || c != t.AuthCode {
		return "", errors.New("authorisation code refused")
	}
	return "grant-" + t.AuthCode, nil
}

func (w *world) Release(_ context.Context, t jobs.Target) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.released = append(w.released, t.AuthCode)
	return nil
}

func (w *world) PublicKey(_ context.Context, t jobs.Target) ([]byte, error) {
	k, ok := w.keys[t.InstanceID]
	if !ok {
		return nil, errors.New("unreachable")
	}
	return k.Public(), nil
}

func (w *world) ImportProduct(_ context.Context, t jobs.Target, p jobs.Product) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.products[t.InstanceID]++
	return nil
}

func (w *world) ImportDevice(ctx context.Context, t jobs.Target, d jobs.DeviceImport) error {
	w.mu.Lock()
	block := w.block != nil && len(w.importCalls) >= w.blockAfter
	ch := w.block
	w.mu.Unlock()
	if block {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conflict[d.DeviceName] {
		return fmt.Errorf("device %s: %w", d.DeviceName, jobs.ErrConflict)
	}
	secret, err := w.keys[t.InstanceID].Open(d.SealedSecret, transit.AAD(t.InstanceID, d.ProductKey, d.DeviceName))
	if err != nil {
		w.t.Errorf("destination %s cannot open %s's secret: %v", t.InstanceID, d.DeviceName, err)
		return err
	}
	w.imported[t.InstanceID][d.DeviceName] = string(secret)
	w.importCalls[d.DeviceName]++
	return nil
}

// Directory.
func (w *world) Instance(_ context.Context, acc, id string) (distribution.Instance, error) {
	if _, ok := w.keys[id]; !ok {
		return distribution.Instance{}, fmt.Errorf("instance %s: %w", id, distribution.ErrNotFound)
	}
	return distribution.Instance{ID: id, Region: id}, nil
}

// ChooseInstance: 127.0.0.2 is in Singapore's CIDR; anything else falls
// back to Frankfurt. Policy "none" chooses nothing.
func (w *world) ChooseInstance(_ context.Context, acc, policyID, key, dn string, addr netip.Addr) (string, error) {
	switch {
	case policyID != "near" && policyID != "none":
		return "", fmt.Errorf("policy %s: %w", policyID, distribution.ErrNotFound)
	case policyID == "none":
		return "", distribution.ErrNotFound
	case addr == netip.MustParseAddr("127.0.0.2"):
		return "ap-southeast-1", nil
	}
	return "eu-central-1", nil
}

// Records.
func (w *world) GetRecord(_ context.Context, key, dn string) (distribution.Record, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.records[dn]
	if !ok {
		return r, distribution.ErrNotFound
	}
	return r, nil
}

func (w *world) PutRecord(_ context.Context, r distribution.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.records[r.DeviceName] = r
	return nil
}

// Devices.
func (w *world) Address(key, dn string) (netip.Addr, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, ok := w.online[dn]
	return a, ok
}

func (w *world) Notify(_ context.Context, key, dn string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.online[dn]; ok {
		w.notified[dn]++
		delete(w.online, dn) // forced off
	}
	return nil
}

// Events.
func (w *world) JobEvent(_ context.Context, j jobs.Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, "job "+j.Status.String())
}

func (w *world) DeviceEvent(_ context.Context, j jobs.Job, it jobs.Item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, fmt.Sprintf("device %d", it.Code))
}

func (w *world) Record(_ context.Context, e audit.Entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.audits = append(w.audits, e)
}

func (w *world) service(st jobs.Store) *jobs.Service {
	return jobs.New(jobs.Options{Store: st, Source: w, Remote: w, Directory: w, Records: w, Devices: w, Events: w, Auditor: w,
		Self: distribution.Instance{ID: "cn-shanghai", Region: "cn-shanghai"}, Workers: 4})
}

func names(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("dev-%04d", i))
	}
	return out
}

var operator = registry.Principal{AccountID: "acc-1", Role: registry.RoleOperator}

// wait polls a job until it is finished.
func wait(t testing.TB, s *jobs.Service, id string) jobs.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := s.Get(context.Background(), operator, id)
		if err != nil {
			t.Fatal(err)
		}
		if !j.Status.Open() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s at %d%%", id, j.Status, j.Progress)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
