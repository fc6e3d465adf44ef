// Shadows over MQTT: AWS shadow updates, each answered on
// /update/accepted once it is durable, beside a bare loop of SQLite
// upserts of the same documents (the ceiling), and delta delivery to an
// online device after an application's REST update.

package shadow

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the driver corral's store uses

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/bench/internal/serverproc"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/mqtttest"
	"github.com/corral-iot/corral/internal/shadow"
)

type dev struct{ ProductKey, DeviceName, DeviceSecret string }

// populate creates n devices through the API and returns their triples.
func populate(b *testing.B, s *apptest.Server, pk string, n int) []dev {
	b.Helper()
	var out []dev
	for done := 0; done < n; done += 10000 {
		var batch struct{ Devices []dev }
		s.Admin("POST", "/v1/products/"+pk+"/devices:batch", map[string]any{"count": min(10000, n-done)}, 201).JSON(b, &batch)
		out = append(out, batch.Devices...)
	}
	return out
}

// shadowConn is one device's raw MQTT connection, subscribed to its
// classic shadow's update/accepted.
type shadowConn struct {
	c     net.Conn
	r     *bufio.Reader // over c: a packet costs the load generator no read calls of its own
	topic string        // …/shadow/update
	pid   uint16
	buf   []byte // the last packet read's body (readPacket)
	out   []byte // the last update sent (update)
}

// readPacket reads one MQTT packet into sc.buf, reused: the load
// generator's readers allocate nothing a packet, so that its own
// collections (which stall every reader at once and count as the
// server's latency) stay rare. The body is valid until the next call.
func (sc *shadowConn) readPacket() (typ byte, body []byte, err error) {
	if typ, err = sc.r.ReadByte(); err != nil {
		return 0, nil, err
	}
	n := 0
	for shift := 0; ; shift += 7 {
		b, err := sc.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift == 21 {
			return 0, nil, fmt.Errorf("malformed remaining length")
		}
	}
	if cap(sc.buf) < n {
		sc.buf = make([]byte, n)
	}
	body = sc.buf[:n]
	_, err = io.ReadFull(sc.r, body)
	return typ, body, err
}

// appendPublish appends a QoS 1 PUBLISH of payload on topic.
func appendPublish(dst []byte, topic string, pid uint16, payload []byte) []byte {
	n := 2 + len(topic) + 2 + len(payload)
	dst = append(dst, 0x32)
	for {
		b := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			break
		}
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = append(dst, topic...)
	dst = binary.BigEndian.AppendUint16(dst, pid)
	return append(dst, payload...)
}

func subscribePacket(pid uint16, filter string) []byte {
	body := binary.BigEndian.AppendUint16(nil, pid)
	body = append(body, mqtttest.Str(filter)...)
	return mqtttest.Packet(0x82, append(body, 0))
}

// connect opens and subscribes every device's connection.
func connect(b *testing.B, addr string, devs []dev) []*shadowConn {
	b.Helper()
	return connectEach(b, addr, len(devs), func(i int) (mqttload.Creds, string, string) {
		d := devs[i]
		topic := "$aws/things/" + d.ProductKey + "." + d.DeviceName + "/shadow/update"
		return mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), topic, topic + "/accepted"
	})
}

