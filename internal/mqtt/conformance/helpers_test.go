package conformance

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// The helpers that decide a case's verdict, each shown to refuse what it
// must refuse, on a pipe whose far end plays the broker.

// pipe returns a client speaking v whose far end, playing the broker,
// writes pks and then, if asked, closes.
func pipe(t *testing.T, v packet.Version, pks []packet.Packet, closeAfter bool) *client {
	near, far := net.Pipe()
	done := make(chan struct{})
	t.Cleanup(func() {
		near.Close()
		far.Close()
		<-done
	})
	go func() {
		defer close(done)
		for _, p := range pks {
			b, _ := p.Append(nil, v)
			if _, err := far.Write(b); err != nil {
				return
			}
		}
		if closeAfter {
			far.Close()
		}
	}()
	return &client{c: &ct{T: t}, nc: near, br: bufio.NewReader(near), v: v}
}

func TestHelperVerdicts(t *testing.T) {
	disc := func(code packet.ReasonCode) packet.Packet { return &packet.Disconnect{ReasonCode: code} }
	pub := &packet.Publish{Topic: "a", Payload: []byte("x")}
	for _, tc := range []struct {
		name   string
		v      packet.Version
		sends  []packet.Packet
		close  bool
		check  func(*client) error
		wantOK bool
	}{
		{"closed: closed", packet.V311, nil, true, func(c *client) error { return closedErr(c, time.Second) }, true},
		{"closed: a DISCONNECT first", packet.V311, []packet.Packet{disc(0)}, true, func(c *client) error { return closedErr(c, time.Second) }, false},
		{"closed: still open", packet.V311, nil, false, func(c *client) error { return closedErr(c, 50*time.Millisecond) }, false},
		{"disconnected: right code", packet.V5, []packet.Packet{pub, disc(packet.PacketTooLarge)}, true, func(c *client) error { return disconnectedErr(c, packet.PacketTooLarge) }, true},
		{"disconnected: wrong code", packet.V5, []packet.Packet{disc(packet.ProtocolError)}, true, func(c *client) error { return disconnectedErr(c, packet.PacketTooLarge) }, false},
		{"disconnected: closed without", packet.V5, nil, true, func(c *client) error { return disconnectedErr(c, packet.PacketTooLarge) }, false},
		{"disconnected: left open after", packet.V5, []packet.Packet{disc(packet.PacketTooLarge), &packet.Pingresp{}}, false, func(c *client) error { return disconnectedErr(c, packet.PacketTooLarge) }, false},
		{"silent: silent", packet.V5, nil, false, func(c *client) error { return silentErr(c, 50*time.Millisecond) }, true},
		{"silent: a packet", packet.V5, []packet.Packet{&packet.Pingresp{}}, false, func(c *client) error { return silentErr(c, time.Second) }, false},
		{"silent: closed", packet.V5, nil, true, func(c *client) error { return silentErr(c, time.Second) }, false},
		{"malformed: DISCONNECT 0x81", packet.V5, []packet.Packet{disc(packet.MalformedPacket)}, true, closedAfterDisconnectErr, true},
		{"malformed: closed", packet.V5, nil, true, closedAfterDisconnectErr, true},
		{"malformed: DISCONNECT 0x80", packet.V5, []packet.Packet{disc(packet.UnspecifiedError)}, true, closedAfterDisconnectErr, false},
		{"malformed: answered", packet.V5, []packet.Packet{&packet.Puback{Ack: packet.Ack{PacketID: 1}}}, true, closedAfterDisconnectErr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check(pipe(t, tc.v, tc.sends, tc.close))
			if (err == nil) != tc.wantOK {
				t.Fatalf("verdict %v, want ok %v", err, tc.wantOK)
			}
		})
	}
}
