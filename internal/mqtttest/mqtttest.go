// Package mqtttest builds and reads raw MQTT packets for tests and
// benchmarks: the CONNECTs a client library would not send (wills with odd
// flags, MQTT 5 without properties, thousands of connections at little
// cost to the load generator) and the Alibaba-signed device credentials,
// computed here independently of corral's own signing code.
package mqtttest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Str encodes an MQTT UTF-8 string: a two-byte length, then the bytes.
func Str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// Packet frames a body with its fixed header: the type-and-flags byte and
// the variable-length remaining length.
func Packet(typ byte, body []byte) []byte {
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

// Creds are CONNECT credentials.
type Creds struct{ ClientID, Username, Password string }

// SignTimestamp is the fixed timestamp the Link SDKs sign (2050-01-01).
const SignTimestamp = "2524608000000"

// DeviceCreds signs a device's CONNECT as the Link SDK does:
// HMAC-SHA256 over clientId{id}deviceName{dn}productKey{pk}timestamp{ts},
// securemode=3, with extra clientId flags (e.g. "_ss=1,gw=1") appended.
func DeviceCreds(pk, dn, secret string, flags ...string) Creds {
	id := pk + "." + dn
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("clientId" + id + "deviceName" + dn + "productKey" + pk + "timestamp" + SignTimestamp))
	cid := id + "|securemode=3,signmethod=hmacsha256,timestamp=" + SignTimestamp
	for _, f := range flags {
		cid += "," + f
	}
	return Creds{cid + "|", dn + "&" + pk, hex.EncodeToString(m.Sum(nil))}
}

// Will is a CONNECT's last will.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Connect describes a CONNECT packet.
type Connect struct {
	Level     byte // protocol level: 4 (3.1.1, the default) or 5
	Creds          // an empty Username or Password is left out
	KeepAlive uint16
	// Persistent asks for a persistent session (clean session 0).
	Persistent bool
	Will       *Will
}

// Bytes encodes the CONNECT. MQTT 5 packets carry no properties.
func (c Connect) Bytes() []byte {
	level := c.Level
	if level == 0 {
		level = 4
	}
	var flags byte
	if !c.Persistent {
		flags |= 0x02
	}
	if c.Username != "" {
		flags |= 0x80
	}
	if c.Password != "" {
		flags |= 0x40
	}
	if w := c.Will; w != nil {
		flags |= 0x04 | w.QoS<<3
		if w.Retain {
			flags |= 0x20
		}
	}
	vh := append(Str("MQTT"), level, flags, byte(c.KeepAlive>>8), byte(c.KeepAlive))
	if level == 5 {
		vh = append(vh, 0) // no properties
	}
	vh = append(vh, Str(c.ClientID)...)
	if w := c.Will; w != nil {
		if level == 5 {
			vh = append(vh, 0) // no will properties
		}
		vh = append(vh, Str(w.Topic)...)
		vh = append(vh, Str(string(w.Payload))...)
	}
	if c.Username != "" {
		vh = append(vh, Str(c.Username)...)
	}
	if c.Password != "" {
		vh = append(vh, Str(c.Password)...)
	}
	return Packet(0x10, vh)
}

// RefusedError is a CONNACK with a non-zero return code.
type RefusedError struct{ Code byte }

func (e *RefusedError) Error() string { return fmt.Sprintf("CONNACK return code %#x", e.Code) }

// Timeout bounds each step of Dial and ReadPacket.
const Timeout = 10 * time.Second

// Dial opens a TCP connection to addr from the local address src ("" for
// any; on Linux all of 127/8 is loopback, so one machine can stand for
// several sources), sends the CONNECT and waits for an accepting CONNACK
// (a *RefusedError otherwise). The caller owns the connection.
func Dial(addr, src string, c Connect) (net.Conn, error) {
	d := net.Dialer{Timeout: Timeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := Handshake(conn, c); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Handshake sends the CONNECT on an open connection and waits for an
// accepting CONNACK (a *RefusedError otherwise).
func Handshake(conn net.Conn, c Connect) error {
	conn.SetDeadline(time.Now().Add(Timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(c.Bytes()); err != nil {
		return err
	}
	typ, body, err := ReadPacket(conn)
	if err != nil {
		return fmt.Errorf("reading CONNACK: %w", err)
	}
	if typ != 0x20 || len(body) < 2 {
		return fmt.Errorf("expected CONNACK, got type %#x body %x", typ, body)
	}
	if body[1] != 0 {
		return &RefusedError{body[1]}
	}
	return nil
}

// ErrTooLarge is a packet over 1 MiB: the tests never expect one.
var ErrTooLarge = errors.New("mqtttest: packet over 1 MiB")

// ReadPacket reads one packet: its first byte (type and flags) and body.
// It sets no deadline; callers that wait for a packet set one. c is
// usually a net.Conn; a load generator that reads many packets gives a
// bufio.Reader over one, so that a packet costs no read calls of its own.
func ReadPacket(c io.Reader) (byte, []byte, error) {
	var h [1]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return 0, nil, err
		}
		n += int(b[0]&0x7f) * mul
		if b[0]&0x80 == 0 {
			break
		}
		if mul *= 128; i == 3 {
			return 0, nil, errors.New("mqtttest: malformed remaining length")
		}
	}
	if n > 1<<20 {
		return 0, nil, ErrTooLarge
	}
	body := make([]byte, n)
	_, err := io.ReadFull(c, body)
	return h[0], body, err
}

// Disconnect sends DISCONNECT and closes.
func Disconnect(c net.Conn) {
	c.Write([]byte{0xE0, 0})
	c.Close()
}

// SubDeviceParams are the signed params a gateway sends for a sub-device
// in thing.topo.add and combine.login, as the Link SDK builds them:
// HMAC-SHA256 over clientId{pk}.{dn}deviceName{dn}productKey{pk}timestamp{ms}.
func SubDeviceParams(pk, dn, secret string) map[string]any {
	ts := fmt.Sprint(time.Now().UnixMilli())
	cid := pk + "." + dn
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("clientId" + cid + "deviceName" + dn + "productKey" + pk + "timestamp" + ts))
	return map[string]any{"productKey": pk, "deviceName": dn, "clientId": cid, "timestamp": ts,
		"signmethod": "hmacSha256", "sign": hex.EncodeToString(m.Sum(nil))}
}
