// Package mqttbench is corral's MQTT load generator: authenticated CONNECT
// rate against a large registry, message throughput (fan-in and
// point-to-point, QoS 0 and 1) side by side with Mosquitto, and memory per
// idle authenticated connection, all against a corral server running as
// its own process (the built binary), so that client and server CPU are
// measured apart.
//
// The MQTT client is a minimal raw-socket MQTT 3.1.1 implementation
// (CONNECT, SUBSCRIBE, PUBLISH QoS 0/1, PUBACK, DISCONNECT) rather than
// paho: paho spends a goroutine set, a token and a channel hop per message
// and several KiB per connection, which on a 2-core machine takes CPU from
// the broker being measured. The same client talks to corral and to
// Mosquitto, so comparisons are like for like.
//
// Every loop is bounded by a count and a deadline, and every address is
// checked to be on 127.0.0.0/8.
package mqttbench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/corral-iot/corral/device"
)

// Creds are MQTT CONNECT credentials.
type Creds struct{ ClientID, Username, Password string }

// DeviceCreds signs a device's CONNECT with the device SDK's algorithm
// (hmacsha256, securemode=3, timestamp now).
func DeviceCreds(pk, dn, secret string) Creds {
	id, user, pass, err := device.Credentials(device.Triple{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}, "hmacsha256", "3", time.Now())
	if err != nil {
		panic(err) // hmacsha256 is always supported
	}
	return Creds{id, user, pass}
}

// Packet types (first byte of the fixed header, flags included).
const (
	typeConnect    = 0x10
	typeConnack    = 0x20
	typePublish    = 0x30
	typePuback     = 0x40
	typeSubscribe  = 0x82
	typeSuback     = 0x90
	typeDisconnect = 0xE0
)

// CheckLoopback refuses any address that is not on 127.0.0.0/8 (or ::1):
// this tool never loads anything but the local machine.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address; this tool only targets 127.0.0.1", addr)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendPacket(b []byte, typ byte, body []byte) []byte {
	b = append(b, typ)
	for n := len(body); ; {
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// EncodeConnect returns an MQTT 3.1.1 CONNECT with clean session.
func EncodeConnect(c Creds, keepalive uint16) []byte {
	var vh []byte
	vh = appendString(vh, "MQTT")
	flags := byte(0x02)
	if c.Username != "" {
		flags |= 0x80
	}
	if c.Password != "" {
		flags |= 0x40
	}
	vh = append(vh, 4, flags, byte(keepalive>>8), byte(keepalive))
	vh = appendString(vh, c.ClientID)
	if c.Username != "" {
		vh = appendString(vh, c.Username)
	}
	if c.Password != "" {
		vh = appendString(vh, c.Password)
	}
	return appendPacket(nil, typeConnect, vh)
}

// EncodePublish returns a PUBLISH; id is ignored at QoS 0.
func EncodePublish(topic string, payload []byte, qos byte, id uint16) []byte {
	body := appendString(make([]byte, 0, 2+len(topic)+2+len(payload)), topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	body = append(body, payload...)
	return appendPacket(nil, typePublish|qos<<1, body)
}

// EncodeSubscribe returns a SUBSCRIBE of one filter.
func EncodeSubscribe(id uint16, filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = appendString(body, filter)
	body = append(body, qos)
	return appendPacket(nil, typeSubscribe, body)
}

var disconnectPacket = []byte{typeDisconnect, 0}

// ConnackError is a refused CONNECT.
type ConnackError byte

func (e ConnackError) Error() string { return "CONNACK return code " + strconv.Itoa(int(e)) }

// Dialer opens MQTT connections from a chosen loopback source address.
type Dialer struct {
	Addr    string // broker address, host:port on 127.0.0.0/8
	Local   net.IP // source address (127.0.0.x), nil for the default
	Timeout time.Duration
}

func (d Dialer) dial() (net.Conn, error) {
	nd := net.Dialer{Timeout: d.Timeout}
	if d.Local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: d.Local}
	}
	return nd.Dial("tcp", d.Addr)
}

// Connect opens a TCP connection and completes a CONNECT/CONNACK; the
// caller owns the connection. The handshake is bounded by d.Timeout.
func (d Dialer) Connect(c Creds, keepalive uint16) (net.Conn, error) {
	return d.ConnectPacket(EncodeConnect(c, keepalive))
}

// ConnectPacket is Connect with a pre-encoded CONNECT.
func (d Dialer) ConnectPacket(connect []byte) (net.Conn, error) {
	conn, err := d.dial()
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(d.Timeout))
	if _, err := conn.Write(connect); err != nil {
		conn.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	if ack[0] != typeConnack || ack[1] != 2 {
		conn.Close()
		return nil, fmt.Errorf("expected CONNACK, got % x", ack)
	}
	if ack[3] != 0 {
		conn.Close()
		return nil, ConnackError(ack[3])
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// Disconnect sends DISCONNECT and, when wait is set, waits (bounded by
// timeout) for the server to close first, so the TIME_WAIT state lands on
// the server side and a long CONNECT run does not exhaust the client's
// ephemeral ports.
func Disconnect(c net.Conn, wait bool, timeout time.Duration) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(disconnectPacket); err == nil && wait {
		var buf [64]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				break
			}
		}
	}
	c.Close()
}

// reader reads MQTT packets from a buffered connection; the body returned
// is valid until the next call.
type reader struct {
	r   *bufio.Reader
	buf []byte
}

var errMalformed = errors.New("malformed remaining length")

func (r *reader) next() (typ byte, body []byte, err error) {
	typ, err = r.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errMalformed
		}
		mul *= 128
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	body = r.buf[:n]
	_, err = io.ReadFull(r.r, body)
	return typ, body, err
}
