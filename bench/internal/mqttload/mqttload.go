// Package mqttload is the benchmarks' minimal MQTT 3.1.1 load client: a
// raw CONNECT with the Alibaba signature (so thousands of connections
// cost the load generator little), and helpers shared by the benchmarks.
package mqttload

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Creds are CONNECT credentials.
type Creds struct{ ClientID, Username, Password string }

// DeviceCreds signs a device's CONNECT the way the Link SDK does.
func DeviceCreds(pk, dn, secret string) Creds {
	ts := "2524608000000"
	id := pk + "." + dn
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("clientId" + id + "deviceName" + dn + "productKey" + pk + "timestamp" + ts))
	return Creds{id + "|securemode=3,signmethod=hmacsha256,timestamp=" + ts + "|", dn + "&" + pk, hex.EncodeToString(m.Sum(nil))}
}

func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func packet(typ byte, body []byte) []byte {
	pkt := []byte{typ}
	for n := len(body); ; {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	return append(pkt, body...)
}

// Connect opens a TCP connection and completes an MQTT 3.1.1 CONNECT; the
// caller owns the connection.
func Connect(addr string, c Creds, keepalive uint16) (net.Conn, error) {
	return ConnectFrom(addr, "", c, keepalive)
}

// RefusedError is a CONNACK with a non-zero return code.
type RefusedError struct{ Code byte }

func (e *RefusedError) Error() string { return fmt.Sprintf("CONNACK return code %d", e.Code) }

// ConnectFrom is Connect from a local IP address (src; "" for any): on
// Linux all of 127/8 is loopback, so one machine can stand for several
// sources.
func ConnectFrom(addr, src string, c Creds, keepalive uint16) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return connectOn(conn, c, keepalive)
}

// ConnectTLS is Connect over TLS with the client configuration conf (the
// handshake is part of it).
func ConnectTLS(addr string, conf *tls.Config, c Creds, keepalive uint16) (net.Conn, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	return connectOn(conn, c, keepalive)
}

// connectOn sends CONNECT on conn and reads the CONNACK; it closes conn on
// failure.
func connectOn(conn net.Conn, c Creds, keepalive uint16) (net.Conn, error) {
	var vh []byte
	vh = append(vh, str("MQTT")...)
	flags := byte(0x02) // clean session
	if c.Username != "" {
		flags |= 0x80
	}
	if c.Password != "" {
		flags |= 0x40
	}
	vh = append(vh, 4, flags, byte(keepalive>>8), byte(keepalive))
	vh = append(vh, str(c.ClientID)...)
	if c.Username != "" {
		vh = append(vh, str(c.Username)...)
	}
	if c.Password != "" {
		vh = append(vh, str(c.Password)...)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(packet(0x10, vh)); err != nil {
		conn.Close()
		return nil, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		conn.Close()
		return nil, err
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		conn.Close()
		return nil, &RefusedError{ack[3]}
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// Disconnect sends DISCONNECT and closes.
func Disconnect(c net.Conn) {
	c.Write([]byte{0xE0, 0})
	c.Close()
}

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
