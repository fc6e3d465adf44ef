// Command engined runs corral's MQTT engine (internal/mqtt/engine) bare,
// with AllowAll hooks and default options and nothing of corral around it,
// for the benchmarks to measure as its own process: the engine's ceiling.
//
//	engined -mqtt-addr 127.0.0.1:0 -http-addr 127.0.0.1:0
//
// It logs its listeners as corral does (JSON lines on stderr, msg
// "listening", listener "mqtt-tcp" and "http") and serves on the HTTP one
// the Go collector's /metrics (with engine_dropped_total, the messages the
// engine dropped for sessions), /debug/pprof/ and POST /debug/gc (one
// runtime.GC, so a bench need not wait two minutes for a collection).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/corral-iot/corral/internal/mqtt/engine"
)

func main() {
	mqttAddr := flag.String("mqtt-addr", "127.0.0.1:0", "MQTT TCP listen address")
	httpAddr := flag.String("http-addr", "127.0.0.1:0", "metrics and pprof listen address")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := listenAndRun(ctx, log, *mqttAddr, *httpAddr); err != nil {
		fmt.Fprintln(os.Stderr, "engined:", err)
		os.Exit(1)
	}
}

func listenAndRun(ctx context.Context, log *slog.Logger, mqttAddr, httpAddr string) error {
	mln, err := net.Listen("tcp", mqttAddr)
	if err != nil {
		return fmt.Errorf("mqtt listener: %w", err)
	}
	hln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		mln.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	return run(ctx, log, mln, hln)
}

// run serves the engine on mln and metrics on hln until ctx ends (nil) or
// a listener fails, then closes both and waits for them.
func run(ctx context.Context, log *slog.Logger, mln, hln net.Listener) error {
	var err error
	// Parked after 1 s idle, as corral's default mqtt_park_idle.
	eng := engine.New(engine.Options{Hooks: engine.AllowAll{}, Logger: log, ParkIdle: time.Second})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "engine_dropped_total",
			Help: "Messages the engine dropped for a session, every reason."}, func() float64 {
			var n uint64
			for _, d := range eng.Stats().Drops {
				n += d
			}
			return float64(n)
		}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("POST /debug/gc", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		w.WriteHeader(http.StatusNoContent)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errs := make(chan error, 2)
	go func() { errs <- eng.Serve(mln) }()
	go func() { errs <- hs.Serve(hln) }()
	// Logged at warn so the engine's own info lines stay out of the way.
	log.Warn("listening", "listener", "mqtt-tcp", "addr", mln.Addr().String())
	log.Warn("listening", "listener", "http", "addr", hln.Addr().String())

	pending := cap(errs)
	select {
	case <-ctx.Done():
	case err = <-errs:
		pending--
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(err, hs.Shutdown(sctx), eng.Close(sctx))
	for range pending {
		<-errs // the other Serve calls return once closed
	}
	return err
}
