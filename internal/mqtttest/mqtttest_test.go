package mqtttest

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestConnectBytes pins the encoding of a 3.1.1 CONNECT with a will.
func TestConnectBytes(t *testing.T) {
	got := Connect{Creds: Creds{"c", "u", "p"}, KeepAlive: 60, Will: &Will{Topic: "t", Payload: []byte("w"), QoS: 1, Retain: true}}.Bytes()
	want := []byte{0x10, 25,
		0, 4, 'M', 'Q', 'T', 'T', 4, 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02, 0, 60,
		0, 1, 'c', 0, 1, 't', 0, 1, 'w', 0, 1, 'u', 0, 1, 'p'}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

// TestReadPacketRoundTrip reads back what Packet framed, across the
// remaining-length sizes.
func TestReadPacketRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 200000} {
		a, b := net.Pipe()
		body := bytes.Repeat([]byte{7}, n)
		go func() { a.Write(Packet(0x30, body)); a.Close() }()
		typ, got, err := ReadPacket(b)
		if err != nil || typ != 0x30 || !bytes.Equal(got, body) {
			t.Fatalf("n=%d: type %#x, %d bytes, err %v", n, typ, len(got), err)
		}
		b.Close()
	}
}

// TestDialMosquitto checks the encodings against a real peer: Mosquitto
// at 127.0.0.1:1883 (started by .ci/run) accepts every shape Dial sends.
func TestDialMosquitto(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second); err != nil {
		t.Skip("no Mosquitto at 127.0.0.1:1883 (.ci/run starts it)")
	} else {
		c.Close()
	}
	will := &Will{Topic: "mqtttest/will", Payload: []byte("bye"), QoS: 1}
	for _, c := range []Connect{
		{Creds: Creds{ClientID: "mqtttest-a"}, KeepAlive: 30},
		{Level: 5, Creds: Creds{ClientID: "mqtttest-b"}, KeepAlive: 30, Will: will},
		{Creds: Creds{ClientID: "mqtttest-c"}, KeepAlive: 30, Persistent: true, Will: will},
	} {
		conn, err := Dial("127.0.0.1:1883", "", c)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		Disconnect(conn)
	}
}
