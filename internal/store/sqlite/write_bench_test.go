package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

// BenchmarkPutShadow: shadow writes with a history of 10, as the shadow
// service makes them (each shadow written by one goroutine at a time, on
// the version it wrote last). serial/synchronous=OFF is the writer's own
// cost of one write (no fsync); concurrent/synchronous=FULL is c writers
// sharing commits, with the mean group size; shadows=10000 spreads each
// writer's writes over 100 shadows of its own; history=0 keeps none (what
// the history costs at 10,000 shadows, where each write dirties pages of
// its own: run it past 100,000 writes, so that trimming happens).
func BenchmarkPutShadow(b *testing.B) {
	doc := []byte(`{"state":{"reported":{"temp":21.5,"seq":12345,"mode":"auto"}},"metadata":{"reported":{"temp":{"timestamp":1765000000},"seq":{"timestamp":1765000000},"mode":{"timestamp":1765000000}}},"version":1,"timestamp":1765000000}`)
	for _, tc := range []struct {
		sync             string
		c, shadows, keep int
	}{{"OFF", 1, 1, 10}, {"FULL", 16, 16, 10}, {"FULL", 100, 100, 10}, {"FULL", 100, 10000, 10}, {"FULL", 100, 10000, 0}} {
		name := fmt.Sprintf("writers=%d/shadows=%d/synchronous=%s", tc.c, tc.shadows, tc.sync)
		if tc.keep == 0 {
			name += "/history=0"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(context.Background(), filepath.Join(b.TempDir(), "s.db"), Options{Synchronous: tc.sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, tc.c)
			b.ResetTimer()
			start := time.Now()
			for w := range tc.c {
				wg.Go(func() {
					per := tc.shadows / tc.c
					keys := make([]shadow.Key, per)
					for i := range keys {
						keys[i] = shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: fmt.Sprintf("device-%05d", w*per+i)}
					}
					versions := make([]int64, per)
					for i := 0; next.Add(1) <= int64(b.N); i = (i + 1) % per {
						v := versions[i]
						if err := s.PutShadow(context.Background(), keys[i], v, shadow.Stored{Doc: doc, Version: v + 1, UpdatedAt: time.Now()}, tc.keep); err != nil {
							errs <- err
							return
						}
						versions[i]++
					}
				})
			}
			wg.Wait()
			el := time.Since(start)
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "writes/s")
			if g := s.groups.Load(); g > 0 {
				b.ReportMetric(float64(s.grouped.Load())/float64(g), "writes/group")
			}
		})
	}
}
