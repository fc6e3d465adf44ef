package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"unsafe"

	"github.com/corral-iot/corral/internal/mqtt/engine"
	"github.com/corral-iot/corral/internal/registry"
)

// productRegistry answers LookupProduct from a map, and can run a hook
// during the lookup, after the answer was read (a change racing with it).
type productRegistry struct {
	Registry
	mu       sync.Mutex
	products map[string]registry.Product
	during   func()
	lookups  int
}

func (r *productRegistry) LookupProduct(_ context.Context, pk string) (registry.Product, error) {
	r.mu.Lock()
	p, ok := r.products[pk]
	r.lookups++
	during := r.during
	r.mu.Unlock()
	if during != nil {
		during()
	}
	if !ok {
		return registry.Product{}, registry.ErrNotFound
	}
	return p, nil
}

func (r *productRegistry) set(pk string, p registry.Product) {
	r.mu.Lock()
	r.products[pk] = p
	r.mu.Unlock()
}

func (r *productRegistry) RecordPresence(context.Context, []registry.Presence) error { return nil }

// rightsBroker is a broker with no listeners over reg, closed with the test.
func rightsBroker(t *testing.T, reg Registry) *Broker {
	t.Helper()
	b, err := New(Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func classes(op registry.TopicOperation) registry.Product {
	return registry.Product{AccountID: "acct", TopicClasses: []registry.TopicClass{{Suffix: "telemetry", Operation: op}}}
}

func deviceClient(pk, dn string) *engine.Client {
	return &engine.Client{ID: pk + "." + dn, Value: &session{id: identity{accountID: "acct", productKey: pk, deviceName: dn, clientID: pk + "." + dn}}}
}

// TestSessionSize: a session (one a connection, kept while it idles) stays
// 176 B with its rights cache pointer.
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 176 {
		t.Fatalf("session is %d B, want at most 176", n)
	}
}

// TestRightsCacheTopicClassChange: a publish decision is cached (no
// registry read while nothing changed) and refused from the first
// publish after its topic class changed to downlinks only, and granted
// again after it changed back.
func TestRightsCacheTopicClassChange(t *testing.T) {
	reg := &productRegistry{products: map[string]registry.Product{"PK": classes(registry.TopicPub)}}
	b := rightsBroker(t, reg)
	c := deviceClient("PK", "d1")
	const topic = "/PK/d1/user/telemetry"
	for range 3 {
		if !b.hook.MayPublish(c, topic) {
			t.Fatal("publish on a pub class refused")
		}
	}
	reads := reg.lookups
	reg.set("PK", classes(registry.TopicSub))
	if !b.hook.MayPublish(c, topic) || reg.lookups != reads {
		t.Fatalf("no change told, the decision was not cached (%d registry reads, were %d)", reg.lookups, reads)
	}
	b.ProductChanged(context.Background(), registry.ProductUpdated, "PK")
	if b.hook.MayPublish(c, topic) {
		t.Fatal("publish granted after its class became sub")
	}
	if !b.hook.MayReceive(c, topic) {
		t.Fatal("delivery on a sub class refused")
	}
	reg.set("PK", classes(registry.TopicPub))
	b.ProductChanged(context.Background(), registry.ProductUpdated, "PK")
	if !b.hook.MayPublish(c, topic) {
		t.Fatal("publish refused after its class became pub again")
	}
	if b.hook.MayReceive(c, topic) {
		t.Fatal("a device is delivered its own uplink")
	}
}

// TestRightsCacheChangeDuringDecision: a decision made from settings read
// before a change, but stored after the change was told, is not used
// again.
func TestRightsCacheChangeDuringDecision(t *testing.T) {
	reg := &productRegistry{products: map[string]registry.Product{"PK": classes(registry.TopicPub)}}
	b := rightsBroker(t, reg)
	c := deviceClient("PK", "d1")
	const topic = "/PK/d1/user/telemetry"
	reg.during = func() {
		reg.during = nil
		reg.set("PK", classes(registry.TopicSub)) // committed after the read…
		b.ProductChanged(context.Background(), registry.ProductUpdated, "PK")
	}
	if !b.hook.MayPublish(c, topic) { // …so this one is judged by the old class
		t.Fatal("the publish judged before the change was refused")
	}
	if b.hook.MayPublish(c, topic) {
		t.Fatal("a decision read before a change was used after it")
	}
}

// TestRightsCacheSubDeviceLogout: a gateway's cached rights on its
// sub-device's topics end with the sub-device's logout, and come with its
// login.
func TestRightsCacheSubDeviceLogout(t *testing.T) {
	reg := &productRegistry{products: map[string]registry.Product{"GWPK": classes(registry.TopicAll), "SUBPK": classes(registry.TopicAll)}}
	b := rightsBroker(t, reg)
	gw := deviceClient("GWPK", "gw")
	b.hook.mu.Lock()
	b.hook.devices[deviceKey("GWPK", "gw")] = sessionOf(gw)
	b.hook.mu.Unlock()
	const topic = "/sys/SUBPK/s1/thing/event/property/post"
	down := "/sys/SUBPK/s1/thing/service/property/set"
	if b.hook.MayPublish(gw, topic) || b.hook.MayReceive(gw, down) {
		t.Fatal("rights on a sub-device's topics before its login")
	}
	sub := registry.Device{AccountID: "acct", ProductKey: "SUBPK", DeviceName: "s1"}
	if err := b.LoginSub("GWPK", "gw", sub); err != nil {
		t.Fatal(err)
	}
	if !b.hook.MayPublish(gw, topic) || !b.hook.MayReceive(gw, down) {
		t.Fatal("the cached refusals outlived the login")
	}
	if !b.LogoutSub("GWPK", "gw", "SUBPK", "s1", "TOPOLOGY_DELETED") {
		t.Fatal("not logged in")
	}
	if b.hook.MayPublish(gw, topic) {
		t.Fatal("publish for a logged-out sub-device granted")
	}
	if b.hook.MayReceive(gw, down) {
		t.Fatal("delivery for a logged-out sub-device granted")
	}
}

// TestRightsCacheManyTopics: a subscriber delivered many topics (its
// table grows) is judged right on each, and a change applies to all.
func TestRightsCacheManyTopics(t *testing.T) {
	reg := &productRegistry{products: map[string]registry.Product{}}
	for i := range 300 {
		reg.products[fmt.Sprintf("PK%d", i)] = classes(registry.TopicAll)
	}
	b := rightsBroker(t, reg)
	app := &engine.Client{ID: "app:k:1", Value: &session{id: identity{app: true, accountID: "acct", keyID: "k", role: registry.RoleOperator, clientID: "app:k:1"}}}
	for round := range 3 {
		for i := range 300 {
			if !b.hook.MayReceive(app, fmt.Sprintf("/PK%d/d/user/telemetry", i)) {
				t.Fatalf("round %d: delivery %d refused", round, i)
			}
		}
	}
	if n := len(sessionOf(app).rights.Load().recv.Load().slots); n != recvSlotsMax {
		t.Errorf("table of %d slots after 300 topics, want %d", n, recvSlotsMax)
	}
	p := classes(registry.TopicAll)
	p.AccountID = "other"
	for i := range 300 {
		reg.set(fmt.Sprintf("PK%d", i), p)
	}
	// A product never moves between accounts; a deleted one is forgotten.
	for i := range 300 {
		b.ProductChanged(context.Background(), registry.ProductDeleted, fmt.Sprintf("PK%d", i))
	}
	for i := range 300 {
		if b.hook.MayReceive(app, fmt.Sprintf("/PK%d/d/user/telemetry", i)) {
			t.Fatalf("delivery %d granted after its product went to another account", i)
		}
	}
}

// TestRightsCacheConcurrent: deliveries judged by many goroutines at once
// while the generation moves agree with the uncached decision (run with
// -race).
func TestRightsCacheConcurrent(t *testing.T) {
	reg := &productRegistry{products: map[string]registry.Product{"PK": classes(registry.TopicAll), "PK2": {AccountID: "other", TopicClasses: []registry.TopicClass{}}}}
	b := rightsBroker(t, reg)
	app := &engine.Client{ID: "app:k:1", Value: &session{id: identity{app: true, accountID: "acct", keyID: "k", role: registry.RoleOperator, clientID: "app:k:1"}}}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				pk := "PK"
				if (i+g)%3 == 0 {
					pk = "PK2"
				}
				topic := fmt.Sprintf("/%s/d%d/user/telemetry", pk, i%50)
				if got := b.hook.MayReceive(app, topic); got != (pk == "PK") {
					t.Errorf("%s: %v", topic, got)
					return
				}
				if i%100 == 0 {
					b.hook.rightsChanged()
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkRights is the rights checks of one fan-in message of
// bench/broker's Throughput (a device publishing on its custom topic, an
// application subscribed to the product's): uncached as before the rights
// cache, and through it.
func BenchmarkRights(b *testing.B) {
	reg := &productRegistry{products: map[string]registry.Product{"PK": classes(registry.TopicPub)}}
	br, err := New(Options{Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	h := br.hook
	var devs []*engine.Client
	var topics []string
	for i := range 100 {
		dn := fmt.Sprintf("dev-%d", i)
		devs = append(devs, deviceClient("PK", dn))
		topics = append(topics, "/PK/"+dn+"/user/telemetry")
	}
	app := &engine.Client{ID: "app:k:1", Value: &session{id: identity{app: true, accountID: "acct", keyID: "k", role: registry.RoleOperator, clientID: "app:k:1"}}}
	ctx := context.Background()
	b.Run("uncached", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			j := i % len(devs)
			if !h.mayPublish(ctx, sessionOf(devs[j]).id, topics[j]) || !h.mayReceive(ctx, sessionOf(app).id, topics[j]) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			j := i % len(devs)
			if !h.MayPublish(devs[j], topics[j]) || !h.MayReceive(app, topics[j]) {
				b.Fatal("refused")
			}
		}
	})
}

// TestRightsCacheOneObject: a session's rights cache and the table of
// its first delivery decisions are one allocation (each object a live
// session keeps is work for every collection).
func TestRightsCacheOneObject(t *testing.T) {
	s := &session{}
	if n := testing.AllocsPerRun(100, func() {
		s.rights.Store(nil)
		s.cacheOf()
	}); n != 1 {
		t.Errorf("a rights cache takes %v allocations, want 1", n)
	}
	reg := &productRegistry{products: map[string]registry.Product{"PK": classes(registry.TopicAll)}}
	b := rightsBroker(t, reg)
	app := &engine.Client{ID: "app:k:1", Value: &session{id: identity{app: true, accountID: "acct", keyID: "k", role: registry.RoleOperator, clientID: "app:k:1"}}}
	if !b.hook.MayReceive(app, "/PK/d/user/telemetry") {
		t.Fatal("delivery refused")
	}
	rc := sessionOf(app).rights.Load()
	if tb := rc.recv.Load(); tb != &rc.first || len(tb.slots) != recvSlotsMin {
		t.Fatalf("the first delivery table is not the cache's own of %d slots", recvSlotsMin)
	}
}
