// Package pahoload drives message traffic through an MQTT broker with paho
// clients, the same for every broker a benchmark compares (corral, the bare
// engine, Mosquitto): throughput timed to the last delivery with the
// messages lost, and delivery latency at a fixed rate.
package pahoload

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/bench/internal/sink"
)

// Target is a broker under test with its clients' credentials.
type Target struct {
	Addr string
	Pub  func(i int) (clientID, user, pass, topic string)
	Sub  func() (clientID, user, pass, filter string)
}

// MosquittoAddr is the reference Mosquitto every broker bench compares with.
const MosquittoAddr = "127.0.0.1:1883"

// Anonymous is a Target on addr whose clients carry no credentials, on
// the topics corral's bench devices use (so every broker routes the same
// topic shapes).
func Anonymous(addr string) Target {
	return Target{Addr: addr,
		Pub: func(i int) (string, string, string, string) {
			return fmt.Sprintf("bench-pub-%d", i), "", "", fmt.Sprintf("/a1BenchProdX/dev-%d/user/telemetry", i)
		},
		Sub: func() (string, string, string, string) {
			return "bench-sub", "", "", "/a1BenchProdX/+/user/telemetry"
		}}
}

// Mosquitto is the anonymous Target at 127.0.0.1:1883; the benchmark is
// skipped when nothing listens there.
func Mosquitto(tb testing.TB) Target {
	tb.Helper()
	c, err := net.DialTimeout("tcp", MosquittoAddr, time.Second)
	if err != nil {
		tb.Skip("Mosquitto is not listening on " + MosquittoAddr)
	}
	c.Close()
	return Anonymous(MosquittoAddr)
}

// Client connects a paho client (MQTT 3.1.1, clean session).
func Client(tb testing.TB, addr, id, user, pass string) paho.Client {
	tb.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetOrderMatters(false).SetAutoReconnect(false).
		SetMaxResumePubInFlight(1000).SetWriteTimeout(10 * time.Second)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c
}

func subscribe(tb testing.TB, t Target, qos byte, h paho.MessageHandler) paho.Client {
	tb.Helper()
	sid, su, sp, filter := t.Sub()
	sub := Client(tb, t.Addr, sid, su, sp)
	if tok := sub.Subscribe(filter, qos, h); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		sub.Disconnect(0)
		tb.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return sub
}

func publishers(tb testing.TB, t Target, n int) ([]paho.Client, []string) {
	tb.Helper()
	clients := make([]paho.Client, n)
	topics := make([]string, n)
	for i := range clients {
		id, u, p, topic := t.Pub(i)
		clients[i], topics[i] = Client(tb, t.Addr, id, u, p), topic
	}
	return clients, topics
}

// Throughput runs pubs publishers sending per messages each to one
// subscriber and returns the delivered rate (timed to the last delivery)
// and how many of the messages published were never delivered. A shared
// window (CORRAL_BENCH_WINDOW, 1,000) bounds the messages published but
// not yet delivered (end-to-end flow control), so the figure is the rate
// the broker sustains rather than how fast it drops: when deliveries
// stall for a second the outstanding messages are written off, once for
// all publishers, and publishing goes on. A window larger than the
// broker's per-client queue lets the subscriber's queue overflow; the loss
// is reported either way.
func Throughput(tb testing.TB, t Target, pubs, per int, qos byte) (rate float64, lost int64) {
	tb.Helper()
	window := int64(knob.Int("CORRAL_BENCH_WINDOW", 1000))
	total := int64(pubs * per)
	var got atomic.Pointer[sink.Counter] // nil until publishing starts
	sub := subscribe(tb, t, qos, func(paho.Client, paho.Message) {
		if c := got.Load(); c != nil {
			c.Add()
		}
	})
	defer sub.Disconnect(0)
	clients, topics := publishers(tb, t, pubs)
	defer func() {
		for _, c := range clients {
			c.Disconnect(0)
		}
	}()
	payload := []byte(strings.Repeat("x", 100))
	delivered := sink.New(total)
	got.Store(delivered)
	var sent, writtenOff atomic.Int64
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func(c paho.Client, topic string) {
			defer wg.Done()
			var last paho.Token
			for j := 0; j < per; j++ {
				waited := time.Now()
				for {
					off := writtenOff.Load()
					if sent.Load()-delivered.N()-off < window {
						break
					}
					if time.Since(waited) > time.Second {
						writtenOff.CompareAndSwap(off, sent.Load()-delivered.N())
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				sent.Add(1)
				last = c.Publish(topic, qos, false, payload)
			}
			last.WaitTimeout(30 * time.Second)
		}(c, topics[i])
	}
	wg.Wait()
	n, el := delivered.Wait(time.Second)
	if el <= 0 {
		return 0, total
	}
	return float64(n) / el.Seconds(), max(0, total-n)
}

// Latency publishes n 100-byte messages from one publisher to one
// subscriber at rate messages a second (paced every millisecond), each
// carrying its send time, and returns the p50 and p99 of the time from
// Publish to the subscriber's handler, with the messages never delivered.
func Latency(tb testing.TB, t Target, qos byte, rate float64, n int) (p50, p99 time.Duration, lost int64) {
	tb.Helper()
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	delivered := sink.New(int64(n))
	sub := subscribe(tb, t, qos, func(_ paho.Client, m paho.Message) {
		p := m.Payload()
		if len(p) < 8 {
			return
		}
		d := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(p)))
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		delivered.Add()
	})
	defer sub.Disconnect(0)
	clients, topics := publishers(tb, t, 1)
	defer clients[0].Disconnect(0)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var last paho.Token
	for sent := 0; sent < n; <-tick.C {
		due := min(n, int(rate*time.Since(start).Seconds()))
		for ; sent < due; sent++ {
			payload := make([]byte, 100)
			binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
			last = clients[0].Publish(topics[0], qos, false, payload)
		}
	}
	if last != nil {
		last.WaitTimeout(30 * time.Second)
	}
	got, _ := delivered.Wait(time.Second)
	mu.Lock()
	defer mu.Unlock()
	p50, p99 = mqttload.Percentiles(lat)
	return p50, p99, int64(n) - got
}