// connectEach opens n connections, the i-th with the credentials, topic
// (shadowConn.topic) and subscription filter conn(i) gives.
func connectEach(b *testing.B, addr string, n int, conn func(i int) (creds mqttload.Creds, topic, filter string)) []*shadowConn {
	b.Helper()
	conns := make([]*shadowConn, n)
	var firstErr atomic.Pointer[string]
	failed := mqttload.Spread(n, 16, func(i int) error {
		creds, topic, filter := conn(i)
		var c net.Conn
		var err error
		for range 3 { // a loaded machine may miss a deadline: try again
			if c, err = mqttload.Connect(addr, creds, 0); err == nil {
				break
			}
		}
		if err != nil {
			firstErr.CompareAndSwap(nil, new(err.Error()))
			return err
		}
		sc := &shadowConn{c: c, r: bufio.NewReaderSize(c, 512), topic: topic}
		if _, err := c.Write(subscribePacket(1, filter)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if typ, _, err := mqtttest.ReadPacket(sc.r); err != nil || typ>>4 != 9 {
			c.Close()
			err = fmt.Errorf("SUBACK: %x %v", typ, err)
			firstErr.CompareAndSwap(nil, new(err.Error()))
			return err
		}
		conns[i] = sc
		return nil
	})
	b.Cleanup(func() {
		for _, sc := range conns {
			if sc != nil {
				mqttload.Disconnect(sc.c)
			}
		}
	})
	if failed > 0 {
		b.Fatalf("%d devices failed to connect and subscribe (first: %s)", failed, *firstErr.Load())
	}
	return conns
}

// update publishes one update (QoS 1) and waits for its update/accepted.
func (sc *shadowConn) update(payload []byte) (time.Duration, error) {
	sc.pid++
	if sc.pid == 0 {
		sc.pid = 1
	}
	start := time.Now()
	sc.out = appendPublish(sc.out[:0], sc.topic, sc.pid, payload)
	if _, err := sc.c.Write(sc.out); err != nil {
		return 0, err
	}
	sc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		typ, body, err := sc.readPacket()
		if err != nil {
			return 0, err
		}
		if typ>>4 != 3 {
			continue // the PUBACK of the update
		}
		if n := int(binary.BigEndian.Uint16(body)); len(body) >= 2+n && bytes.HasSuffix(body[2:2+n], accepted) {
			return time.Since(start), nil
		}
	}
}

func updateBody(seq int) []byte {
	return fmt.Appendf(nil, `{"state":{"reported":{"temp":%d,"seq":%d,"mode":"eco"}},"clientToken":"b%d"}`, 20+seq%10, seq, seq)
}

// run sends n updates from c workers, each owning every c-th device in
// turn (one update in flight per worker), and returns the rate and the
// latencies.
func run(b *testing.B, conns []*shadowConn, n, c int) (float64, []time.Duration) {
	b.Helper()
	lat := make([][]time.Duration, c)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := 0
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				sc := conns[(w+mine*c)%len(conns)]
				mine++
				d, err := sc.update(updateBody(i))
				if err != nil {
					failed.Add(1)
					return
				}
				lat[w] = append(lat[w], d)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d workers failed", f)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return float64(len(all)) / el.Seconds(), all
}

