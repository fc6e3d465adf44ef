package shadowsvc

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// countingStore counts the shadow writes reaching the store.
type countingStore struct {
	*sqlite.Store
	mu                sync.Mutex
	puts, batch, gets int
}

func (c *countingStore) GetShadow(ctx context.Context, k shadow.Key) (shadow.Stored, error) {
	c.mu.Lock()
	c.gets++
	c.mu.Unlock()
	return c.Store.GetShadow(ctx, k)
}

// offline is a Broker whose devices are all offline.
type offline struct{ Broker }

func (offline) Online(pk, dn string) bool { return false }

func (c *countingStore) PutShadow(ctx context.Context, k shadow.Key, prev int64, s shadow.Stored, keep int) error {
	c.mu.Lock()
	c.puts++
	c.mu.Unlock()
	return c.Store.PutShadow(ctx, k, prev, s, keep)
}

func (c *countingStore) PutShadows(ctx context.Context, puts []shadow.Put) ([]error, error) {
	c.mu.Lock()
	c.batch++
	c.mu.Unlock()
	return c.Store.PutShadows(ctx, puts)
}

type allBox struct{}

func (allBox) Seal(p, _ []byte) ([]byte, error) { return append([]byte{}, p...), nil }
func (allBox) Open(s, _ []byte) ([]byte, error) { return s, nil }

