// Package mqttload is the benchmarks' minimal MQTT 3.1.1 load client: a
// raw CONNECT with the Alibaba signature (so thousands of connections
// cost the load generator little; the packets are internal/mqtttest's),
// and helpers shared by the benchmarks.
package mqttload

import (
	"crypto/tls"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corral-iot/corral/internal/mqtttest"
)

// Creds are CONNECT credentials.
type Creds = mqtttest.Creds

// DeviceCreds signs a device's CONNECT the way the Link SDK does.
func DeviceCreds(pk, dn, secret string) Creds { return mqtttest.DeviceCreds(pk, dn, secret) }

// Connect opens a TCP connection and completes an MQTT 3.1.1 CONNECT with
// a clean session; the caller owns the connection.
func Connect(addr string, c Creds, keepalive uint16) (net.Conn, error) {
	return ConnectFrom(addr, "", c, keepalive)
}

// RefusedError is a CONNACK with a non-zero return code.
type RefusedError = mqtttest.RefusedError

// ConnectFrom is Connect from a local IP address (src; "" for any): on
// Linux all of 127/8 is loopback, so one machine can stand for several
// sources.
func ConnectFrom(addr, src string, c Creds, keepalive uint16) (net.Conn, error) {
	return mqtttest.Dial(addr, src, mqtttest.Connect{Creds: c, KeepAlive: keepalive})
}

// ConnectTLS is Connect over TLS with the client configuration conf (the
// handshake is part of it).
func ConnectTLS(addr string, conf *tls.Config, c Creds, keepalive uint16) (net.Conn, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: mqtttest.Timeout}, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	if err := mqtttest.Handshake(conn, mqtttest.Connect{Creds: c, KeepAlive: keepalive}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Disconnect sends DISCONNECT and closes.
func Disconnect(c net.Conn) { mqtttest.Disconnect(c) }

// KeepAlive sends a PINGREQ on every connection each interval, as an idle
// device within its keepalive does, until stop is called. The PINGRESPs
// are left unread (two bytes each in the socket's buffer).
func KeepAlive(conns []net.Conn, every time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, c := range conns {
					c.Write([]byte{0xC0, 0})
				}
			}
		}
	}()
	return func() { close(done) }
}

// Spread calls f(0) … f(n-1) from the given number of goroutines and
// returns how many calls failed.
func Spread(n, workers int, f func(i int) error) (failed int64) {
	var next, bad atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if f(int(i)) != nil {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return bad.Load()
}

// Percentiles returns the p50 and p99 of durations (sorted in place).
func Percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[len(d)*99/100]
}

// RaiseFileLimit raises this process's open-file limit toward n (a server
// process it starts inherits it) and returns the limit in force: a hard
// limit this process may not raise caps it.
func RaiseFileLimit(n uint64) uint64 {
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if rl.Cur >= n {
		return rl.Cur
	}
	want := rl
	want.Cur, want.Max = n, max(n, rl.Max)
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return n
	}
	rl.Cur = rl.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}