// BenchmarkShadowUpdateMQTT: devices update their own classic shadows
// over MQTT (QoS 1 to $aws/things/{thing}/shadow/update), each update
// answered on update/accepted after the store committed it (SQLite,
// synchronous=FULL, group commit). Two loads on the same server, after
// the presence writes of the sessions just connected are done (the server
// is quiet):
//
//   - closed loop (updates/s, p50-ms, p99-ms): C workers keep one update
//     each in flight, cycling through the devices: the maximum rate. Its
//     mean latency is C / rate by construction (Little's law).
//   - open loop, paced (paced-*): the devices offer CORRAL_BENCH_RATE
//     updates/s in total for CORRAL_BENCH_SECONDS, each on its own
//     schedule whether or not its previous update was answered; latency
//     runs from an update's scheduled send time to its accepted (matched
//     by clientToken), so a late sender counts against the server too;
//     paced-accepted/s is over the time from the first due send to the
//     last accepted (at least the duration); paced-lost counts updates
//     with no accepted 5 s after the last send; paced-server-cpu-µs/update
//     is the server's CPU over the run per update answered (more than the
//     closed loop's server-cpu-µs/update: updates come one by one);
//     paced-client-cpu-µs/update is the load generator's own, which
//     shares the cores. CORRAL_BENCH_LATENCY_FILE names a file each paced
//     run appends its latencies to, by 50 ms window of due times.
//
// Beside them, the ceiling: a bare loop of SQLite JSON upserts of the
// same documents, one per transaction and C at once, on the same
// settings. The server runs as its own process (serverproc); the load
// generator shares the machine's 2 cores.
//
// And the peer (mosquitto-echo-devices=N, after each): the same paced
// load from the same generator against a private Mosquitto
// (serverproc.Mosquitto), each device subscribed to the topic it sends
// its updates to, so that each is answered by a PUBACK and the update
// back, as corral answers, with nothing stored: what this machine and
// generator allow a broker in C that only routes.
func BenchmarkShadowUpdateMQTT(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_N", 20000)
	c := knob.Int("CORRAL_BENCH_C", 100)
	rate := knob.Int("CORRAL_BENCH_RATE", 10000)
	secs := knob.Int("CORRAL_BENCH_SECONDS", 5)
	bin := serverproc.Build(b)
	for _, devices := range []int{100, knob.Int("CORRAL_BENCH_DEVICES", 10000)} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			proc := serverproc.Start(b, bin, "--sqlite-synchronous", "FULL")
			s := proc.Server
			pk := s.CreateProduct("bench", nil).ProductKey
			conns := connect(b, proc.Addrs["mqtt-tcp"], populate(b, s, pk, devices))
			pid := proc.Cmd.Process.Pid
			serverproc.Quiet(b, pid)             // presence of the new sessions is written in the background
			run(b, conns, min(devices, 2000), c) // warm-up
			serverproc.Quiet(b, pid)
			cpu0 := serverproc.CPUTime(b, pid)
			b.ResetTimer()
			got, lat := run(b, conns, n, c)
			b.StopTimer()
			b.ReportMetric(float64((serverproc.CPUTime(b, pid)-cpu0).Microseconds())/float64(n), "server-cpu-µs/update")
			p50, p99 := mqttload.Percentiles(lat)
			serverproc.Quiet(b, pid)
			gs0 := proc.GoStats(b)
			pr := measurePaced(b, pid, conns, rate, secs)
			// The collector's load: what an update allocates and how many
			// collections the paced run took.
			gs := proc.GoStats(b).Sub(gs0)
			b.ReportMetric(gs.AllocBytes/float64(max(len(pr.lat), 1)), "paced-server-alloc-B/update")
			b.ReportMetric(gs.Mallocs/float64(max(len(pr.lat), 1)), "paced-server-allocs/update")
			b.ReportMetric(gs.Collections, "paced-server-gcs")
			ceil := ceiling(b, n, c)
			diskSyncs(b, time.Duration(min(secs, 3))*time.Second)
			b.ReportMetric(got, "updates/s")
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(ceil, "sqlite-upserts/s")
			b.ReportMetric(got/ceil, "ratio")
			b.ReportMetric(pr.rate/ceil, "paced-ratio")
		})
		b.Run(fmt.Sprintf("mosquitto-echo-devices=%d", devices), func(b *testing.B) {
			// Without Nagle's algorithm, as corral's sockets: else its PUBACK
			// holds the update back until the device's next packet.
			cmd, addr := serverproc.MosquittoConf(b, "allow_anonymous true\nset_tcp_nodelay true\n")
			pid := cmd.Process.Pid
			conns := connectEach(b, addr, devices, func(i int) (mqttload.Creds, string, string) {
				topic := fmt.Sprintf("echo/%d/update/accepted", i) // subscribed: the broker sends each update back
				return mqttload.Creds{ClientID: fmt.Sprintf("echo-%d", i)}, topic, topic
			})
			serverproc.Quiet(b, pid)
			b.ResetTimer()
			measurePaced(b, pid, conns, rate, secs)
			b.StopTimer()
		})
	}
}

