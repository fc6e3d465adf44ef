package retained

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// The retained messages of a fleet: each device's last property post, as a
// stock device retains it, on /sys/{pk}/{dn}/thing/event/property/post (ten
// ProductKeys share the devices), with a 64-byte payload.
func device(i int) (pk, dn string) {
	return fmt.Sprintf("a1Prod%05d", i%10), fmt.Sprintf("device-%07d", i)
}

func postTopic(i int) string {
	pk, dn := device(i)
	return "/sys/" + pk + "/" + dn + "/thing/event/property/post"
}

var payload64 = []byte(`{"id":"1","params":{"Temperature":23.5,"Humidity":61},"v":"1.0"}`)

// fleet retains n devices' posts; with expiry, each message has a Message
// Expiry Interval of a day (the properties' struct and a heap slot).
func fleet(n int, expiry bool) *Store {
	s := New()
	for i := range n {
		// The topic is built per device, as the engine's decoder does: the
		// store must not depend on callers sharing strings.
		m := Message{Topic: postTopic(i), Payload: payload64, QoS: 1, Stored: t0}
		if expiry {
			m.Properties.MessageExpiry = u32(86400)
		}
		s.Set(m)
	}
	return s
}

// The 1M-message store is built once for the match benchmarks.
var (
	bigOnce sync.Once
	big     *Store
)

const bigFleet = 1_000_000

func bigStore() *Store {
	bigOnce.Do(func() { big = fleet(bigFleet, false) })
	return big
}

// BenchmarkRetainedMemory reports the heap the store holds per retained
// message (run with -benchtime 1x): the live heap after building it, less
// before, over the messages; overhead-B/msg leaves out the topic and
// payload bytes themselves (Bytes).
func BenchmarkRetainedMemory(b *testing.B) {
	for _, tc := range []struct {
		n      int
		expiry bool
	}{{100_000, false}, {100_000, true}, {1_000_000, false}} {
		b.Run(fmt.Sprintf("N=%d/expiry=%v", tc.n, tc.expiry), func(b *testing.B) {
			for range b.N {
				before := heap()
				s := fleet(tc.n, tc.expiry)
				after := heap()
				total := float64(after - before)
				b.ReportMetric(total/float64(s.Len()), "B/msg")
				b.ReportMetric((total-float64(s.Bytes()))/float64(s.Len()), "overhead-B/msg")
				b.ReportMetric(float64(s.nodes)/float64(s.Len()), "nodes/msg")
				runtime.KeepAlive(s)
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

func benchMatch(b *testing.B, s *Store, filter string, want int) {
	n := 0
	s.Match(filter, t0, func(*Message) bool { n++; return true })
	if n != want {
		b.Fatalf("%q: %d messages, want %d", filter, n, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.Match(filter, t0, func(*Message) bool { return true })
	}
}

// BenchmarkRetainedMatchDevice: a device subscribes to its own topics,
// /sys/{pk}/{dn}/#, among 1M retained messages: one message.
func BenchmarkRetainedMatchDevice(b *testing.B) {
	pk, dn := device(424242)
	benchMatch(b, bigStore(), "/sys/"+pk+"/"+dn+"/#", 1)
}

// BenchmarkRetainedMatchExact: a filter without wildcards among 1M.
func BenchmarkRetainedMatchExact(b *testing.B) {
	benchMatch(b, bigStore(), postTopic(424242), 1)
}

// BenchmarkRetainedMatchAnyProduct: /sys/+/{dn}/thing/event/property/post
// among 1M: '+' walks the ten ProductKeys, one of which has the device.
func BenchmarkRetainedMatchAnyProduct(b *testing.B) {
	_, dn := device(424242)
	benchMatch(b, bigStore(), "/sys/+/"+dn+"/thing/event/property/post", 1)
}

// BenchmarkRetainedMatchProduct: an application subscribes to a product's
// posts, /sys/{pk}/+/thing/event/property/post, among 1M: 100,000 messages.
func BenchmarkRetainedMatchProduct(b *testing.B) {
	pk, _ := device(0)
	benchMatch(b, bigStore(), "/sys/"+pk+"/+/thing/event/property/post", bigFleet/10)
}

// BenchmarkRetainedMatchNaive is the baseline MatchDevice replaces: every
// retained topic tested with packet.Match, here at 100k (a tenth of the
// store above).
func BenchmarkRetainedMatchNaive(b *testing.B) {
	const n = 100_000
	ms := make(map[string][]byte, n)
	for i := range n {
		ms[postTopic(i)] = payload64
	}
	pk, dn := device(4242)
	filter := "/sys/" + pk + "/" + dn + "/#"
	b.ResetTimer()
	for range b.N {
		hits := 0
		for t := range ms {
			if packet.Match(filter, t) {
				hits++
			}
		}
		if hits != 1 {
			b.Fatalf("%d hits", hits)
		}
	}
}

// BenchmarkRetainedSet: a device replaces its retained post among 1M.
func BenchmarkRetainedSet(b *testing.B) {
	s := bigStore()
	topics := make([]string, 1024)
	for i := range topics {
		topics[i] = postTopic(i * 977)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.Set(Message{Topic: topics[i%len(topics)], Payload: payload64, QoS: 1, Stored: t0.Add(time.Duration(i))})
	}
}