// presenceStore is a SQLite store with account acc1, its registry (secrets
// in the clear) and a product of it.
func presenceStore(t *testing.T) (*sqlite.Store, *registry.Service, registry.Product) {
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
	reg := registry.New(registry.Options{Store: st, Box: allBox{}})
	prod, err := reg.CreateProduct(ctx, presenceOp, registry.ProductInput{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	return st, reg, prod
}

var presenceOp = registry.Principal{KeyID: "op", AccountID: "acc1", Role: registry.RoleOperator}

// TestPresenceBatch: a worker's events are written in one store
// transaction, each device's presence as if written alone, and events
// carrying their device's identity read no registry.
func TestPresenceBatch(t *testing.T) {
	ctx := context.Background()
	st, reg, prod := presenceStore(t)
	names := []string{"dev1", "dev2", "dev3"}
	for _, dn := range names {
		if _, err := reg.CreateDevice(ctx, presenceOp, prod.ProductKey, registry.DeviceInput{DeviceName: dn}); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingStore{Store: st}
	devs := &countingDevices{Devices: reg}
	svc := New(Options{Store: cs, Settings: st, Devices: devs})
	p := newPresence(&MQTT{svc: svc, b: offline{}, log: slog.New(slog.DiscardHandler)}, 1)
	at := time.Unix(1_800_000_000, 0)
	var evs []presenceEvent
	for _, dn := range names {
		evs = append(evs, presenceEvent{EventType: "connected", Timestamp: at.UnixMilli(), ProductKey: prod.ProductKey, DeviceName: dn,
			AccountID: "acc1", ThingName: registry.DefaultThingName(prod.ProductKey, dn)})
	}
	p.apply(evs)
	if cs.batch != 1 || cs.puts != 0 || devs.reads != 0 {
		t.Fatalf("%d batches, %d single writes, %d registry reads; want 1, 0, 0", cs.batch, cs.puts, devs.reads)
	}
	for _, dn := range names {
		doc, err := svc.Document(ctx, shadow.Key{ProductKey: prod.ProductKey, DeviceName: dn})
		if err != nil || doc.Reported["connected"] != true || doc.Version != 1 {
			t.Fatalf("%s: %+v %v; want connected at version 1", dn, doc, err)
		}
	}
	// Again: already so, nothing written, nor read: this node keeps
	// what it wrote.
	gets := cs.gets
	p.apply(evs)
	if cs.batch != 1 || cs.puts != 0 || cs.gets != gets {
		t.Fatalf("already connected: %d batches, %d single writes, %d reads; want nothing more", cs.batch-1, cs.puts, cs.gets-gets)
	}
	for i := range evs {
		evs[i].EventType, evs[i].DisconnectReason = "disconnected", "CLIENT_INITIATED_DISCONNECT"
	}
	p.apply(evs)
	if cs.batch != 2 || cs.gets != gets {
		t.Fatalf("sessions' ends: %d batches, %d reads; want 2, none", cs.batch, cs.gets-gets)
	}
	for _, dn := range names {
		doc, err := svc.Document(ctx, shadow.Key{ProductKey: prod.ProductKey, DeviceName: dn})
		if err != nil || doc.Reported["connected"] != false || doc.Version != 2 {
			t.Fatalf("%s: %+v %v; want disconnected at version 2", dn, doc, err)
		}
	}
}

// publishing is an offline Broker that records what is published.
type publishing struct {
	offline
	mu     sync.Mutex
	topics []string
}

func (b *publishing) Publish(topic string, _ []byte, _ bool, _ byte) error {
	b.mu.Lock()
	b.topics = append(b.topics, topic)
	b.mu.Unlock()
	return nil
}

// TestPresenceFirstSession: a device's first session writes its shadow
// without reading it; a shadow an application made before (over REST),
// or its tombstone, makes that write stale, and the presence is merged
// into it as if read first, what waits in it delivered.
func TestPresenceFirstSession(t *testing.T) {
	ctx := context.Background()
	st, reg, prod := presenceStore(t)
	rest := Origin{Source: "rest"}
	for i, tc := range []struct {
		name                       string
		before                     func(t *testing.T, svc *Service, k shadow.Key) // what an application did before the first session
		events                     []string                                       // the session's events, applied together
		wantGets                   int                                            // shadow reads
		wantVer                    int64
		connected                  bool
		wantDesired, wantPublished bool // desired.x kept; the delta delivered
	}{
		{name: "none stored, connect", events: []string{"connected"}, wantGets: 0, wantVer: 1, connected: true},
		{name: "none stored, a short session", events: []string{"disconnected"}, wantGets: 0, wantVer: 1},
		{name: "created over REST, connect", before: func(t *testing.T, svc *Service, k shadow.Key) {
			if _, err := svc.UpdateAWS(ctx, k, []byte(`{"state":{"desired":{"x":1}}}`), rest); err != nil {
				t.Fatal(err)
			}
		}, events: []string{"connected"}, wantGets: 1, wantVer: 2, connected: true, wantDesired: true, wantPublished: true},
		{name: "created over REST, a short session", before: func(t *testing.T, svc *Service, k shadow.Key) {
			if _, err := svc.UpdateAWS(ctx, k, []byte(`{"state":{"desired":{"x":1}}}`), rest); err != nil {
				t.Fatal(err)
			}
		}, events: []string{"disconnected"}, wantGets: 1, wantVer: 2, wantDesired: true},
		{name: "created and deleted over REST", before: func(t *testing.T, svc *Service, k shadow.Key) {
			for _, req := range []string{`{"state":{"desired":{"x":1}}}`, `{"state":{"desired":{"x":2}}}`} {
				if _, err := svc.UpdateAWS(ctx, k, []byte(req), rest); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := svc.DeleteAWS(ctx, k, "", rest); err != nil {
				t.Fatal(err)
			}
		}, events: []string{"connected"}, wantGets: 1, wantVer: 3, connected: true}, // the tombstone's version continues
	} {
		t.Run(tc.name, func(t *testing.T) {
			dn := "first" + strconv.Itoa(i)
			if _, err := reg.CreateDevice(ctx, presenceOp, prod.ProductKey, registry.DeviceInput{DeviceName: dn}); err != nil {
				t.Fatal(err)
			}
			k := shadow.Key{ProductKey: prod.ProductKey, DeviceName: dn}
			cs := &countingStore{Store: st}
			svc := New(Options{Store: cs, Settings: st, Devices: reg})
			if tc.before != nil {
				tc.before(t, New(Options{Store: st, Settings: st, Devices: reg}), k) // another node: nothing kept here
			}
			b := &publishing{}
			m := NewMQTT(MQTTOptions{Service: svc, Broker: b, Things: reg})
			at := time.Now()
			for _, e := range tc.events {
				m.pres.apply([]presenceEvent{{EventType: e, Timestamp: at.UnixMilli(), ProductKey: prod.ProductKey, DeviceName: dn,
					AccountID: "acc1", ThingName: registry.DefaultThingName(prod.ProductKey, dn), First: true}})
			}
			if cs.gets != tc.wantGets {
				t.Errorf("%d shadow reads; want %d", cs.gets, tc.wantGets)
			}
			doc, err := New(Options{Store: st, Settings: st, Devices: reg}).Document(ctx, k)
			if err != nil || doc.Version != tc.wantVer || doc.Reported["connected"] != tc.connected {
				t.Fatalf("shadow: %+v %v; want connected %v at version %d", doc, err, tc.connected, tc.wantVer)
			}
			if _, ok := doc.Desired["x"]; ok != tc.wantDesired {
				t.Errorf("desired: %v; want x kept: %v", doc.Desired, tc.wantDesired)
			}
			if published := len(b.topics) > 0; published != tc.wantPublished {
				t.Errorf("published %v; want the delta delivered: %v", b.topics, tc.wantPublished)
			}
		})
	}
}

// changes records the changes a Service tells.
type changes struct{ cs []Change }

func (o *changes) ShadowChanged(_ context.Context, c Change) { o.cs = append(o.cs, c) }

// TestPresenceDocuments: a presence change's update/documents payload,
// built from the stored forms when someone subscribed, holds the
// documents as stored before and after it (the reason of a session's end
// in the current one's metadata), whether the previous one was kept or
// read.
func TestPresenceDocuments(t *testing.T) {
	ctx := context.Background()
	st, reg, prod := presenceStore(t)
	if _, err := reg.CreateDevice(ctx, presenceOp, prod.ProductKey, registry.DeviceInput{DeviceName: "docs1"}); err != nil {
		t.Fatal(err)
	}
	k := shadow.Key{ProductKey: prod.ProductKey, DeviceName: "docs1"}
	at := time.Unix(1_800_000_000, 0)
	stored := func() []byte {
		t.Helper()
		s, err := st.GetShadow(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return s.Doc
	}
	obs := &changes{}
	svc := New(Options{Store: st, Settings: st, Devices: reg})
	svc.AddObserver(obs)
	prev, _ := shadow.New(nil, at).MarshalJSON()
	for _, step := range []struct {
		name      string
		connected bool
		reason    string
		fresh     bool // the previous document read, not kept
	}{
		{name: "created", connected: true},
		{name: "ended, kept", reason: "MQTT_KEEP_ALIVE_TIMEOUT"},
		{name: "started, read", connected: true, fresh: true},
		{name: "ended, read", reason: "CLIENT_INITIATED_DISCONNECT", fresh: true},
	} {
		if step.fresh {
			svc = New(Options{Store: st, Settings: st, Devices: reg})
			svc.AddObserver(obs)
		}
		at = at.Add(time.Second)
		if err := svc.SetConnected(ctx, k.ProductKey, k.DeviceName, step.connected, step.reason, at); err != nil {
			t.Fatal(err)
		}
		cur := stored()
		c := obs.cs[len(obs.cs)-1]
		want := shadow.DocumentsAWS(prev, cur, at.Unix(), "")
		if got := documents(c, at.Add(time.Hour)); !bytes.Equal(got, want) {
			t.Fatalf("%s: documents\n got %s\nwant %s", step.name, got, want)
		}
		if step.reason != "" && !bytes.Contains(cur, []byte(step.reason)) {
			t.Fatalf("%s: stored %s; want the reason", step.name, cur)
		}
		prev = cur
	}
}