// measurePaced runs paced on conns and reports what it measured, with the
// CPU the server process pid and the load generator took over it.
func measurePaced(b *testing.B, pid int, conns []*shadowConn, rate, secs int) pacedResult {
	b.Helper()
	pcpu0, ccpu0 := serverproc.CPUTime(b, pid), serverproc.CPUTime(b, os.Getpid())
	pr := paced(b, conns, rate, time.Duration(secs)*time.Second)
	pcpu, ccpu := serverproc.CPUTime(b, pid)-pcpu0, serverproc.CPUTime(b, os.Getpid())-ccpu0
	pp50, pp99 := mqttload.Percentiles(pr.lat)
	b.ReportMetric(pr.rate, "paced-accepted/s")
	b.ReportMetric(float64(pp50.Microseconds())/1000, "paced-p50-ms")
	b.ReportMetric(float64(pp99.Microseconds())/1000, "paced-p99-ms")
	b.ReportMetric(float64(pr.lost), "paced-lost")
	b.ReportMetric(float64(pcpu.Microseconds())/float64(max(len(pr.lat), 1)), "paced-server-cpu-µs/update")
	b.ReportMetric(float64(ccpu.Microseconds())/float64(max(len(pr.lat), 1)), "paced-client-cpu-µs/update")
	return pr
}

// pacedResult is what an open-loop run measured.
type pacedResult struct {
	rate float64         // accepted updates a second, from the first due send to the last accepted
	lat  []time.Duration // from each answered update's scheduled send time
	lost int             // updates not answered
}

// pacedSenders share the sends; each device is always sent by the same
// one, so its packet ids need no lock.
const pacedSenders = 4

