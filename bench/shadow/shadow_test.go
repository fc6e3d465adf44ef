// Package shadow benchmarks device shadows (issue 11): a REST get of one
// shadow out of 1M stored, next to a bare SQLite point select of the same
// row in the same run (the ceiling).
package shadow

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the driver corral ships, for the bulk load and the ceiling

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/shadow"
)

// BenchmarkRESTGet stores CORRAL_BENCH_SHADOWS shadows (1,000,000: 1,000
// devices with 1,000 named shadows each, bulk-loaded in one transaction)
// and reads CORRAL_BENCH_GETS (20,000) random ones, one request at a time,
// through GET /v1/products/{pk}/devices/{dn}/shadows/{name} (API-key
// check, tenancy check, device and shadow reads), then as many bare
// point selects of a random row (target: REST median under 1 ms).
func BenchmarkRESTGet(b *testing.B) {
	total := knob.Int("CORRAL_BENCH_SHADOWS", 1_000_000)
	gets := knob.Int("CORRAL_BENCH_GETS", 20_000)
	const devices = 1000
	perDevice := max(total/devices, 1)
	for range b.N {
		s := apptest.Start(b, func(c *config.Config) { c.LogLevel = "error" })
		p := s.CreateProduct("bench", nil)
		names := make([]string, devices)
		for i := range names {
			names[i] = fmt.Sprintf("dev-%04d", i)
		}
		s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"deviceNames": names}, 201)

		db, err := sql.Open("sqlite", "file:"+filepath.Join(s.Config.DataDir, "corral.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		load(b, db, p.ProductKey, names, perDevice)
		b.Logf("loaded %d shadows in %s", devices*perDevice, time.Since(start).Round(time.Millisecond))

		pick := func() (string, string) {
			return names[mrand.IntN(devices)], fmt.Sprintf("s-%04d", mrand.IntN(perDevice))
		}
		// Warm both paths alike (connections, statement caches).
		for range 200 {
			dn, n := pick()
			restGet(b, s, p.ProductKey, dn, n)
		}
		b.ResetTimer()
		rest := make([]time.Duration, gets)
		for i := range rest {
			dn, n := pick()
			t0 := time.Now()
			restGet(b, s, p.ProductKey, dn, n)
			rest[i] = time.Since(t0)
		}
		stmt, err := db.Prepare(`SELECT doc, version FROM shadows WHERE product_key = ? AND device_name = ? AND name = ?`)
		if err != nil {
			b.Fatal(err)
		}
		bare := make([]time.Duration, gets)
		for i := range bare {
			dn, n := pick()
			var doc []byte
			var v int64
			t0 := time.Now()
			if err := stmt.QueryRow(p.ProductKey, dn, n).Scan(&doc, &v); err != nil {
				b.Fatal(err)
			}
			bare[i] = time.Since(t0)
		}
		b.StopTimer()
		stmt.Close()
		db.Close()
		r50, r99 := mqttload.Percentiles(rest)
		s50, s99 := mqttload.Percentiles(bare)
		b.ReportMetric(float64(r50.Nanoseconds())/1000, "rest-p50-µs")
		b.ReportMetric(float64(r99.Nanoseconds())/1000, "rest-p99-µs")
		b.ReportMetric(float64(s50.Nanoseconds())/1000, "select-p50-µs")
		b.ReportMetric(float64(s99.Nanoseconds())/1000, "select-p99-µs")
		b.ReportMetric(float64(devices*perDevice), "shadows")
		s.Stop()
	}
}

// load inserts perDevice named shadows for each device in one
// transaction (multi-row inserts), each a 437-byte document of three desired and five
// reported values with their metadata, as the service stores them.
func load(b *testing.B, db *sql.DB, pk string, devices []string, perDevice int) {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	doc := shadow.New(nil, now)
	res, err := shadow.ApplyAWS(doc, []byte(`{"state":{"desired":{"mode":"eco","target":21.5,"fan":2},"reported":{"mode":"eco","target":20.5,"fan":2,"temp":20.7,"fw":"1.4.2"}}}`), now, shadow.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := res.Next.MarshalJSON()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Multi-row inserts of 200 rows a statement: one statement per row
	// spends most of the load in the driver.
	const rows = 200
	q := `INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted) VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, 1, ?, 0),", rows), ",")
	stmt, err := tx.Prepare(q)
	if err != nil {
		b.Fatal(err)
	}
	args := make([]any, 0, rows*5)
	flush := func(st *sql.Stmt) {
		if _, err := st.Exec(args...); err != nil {
			b.Fatal(err)
		}
		args = args[:0]
	}
	for _, dn := range devices {
		for j := range perDevice {
			args = append(args, pk, dn, fmt.Sprintf("s-%04d", j), body, now.UnixMilli())
			if len(args) == cap(args) {
				flush(stmt)
			}
		}
	}
	stmt.Close()
	if len(args) > 0 {
		n := len(args) / 5
		last, err := tx.Prepare(`INSERT INTO shadows(product_key, device_name, name, doc, version, updated_at, deleted) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, 1, ?, 0),", n), ","))
		if err != nil {
			b.Fatal(err)
		}
		flush(last)
		last.Close()
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func restGet(b *testing.B, s *apptest.Server, pk, dn, name string) {
	req, _ := http.NewRequest("GET", s.URL+"/v1/products/"+pk+"/devices/"+dn+"/shadows/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+s.AdminKey)
	resp, err := s.Client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s/%s: %d", dn, name, resp.StatusCode)
	}
}
