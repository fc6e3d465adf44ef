package subs

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// deviceSuffixes are the downlinks a stock Alibaba device gets as server-side
// subscriptions: a copy of internal/broker's list (serverside.go) at the time
// of writing, so that the tree is measured on the set it will hold. 40
// filters with the /ext ones added in deviceFilters.
var deviceSuffixes = []string{
	"thing/service/property/set", "thing/service/+",
	"thing/event/+/post_reply", "thing/event/property/batch/post_reply",
	"thing/event/property/pack/post_reply", "thing/event/property/history/post_reply",
	"thing/deviceinfo/update_reply", "thing/deviceinfo/delete_reply",
	"thing/dynamicTsl/get_reply", "thing/dsltemplate/get_reply",
	"thing/property/desired/get_reply", "thing/property/desired/delete_reply",
	"thing/model/down_raw", "thing/model/up_raw_reply",
	"thing/config/push", "thing/config/get_reply",
	"rrpc/request/+",
	"thing/topo/add_reply", "thing/topo/delete_reply", "thing/topo/get_reply",
	"thing/topo/change", "thing/topo/add/notify", "thing/gateway/permit",
	"thing/sub/register_reply", "thing/sub/unregister_reply",
	"thing/proxy/provisioning/product_register_reply", "thing/list/found_reply",
	"thing/disable", "thing/enable", "thing/delete",
	"thing/ota/firmware/get_reply", "thing/bootstrap/notify",
}

func deviceFilters(pk, dn string) []string {
	dev := pk + "/" + dn
	fs := make([]string, 0, 40)
	for _, s := range deviceSuffixes {
		fs = append(fs, "/sys/"+dev+"/"+s)
	}
	for _, s := range []string{"login_reply", "logout_reply", "batch_login_reply", "batch_logout_reply"} {
		fs = append(fs, "/ext/session/"+dev+"/combine/"+s)
	}
	return append(fs, "/ext/ntp/"+dev+"/response", "/ext/error/"+dev, "/shadow/get/"+dev, "/ota/device/upgrade/"+dev)
}

// device returns the ProductKey, DeviceName and client id of device i: ten
// products share the devices, as a fleet does.
func device(i int) (pk, dn, client string) {
	pk = fmt.Sprintf("a1Prod%05d", i%10)
	dn = fmt.Sprintf("device-%07d", i)
	return pk, dn, pk + "." + dn
}

// fleet builds an index of n devices with their 40 filters each.
func fleet(n int) *Index { return fleetBy(n, false) }

// fleetBy builds the fleet one Subscribe a filter, or (batch) one
// SubscribeAll a device, as the engine would give a stock device its set.
func fleetBy(n int, batch bool) *Index {
	ix := New()
	subs := make([]Subscription, 0, 40)
	for i := 0; i < n; i++ {
		pk, dn, c := device(i)
		// The strings are built per device, as the broker does: the index
		// must not depend on callers sharing them.
		subs = subs[:0]
		for _, f := range deviceFilters(pk, dn) {
			subs = append(subs, Subscription{Filter: f, Options: Options{NoLocal: true}})
		}
		if batch {
			ix.SubscribeAll(c, subs, nil)
			continue
		}
		for _, s := range subs {
			ix.Subscribe(c, s.Filter, s.Options)
		}
	}
	return ix
}

// The 100k-device index is built once for every benchmark that needs it:
// it takes seconds and a few hundred MB.
var (
	bigOnce sync.Once
	big     *Index
)

const bigDevices = 100_000

func bigFleet() *Index {
	bigOnce.Do(func() { big = fleet(bigDevices) })
	return big
}

// A device's property set: one of its filters matches (service/+ does not:
// '+' is one level), one delivery.
func propertySet(i int) string {
	pk, dn, _ := device(i)
	return "/sys/" + pk + "/" + dn + "/thing/service/property/set"
}

