package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/mqttload"
)

// TestRun serves the engine and its metrics, accepts an anonymous CONNECT,
// answers /metrics with the Go collector and the drop counter, collects on
// POST /debug/gc, and stops cleanly when its context ends.
func TestRun(t *testing.T) {
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), mln, hln) }()

	c, err := mqttload.Connect(mln.Addr().String(), mqttload.Creds{ClientID: "engined-test"}, 60)
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	mqttload.Disconnect(c)

	base := "http://" + hln.Addr().String()
	resp, err := http.Post(base+"/debug/gc", "", nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /debug/gc: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"go_gc_duration_seconds_count": false, "go_memstats_heap_alloc_bytes": false,
		"go_memstats_stack_inuse_bytes": false, "go_goroutines": false, "engine_dropped_total": false}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, _, ok := strings.Cut(sc.Text(), " "); ok {
			if _, ok := want[name]; ok {
				want[name] = true
			}
		}
	}
	resp.Body.Close()
	for name, seen := range want {
		if !seen {
			t.Errorf("/metrics has no %s", name)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}
