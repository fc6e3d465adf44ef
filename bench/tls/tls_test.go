// Package tls benchmarks corral's device-facing TLS (issue 10), with corral
// running as its own process: full handshakes per second on the MQTT over
// TLS listener with static RSA key exchange (what stock Link SDK devices
// can do) beside ECDHE with the ECDSA certificate (modern clients), in the
// same run and interleaved; and a reconnect storm of 10,000 devices doing
// TLS plus an authenticated CONNECT, in each mode.
package tlsbench

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/knob"
	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/bench/internal/serverproc"
)

// mode is one kind of TLS client.
type mode struct {
	name string
	conf func() *tls.Config
}

// modes: the Link SDK's (RSA key exchange, RSA certificate), ECDHE-ECDSA
// over TLS 1.2 (same protocol version, forward secret), and Go's default
// client (TLS 1.3). No client keeps a session cache, so every handshake is
// a full one. The clients check the key type of the leaf, not the chain:
// serverproc's data directory (and CA) is its own, and what is measured is
// the server's side.
var modes = []mode{
	{"rsa-kx", func() *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, VerifyConnection: leafIs[*rsa.PublicKey]}
	}},
	{"ecdhe-ecdsa-tls12", func() *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, CurvePreferences: []tls.CurveID{tls.X25519},
			VerifyConnection: leafIs[*ecdsa.PublicKey]}
	}},
	{"modern-tls13", func() *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, VerifyConnection: leafIs[*ecdsa.PublicKey]}
	}},
}

func leafIs[K any](cs tls.ConnectionState) error {
	if _, ok := cs.PeerCertificates[0].PublicKey.(K); !ok {
		return fmt.Errorf("leaf key %T", cs.PeerCertificates[0].PublicKey)
	}
	return nil
}

// start runs corral with the MQTT over TLS listener on and returns its address.
func start(b *testing.B) (*serverproc.Proc, string) {
	b.Helper()
	// All load comes from 127.0.0.1: the cap on connections an address
	// holds before CONNECT (64) would refuse handshakes whose closing the
	// server has not yet seen, and that admission is not what is measured.
	proc := serverproc.Start(b, serverproc.Build(b), "--mqtts-addr", "127.0.0.1:0", "--mqtt-max-pending-per-ip", "0")
	addr := proc.Addrs["mqtt-tls"]
	if addr == "" {
		b.Fatalf("no MQTT over TLS listener in %v", proc.Addrs)
	}
	return proc, addr
}

// order returns the modes in the order of round i: rotating, so that no
// mode is always measured first (or last) while the machine warms or other
// work comes and goes.
func order(i int) []mode {
	out := make([]mode, len(modes))
	for j := range modes {
		out[j] = modes[(i+j)%len(modes)]
	}
	return out
}

// BenchmarkHandshake: full TLS handshakes per second on the MQTT over TLS
// listener, CORRAL_BENCH_C (32) at a time, CORRAL_BENCH_N (2,000) per mode
// and round, the modes interleaved; each connection is closed after its
// handshake. Reports each mode's median rate over CORRAL_BENCH_ROUNDS (5)
// rounds and rsa-kx's rate as a share of each ECDHE mode's.
func BenchmarkHandshake(b *testing.B) {
	n := knob.Int("CORRAL_BENCH_N", 2000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	rounds := knob.Int("CORRAL_BENCH_ROUNDS", 5)
	_, addr := start(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rates := map[string][]float64{}
		for r := 0; r < rounds; r++ {
			for _, m := range order(r) {
				var first firstError
				start := time.Now()
				failed := mqttload.Spread(n, c, func(int) error { return first.keep(handshake(addr, m.conf())) })
				if failed > 0 {
					b.Fatalf("%s: %d of %d handshakes failed, the first: %v", m.name, failed, n, first.get())
				}
				rates[m.name] = append(rates[m.name], float64(n)/time.Since(start).Seconds())
			}
		}
		report(b, rates, "handshakes/s")
	}
}

func handshake(addr string, conf *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	return conn.Close()
}

// BenchmarkReconnectStorm: CORRAL_BENCH_DEVICES (10,000) devices connect
// over TLS and CONNECT with their signature, CORRAL_BENCH_C (32) at a time,
// and stay connected until all are in: the time it takes, in each mode,
// the modes interleaved over CORRAL_BENCH_ROUNDS (3) rounds (medians
// reported). All connections are closed between storms.
func BenchmarkReconnectStorm(b *testing.B) {
	size := knob.Int("CORRAL_BENCH_DEVICES", 10000)
	c := knob.Int("CORRAL_BENCH_C", 32)
	rounds := knob.Int("CORRAL_BENCH_ROUNDS", 3)
	proc, addr := start(b)
	s := proc.Server
	p := s.CreateProduct("storm", nil)
	type dev struct{ ProductKey, DeviceName, DeviceSecret string }
	var devs []dev
	for len(devs) < size {
		var batch struct{ Devices []dev }
		s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"count": min(10000, size-len(devs))}, 201).JSON(b, &batch)
		devs = append(devs, batch.Devices...)
	}
	creds := make([]mqttload.Creds, len(devs))
	for i, d := range devs {
		creds[i] = mqttload.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		secs := map[string][]float64{}
		for r := 0; r < rounds; r++ {
			for _, m := range order(r) {
				conns := make([]net.Conn, len(creds))
				var first firstError
				start := time.Now()
				failed := mqttload.Spread(len(creds), c, func(j int) error {
					conn, err := mqttload.ConnectTLS(addr, m.conf(), creds[j], 60)
					conns[j] = conn
					return first.keep(err)
				})
				el := time.Since(start)
				for _, conn := range conns {
					if conn != nil {
						mqttload.Disconnect(conn)
					}
				}
				if failed > 0 {
					b.Fatalf("%s: %d of %d devices failed to connect, the first: %v", m.name, failed, len(creds), first.get())
				}
				secs[m.name] = append(secs[m.name], el.Seconds())
				// Let the server end the sessions before the next storm.
				time.Sleep(2 * time.Second)
			}
		}
		report(b, secs, "s")
	}
}

// report reports each mode's median and rsa-kx's median relative to each
// of the others (for a rate, rsa-kx's share of it; for a duration, how
// many times as long rsa-kx takes).
func report(b *testing.B, vals map[string][]float64, unit string) {
	med := map[string]float64{}
	for _, m := range modes {
		med[m.name] = median(vals[m.name])
		b.ReportMetric(med[m.name], m.name+"-"+unit)
	}
	for _, m := range modes[1:] {
		b.ReportMetric(med["rsa-kx"]/med[m.name], "rsa-kx/"+m.name)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// firstError keeps the first error of concurrent calls.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) keep(err error) error {
	if err != nil {
		f.mu.Lock()
		if f.err == nil {
			f.err = err
		}
		f.mu.Unlock()
	}
	return err
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