func benchMatch(b *testing.B, ix *Index, topic string, want int) {
	var m Matches
	ix.Match(topic, "", nil, &m)
	if m.Len() != want {
		b.Fatalf("%d deliveries, want %d", m.Len(), want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ix.Match(topic, "", nil, &m)
	}
}

// BenchmarkMatchDevice: one device's downlink in a tree of 100k devices × 40
// filters.
func BenchmarkMatchDevice(b *testing.B) {
	benchMatch(b, bigFleet(), propertySet(4242), 1)
}

// BenchmarkMatchDeviceParallel: the same from every core, with (Writer)
// and without a goroutine subscribing and unsubscribing all the while, which
// is what the single RWMutex costs readers.
func BenchmarkMatchDeviceParallel(b *testing.B) {
	for _, writer := range []bool{false, true} {
		b.Run(fmt.Sprintf("Writer=%v", writer), func(b *testing.B) {
			ix := bigFleet()
			// Topics and filters are made before the timer: the figure is
			// the index's, not fmt's.
			topics := make([]string, 1024)
			for i := range topics {
				topics[i] = propertySet(i * 97)
			}
			filters := make([]string, 100)
			for i := range filters {
				filters[i] = fmt.Sprintf("/sys/x/%d/+", i)
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			if writer {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						ix.Subscribe("writer", filters[i%100], Options{})
						ix.Unsubscribe("writer", filters[(i+50)%100])
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var m Matches
				i := 0
				for pb.Next() {
					ix.Match(topics[i%len(topics)], "", nil, &m)
					i++
				}
			})
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			ix.RemoveClient("writer")
		})
	}
}

// BenchmarkMatchWildcard: the 100k-device tree plus 1,000 applications each
// watching every property post through three wildcard filters; one post
// reaches all of them (3 matching subscriptions each, one delivery with three
// identifiers) and no device.
func BenchmarkMatchWildcard(b *testing.B) {
	base := bigFleet()
	// A separate index would not show the cost of walking past the device
	// branches: add the applications to the shared tree, and take them out
	// after.
	const apps = 1000
	for a := 0; a < apps; a++ {
		c := fmt.Sprintf("app-%04d", a)
		base.Subscribe(c, "/sys/+/+/thing/event/property/post", Options{QoS: 1, SubscriptionID: 1})
		base.Subscribe(c, "/sys/a1Prod00002/+/thing/event/#", Options{SubscriptionID: 2})
		base.Subscribe(c, "/sys/#", Options{SubscriptionID: 3})
	}
	defer func() {
		for a := 0; a < apps; a++ {
			base.RemoveClient(fmt.Sprintf("app-%04d", a))
		}
	}()
	pk, dn, _ := device(4242)
	benchMatch(b, base, "/sys/"+pk+"/"+dn+"/thing/event/property/post", apps)
}

// The small case, tree against a slice scanned with packet.Match: 1,000
// devices × 40 filters.
const smallDevices = 1000

func BenchmarkMatchSmallTree(b *testing.B) {
	benchMatch(b, fleet(smallDevices), propertySet(424), 1)
}

type naiveSub struct {
	client, filter string
	opts           Options
}

// BenchmarkMatchSmallNaive is the baseline: every subscription tested with
// packet.Match, deliveries collected (dedup is left out, which favours it).
func BenchmarkMatchSmallNaive(b *testing.B) {
	var subs []naiveSub
	for i := 0; i < smallDevices; i++ {
		pk, dn, c := device(i)
		for _, f := range deviceFilters(pk, dn) {
			subs = append(subs, naiveSub{c, f, Options{NoLocal: true}})
		}
	}
	topic := propertySet(424)
	var out []naiveSub
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out = out[:0]
		for _, s := range subs {
			if packet.Match(s.filter, topic) {
				out = append(out, s)
			}
		}
	}
	if len(out) != 1 {
		b.Fatalf("%d hits", len(out))
	}
}

// BenchmarkSubscribe: device filters into a growing index, one op one
// subscription.
func BenchmarkSubscribe(b *testing.B) {
	// Filters are built before the timer, as a session holds them already.
	fs := make([]string, 0, b.N+40)
	cs := make([]string, 0, b.N+40)
	for i := 0; len(fs) < b.N; i++ {
		pk, dn, c := device(i)
		for _, f := range deviceFilters(pk, dn) {
			fs, cs = append(fs, f), append(cs, c)
		}
	}
	ix := New()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ix.Subscribe(cs[i], fs[i], Options{})
	}
}

// BenchmarkMemory reports the heap the index holds per subscription at 100k
// devices × 40 filters (run with -benchtime 1x): the live heap after building
// it, less before, over the number of subscriptions. The filter and client
// strings the caller passed are dropped before measuring, as the index keeps
// its own copies (interned). Subscribe: one call a filter; SubscribeAll: one
// call a device.
func BenchmarkMemory(b *testing.B) {
	for _, batch := range []bool{false, true} {
		name := "Subscribe"
		if batch {
			name = "SubscribeAll"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				before := heap()
				ix := fleetBy(bigDevices, batch)
				after := heap()
				s := ix.Stats()
				b.ReportMetric(float64(after-before)/float64(s.Subscriptions), "B/sub")
				b.ReportMetric(float64(after-before)/float64(s.Clients), "B/client")
				b.ReportMetric(float64(s.Nodes)/float64(s.Clients), "nodes/client")
				runtime.KeepAlive(ix)
			}
		})
	}
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