// paced offers rate updates/s in total for d: update j is due at
// start + j/rate and goes to device j mod len(conns) (so each device
// sends every len(conns)/rate, on its own phase), whether or not its
// earlier updates were answered. A reader per connection matches each
// accepted to its update by clientToken ("p{j}").
func paced(b *testing.B, conns []*shadowConn, rate int, d time.Duration) pacedResult {
	b.Helper()
	total := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	senders := pacedSenders
	if len(conns)%senders != 0 {
		senders = 1
	}
	start := time.Now().Add(100 * time.Millisecond)
	due := func(j int) time.Time { return start.Add(time.Duration(j) * interval) }
	var answered, last atomic.Int64 // last: the latest accepted's time, UnixNano
	lats := make([][]time.Duration, len(conns))
	byDue := make([]time.Duration, total) // by j, for CORRAL_BENCH_LATENCY_FILE; each j written by one reader
	var readers sync.WaitGroup
	for i, sc := range conns {
		sc.c.SetReadDeadline(time.Time{})
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				typ, body, err := sc.readPacket()
				if err != nil {
					return // the deadline set when the run ends
				}
				if typ>>4 != 3 || len(body) < 2 {
					continue // the PUBACK of an update
				}
				n := int(binary.BigEndian.Uint16(body))
				if len(body) < 2+n || !bytes.HasSuffix(body[2:2+n], accepted) {
					continue
				}
				at := time.Now()
				_, tok, ok := bytes.Cut(body[2+n:], pacedToken)
				if !ok {
					continue
				}
				j, ok := digits(tok)
				if !ok {
					continue
				}
				lats[i] = append(lats[i], at.Sub(due(j)))
				if j < total {
					byDue[j] = at.Sub(due(j))
				}
				answered.Add(1)
				for t := at.UnixNano(); ; {
					if l := last.Load(); l >= t || last.CompareAndSwap(l, t) {
						break
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pkt, body []byte // reused: the senders allocate nothing a send either
			for j := w; j < total; {
				if wait := time.Until(due(j)); wait > 0 {
					time.Sleep(wait)
				}
				now := time.Now()
				// Send everything due by now: a sleep that overslept does
				// not shift the schedule.
				for ; j < total && !due(j).After(now); j += senders {
					sc := conns[j%len(conns)]
					sc.pid++
					if sc.pid == 0 {
						sc.pid = 1
					}
					body = appendPacedBody(body[:0], j)
					pkt = appendPublish(pkt[:0], sc.topic, sc.pid, body)
					if _, err := sc.c.Write(pkt); err != nil {
						failed.Add(1)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	sent := time.Now()
	for answered.Load() < int64(total) && time.Since(sent) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	for _, sc := range conns {
		sc.c.SetReadDeadline(time.Now()) // stop the readers
	}
	readers.Wait()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d senders failed", f)
	}
	if path := os.Getenv("CORRAL_BENCH_LATENCY_FILE"); path != "" {
		writeWindows(b, path, byDue, rate, start)
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	// Over the time the answers took, not d: a server that falls behind
	// answers the last updates late, and its rate is what it achieved.
	span := time.Unix(0, last.Load()).Sub(start)
	return pacedResult{rate: float64(len(all)) / max(span, d).Seconds(), lat: all, lost: total - len(all)}
}

// writeWindows writes, for each 50 ms of due times, the updates due in it,
// their p50, p99 and largest latency and how many got no answer: where in
// a run the tail came from (CORRAL_BENCH_LATENCY_FILE).
func writeWindows(b *testing.B, path string, byDue []time.Duration, rate int, start time.Time) {
	per := rate / 20
	var out bytes.Buffer
	fmt.Fprintf(&out, "# a paced run of %d updates from %s\nwindow_ms n p50_ms p99_ms max_ms unanswered\n", len(byDue), start.UTC().Format(time.RFC3339Nano))
	for w := 0; w*per < len(byDue); w++ {
		var got []time.Duration
		missing := 0
		for _, l := range byDue[w*per : min((w+1)*per, len(byDue))] {
			if l == 0 {
				missing++
				continue
			}
			got = append(got, l)
		}
		p50, p99 := mqttload.Percentiles(got) // sorts got
		var most time.Duration
		if len(got) > 0 {
			most = got[len(got)-1]
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		fmt.Fprintf(&out, "%d %d %.1f %.1f %.1f %d\n", w*50, len(got), ms(p50), ms(p99), ms(most), missing)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644) // runs appended
	if err == nil {
		_, err = f.Write(out.Bytes())
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		b.Errorf("latency file: %v", err)
	}
}

// appendPacedBody appends the paced load's update j, whose clientToken
// ("p{j}") names it in its accepted.
func appendPacedBody(dst []byte, j int) []byte {
	dst = append(dst, `{"state":{"reported":{"temp":`...)
	dst = strconv.AppendInt(dst, int64(20+j%10), 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, int64(j), 10)
	dst = append(dst, `,"mode":"eco"}},"clientToken":"p`...)
	dst = strconv.AppendInt(dst, int64(j), 10)
	return append(dst, `"}`...)
}

var (
	accepted   = []byte("/accepted")
	pacedToken = []byte(`"clientToken":"p`)
)

// digits reads the decimal number b starts with, up to its first
// non-digit; ok is false when there is none.
func digits(b []byte) (n int, ok bool) {
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n, ok = n*10+int(c-'0'), true
	}
	return n, ok
}

// ceiling upserts n shadow documents of the shape the benchmark stores
// into a bare SQLite table (WAL, synchronous=FULL, one upsert per
// transaction) from c goroutines, and returns upserts/s.
func ceiling(b *testing.B, n, c int) float64 {
	b.Helper()
	dsn := "file:" + filepath.Join(b.TempDir(), "ceiling.db") + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // SQLite has one writer; a pool would only wait on its lock
	if _, err := db.Exec(`CREATE TABLE shadows(product_key TEXT, device_name TEXT, name TEXT, doc BLOB, version INTEGER, updated_at INTEGER,
		PRIMARY KEY(product_key, device_name, name)) WITHOUT ROWID`); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	docs := make([][]byte, 64)
	doc := shadow.New(nil, now)
	for i := range docs {
		u, err := shadow.ApplyAWS(doc, updateBody(i), now, shadow.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		docs[i], _ = u.Next.MarshalJSON()
		doc = u.Next
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := db.ExecContext(context.Background(), `INSERT INTO shadows VALUES ('pk', ?, '', ?, ?, ?)
					ON CONFLICT(product_key, device_name, name) DO UPDATE SET doc = excluded.doc, version = excluded.version, updated_at = excluded.updated_at`,
					fmt.Sprint("d", i%100), docs[i%len(docs)], i, now.UnixMilli()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// diskSyncs reports the time a bare write and fsync of a commit's size
// (40 KB: a group of updates' WAL pages) takes on the disk the server's
// database is on (the test's temporary directory), one every millisecond
// for d: the floor under a durable answer's latency, and in its tail the
// disk's own stalls, which every update waiting on a commit shares.
func diskSyncs(b *testing.B, d time.Duration) {
	b.Helper()
	f, err := os.Create(filepath.Join(b.TempDir(), "syncs"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const size, span = 40 << 10, 64 << 20
	if err := f.Truncate(span); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, size)
	var lat []time.Duration
	for end, off := time.Now().Add(d), int64(0); time.Now().Before(end); off = (off + size) % span {
		t := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
		time.Sleep(time.Millisecond)
	}
	p50, p99 := mqttload.Percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds())/1000, "disk-fsync-p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "disk-fsync-p99-ms")
	b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "disk-fsync-max-ms")
}

// BenchmarkShadowDeltaDelivery: an application sets desired through the
// REST API (PUT /v1/products/{pk}/devices/{dn}/shadows) and an online
// device, subscribed to its classic shadow's update/delta, receives the
// delta: the time from sending the request to the delta's arrival,
// CORRAL_BENCH_DELTAS (1,000) times, one at a time.
func BenchmarkShadowDeltaDelivery(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_DELTAS", 1000)
	s := apptest.Start(b)
	pk := s.CreateProduct("bench", nil).ProductKey
	d := populate(b, s, pk, 1)[0]
	c, err := mqttload.Connect(s.App.Broker().Addr("tcp"), mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer mqttload.Disconnect(c)
	delta := "$aws/things/" + d.ProductKey + "." + d.DeviceName + "/shadow/update/delta"
	if _, err := c.Write(subscribePacket(1, delta)); err != nil {
		b.Fatal(err)
	}
	path := "/v1/products/" + pk + "/devices/" + d.DeviceName + "/shadows"
	var lat []time.Duration
	b.ResetTimer()
	for i := range n {
		start := time.Now()
		r := s.Do(s.AdminKey, "PUT", path, fmt.Sprintf(`{"state":{"desired":{"fan":%d}}}`, i+1))
		if r.Status != 200 {
			b.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			typ, body, err := mqtttest.ReadPacket(c)
			if err != nil {
				b.Fatalf("no delta: %v", err)
			}
			if typ>>4 == 3 && strings.Contains(string(body), fmt.Sprintf(`"fan":%d}`, i+1)) {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	p50, p99 := mqttload.Percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

// TestLoadPackets holds the load generator's own encoder and reader to
// mqtttest's, across the remaining length's 1-, 2- and 3-byte forms.
func TestLoadPackets(t *testing.T) {
	for _, n := range []int{0, 100, 200, 16000, 17000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		topic := "$aws/things/pk.dn/shadow/update"
		want := mqtttest.Packet(0x32, append(append(mqtttest.Str(topic), 0x12, 0x34), payload...))
		got := appendPublish([]byte("junk")[:0], topic, 0x1234, payload)
		if !bytes.Equal(got, want) {
			t.Fatalf("payload %d: appendPublish\n%x\nwant\n%x", n, got, want)
		}
		sc := &shadowConn{r: bufio.NewReader(bytes.NewReader(append(got, got...)))}
		for range 2 {
			typ, body, err := sc.readPacket()
			if err != nil || typ != 0x32 || !bytes.Equal(body, want[len(want)-len(body):]) || len(want)-len(body) > 4 {
				t.Fatalf("payload %d: readPacket = %x, %d bytes, %v", n, typ, len(body), err)
			}
		}
		if _, _, err := sc.readPacket(); err != io.EOF {
			t.Fatalf("payload %d: after the packets: %v", n, err)
		}
	}
	if j, ok := digits([]byte(`123"}`)); !ok || j != 123 {
		t.Fatalf("digits = %d, %v", j, ok)
	}
	if _, ok := digits([]byte(`"}`)); ok {
		t.Fatal("digits of no digit: ok")
	}
	if got, want := string(appendPacedBody(nil, 7)), `{"state":{"reported":{"temp":27,"seq":7,"mode":"eco"}},"clientToken":"p7"}`; got != want {
		t.Fatalf("appendPacedBody = %s, want %s", got, want)
	}
}
