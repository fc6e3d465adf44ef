package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// mqisdp is how an MQTT 3.1 CONNECT's variable header opens: protocol name
// "MQIsdp", protocol level 3.
var mqisdp = []byte{0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3}

// readConnect reads the first packet of a connection. With
// Options.AcceptMQTT31, a CONNECT of MQTT 3.1 (protocol "MQIsdp", level 3)
// is read as the 3.1.1 one it is on the wire but for its protocol name and
// level; the session is then served as 3.1.1.
func (c *conn) readConnect() (packet.Packet, error) {
	s := c.srv
	if !s.opts.AcceptMQTT31 {
		return packet.Read(c, packet.V5, s.opts.MaxPacketSize)
	}
	first, err := c.ReadByte()
	if err != nil {
		return nil, err
	}
	rl, n := 0, 0
	hdr := []byte{first}
	for {
		b, err := c.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("mqtt engine: reading CONNECT: %w", io.ErrUnexpectedEOF)
		}
		hdr = append(hdr, b)
		rl |= int(b&0x7f) << (7 * n)
		n++
		if b&0x80 == 0 {
			break
		}
		if n == 4 {
			return nil, packet.ErrMalformed
		}
	}
	if 1+n+rl > s.opts.MaxPacketSize {
		return nil, &packet.Error{Code: packet.PacketTooLarge, Msg: "CONNECT above the maximum packet size"}
	}
	body := make([]byte, rl)
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, fmt.Errorf("mqtt engine: reading CONNECT: %w", err)
	}
	if first>>4 == byte(packet.TypeConnect) && bytes.HasPrefix(body, mqisdp) {
		body = append([]byte{0, 4, 'M', 'Q', 'T', 'T', byte(packet.V311)}, body[len(mqisdp):]...)
		hdr = appendHeader(first, len(body))
	}
	p, _, err := packet.Decode(append(hdr, body...), packet.V5, 0)
	if errors.Is(err, packet.ErrIncomplete) {
		return nil, packet.ErrMalformed
	}
	return p, err
}

// appendHeader is a fixed header: the first byte and the remaining length.
func appendHeader(first byte, rl int) []byte {
	h := []byte{first}
	for {
		b := byte(rl & 0x7f)
		rl >>= 7
		if rl > 0 {
			b |= 0x80
		}
		h = append(h, b)
		if rl == 0 {
			return h
		}
	}
}
