// Package mqttstore benchmarks the MQTT engine's durable session store
// (internal/mqtt/persist on internal/store/sqlite, synchronous=FULL): one
// message enqueued for 1 and for 10 persistent subscribers by 16
// concurrent publishers, each waiting for its Write to be durable as a
// publisher waits for its PUBACK; next to bare loops of SQLite inserts of
// the same rows in the same run: one durable transaction per message (what
// group commit saves) and one per 16 messages (the ceiling: the rows and
// the fsyncs alone, no writer queue, savepoints or foreign keys).
package mqttstore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// publishBytes is a 100-byte-payload MQTT 5 QoS 1 PUBLISH with a message
// expiry, as the engine stores it.
func publishBytes(b *testing.B) []byte {
	expiry := uint32(3600)
	p := packet.Publish{QoS: 1, Topic: "/sys/a1B2c3D4e5F/device-0001/thing/service/property/set", PacketID: 1,
		Properties: packet.Properties{MessageExpiry: &expiry}, Payload: make([]byte, 100)}
	out, err := p.Append(nil, packet.V5)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkSessionStore: CORRAL_BENCH_N messages per row (4,000),
// CORRAL_BENCH_C publishers (16), CORRAL_BENCH_EACH messages for the
// one-transaction-per-message loop (500: each costs an fsync).
func BenchmarkSessionStore(b *testing.B) {
	n, c, each := knob.Int("CORRAL_BENCH_N", 4000), knob.Int("CORRAL_BENCH_C", 16), knob.Int("CORRAL_BENCH_EACH", 500)
	pub := publishBytes(b)
	for _, fanout := range []int{1, 10} {
		b.Run(fmt.Sprintf("store/subscribers=%d", fanout), func(b *testing.B) {
			for range b.N {
				report(b, storeRun(b, pub, fanout, n, c))
			}
		})
		b.Run(fmt.Sprintf("bare-insert-txn-each/subscribers=%d", fanout), func(b *testing.B) {
			for range b.N {
				report(b, bareRun(b, pub, fanout, each, 1))
			}
		})
		b.Run(fmt.Sprintf("bare-insert-txn-per-%d/subscribers=%d", c, fanout), func(b *testing.B) {
			for range b.N {
				report(b, bareRun(b, pub, fanout, n, c))
			}
		})
	}
}

type result struct {
	n       int
	elapsed time.Duration
	lat     []time.Duration // per message, until durable
}

func report(b *testing.B, r result) {
	p50, p99 := mqttload.Percentiles(r.lat)
	b.ReportMetric(float64(r.n)/r.elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

// storeRun enqueues n messages, each for fanout subscribers, from c
// publishers through the store port.
func storeRun(b *testing.B, pub []byte, fanout, n, c int) result {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "store.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := s.MQTT()
	seqs := make([]atomic.Uint64, fanout) // the engine's next seq per subscriber
	for i := range fanout {
		if err := m.PutSession(ctx, persist.Session{ClientID: fmt.Sprintf("sub-%d", i), Version: 5, ExpiryInterval: persist.NeverExpires, Created: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, c)
	start := time.Now()
	for range c {
		wg.Go(func() {
			batch := persist.Batch{Enqueue: make([]persist.Message, fanout)}
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				for j := range fanout {
					batch.Enqueue[j] = persist.Message{ClientID: fmt.Sprintf("sub-%d", j), Seq: seqs[j].Add(1), Publish: pub}
				}
				t := time.Now()
				if err := m.Write(ctx, batch); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return result{n: n, elapsed: el, lat: lat}
}

// bareRun inserts the same rows as storeRun into a table of the same
// shape with the same pragmas, from one goroutine, committing every
// perTxn messages; a message's latency is its transaction's.
func bareRun(b *testing.B, pub []byte, fanout, n, perTxn int) result {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "bare.db")+
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-65536)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE m (client_id TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL,
		packet_id INTEGER NOT NULL, expiry INTEGER, publish BLOB NOT NULL, PRIMARY KEY (client_id, seq)) WITHOUT ROWID`); err != nil {
		b.Fatal(err)
	}
	ins, err := db.PrepareContext(ctx, `INSERT INTO m(client_id, seq, state, packet_id, expiry, publish) VALUES (?, ?, 0, 0, NULL, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	defer ins.Close()
	lat := make([]time.Duration, 0, n)
	seq := 0
	start := time.Now()
	for done := 0; done < n; {
		t := time.Now()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		st := tx.StmtContext(ctx, ins)
		k := min(perTxn, n-done)
		for range k {
			seq++
			for j := range fanout {
				if _, err := st.ExecContext(ctx, fmt.Sprintf("sub-%d", j), seq, pub); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t)
		for range k {
			lat = append(lat, d)
		}
		done += k
	}
	return result{n: n, elapsed: time.Since(start), lat: lat}
}

// BenchmarkSessionStoreLoad: the start-up read of CORRAL_BENCH_SESSIONS
// persistent sessions (10,000), each with 2 subscriptions and 10 queued
// messages, in sessions/s.
func BenchmarkSessionStoreLoad(b *testing.B) {
	sessions := knob.Int("CORRAL_BENCH_SESSIONS", 10000)
	ctx := context.Background()
	pub := publishBytes(b)
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "load.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := s.MQTT()
	// Filled from 16 goroutines, so that the sessions' writes share commits.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < sessions; i += 16 {
				id := fmt.Sprintf("device-%07d", i)
				if err := m.PutSession(ctx, persist.Session{ClientID: id, Version: 5, ExpiryInterval: persist.NeverExpires, Created: time.Now()}); err != nil {
					errs <- err
					return
				}
				if err := m.Subscribe(ctx, id, []persist.Subscription{{Filter: "/sys/pk/" + id + "/thing/service/+", QoS: 1}, {Filter: "/pk/" + id + "/user/get", QoS: 1}}); err != nil {
					errs <- err
					return
				}
				var batch persist.Batch
				for seq := range uint64(10) {
					batch.Enqueue = append(batch.Enqueue, persist.Message{ClientID: id, Seq: seq, Publish: pub})
				}
				if err := m.Write(ctx, batch); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		n, msgs := 0, 0
		if err := m.Load(ctx, func(l persist.Loaded) error {
			n++
			msgs += len(l.Messages)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if n != sessions || msgs != 10*sessions {
			b.Fatalf("loaded %d sessions, %d messages", n, msgs)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "sessions/s")
	}
}
