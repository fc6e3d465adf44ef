package packet

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Type is the MQTT control packet type, the high nibble of the first byte.
type Type byte

const (
	TypeConnect     Type = 1
	TypeConnack     Type = 2
	TypePublish     Type = 3
	TypePuback      Type = 4
	TypePubrec      Type = 5
	TypePubrel      Type = 6
	TypePubcomp     Type = 7
	TypeSubscribe   Type = 8
	TypeSuback      Type = 9
	TypeUnsubscribe Type = 10
	TypeUnsuback    Type = 11
	TypePingreq     Type = 12
	TypePingresp    Type = 13
	TypeDisconnect  Type = 14
	TypeAuth        Type = 15 // MQTT 5 only; reserved in 3.1.1
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// Version is the protocol level of CONNECT: the version a connection speaks.
type Version byte

const (
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

// Packet is one MQTT control packet.
type Packet interface {
	Type() Type
	// Append appends the encoded packet to dst. Fields the version has no
	// place for (MQTT 5 properties and reason codes under 3.1.1) are left
	// out, so that one message can be encoded for subscribers of either.
	Append(dst []byte, v Version) ([]byte, error)
}

// checkFirstByte refuses a reserved type, or flags other than those the type
// requires (MQTT 5.0 2.1.3, 3.1.1 2.2.2), before the body has arrived.
func checkFirstByte(b byte, v Version) error {
	t, flags := Type(b>>4), b&0x0f
	switch t {
	case 0:
		return malformed("reserved packet type 0")
	case TypePublish:
		if flags&0x06 == 0x06 {
			return malformed("PUBLISH with QoS 3")
		}
		return nil
	case TypePubrel, TypeSubscribe, TypeUnsubscribe:
		if flags != 0x02 {
			return malformed("%s flags 0x%X, must be 0x2", t, flags)
		}
		return nil
	case TypeAuth:
		if v != V5 {
			return malformed("AUTH is reserved in MQTT 3.1.1")
		}
	}
	if flags != 0 {
		return malformed("%s flags 0x%X, must be 0", t, flags)
	}
	return nil
}

// Decode decodes the packet at the front of b for a connection speaking v
// (CONNECT decodes whatever v is: it brings its own version). It returns the
// packet and the bytes it took, or ErrIncomplete when b ends inside it.
// maxSize > 0 refuses a packet longer than that with PacketTooLarge as soon
// as its fixed header is in. Binary fields alias b.
func Decode(b []byte, v Version, maxSize int) (Packet, int, error) {
	if len(b) == 0 {
		return nil, 0, ErrIncomplete
	}
	if err := checkFirstByte(b[0], v); err != nil {
		return nil, 0, err
	}
	rl, n, err := decodeVarint(b[1:])
	if err != nil {
		return nil, 0, err
	}
	if n == 0 {
		return nil, 0, ErrIncomplete
	}
	total := 1 + n + rl
	if maxSize > 0 && total > maxSize {
		return nil, 0, tooLarge(total, maxSize)
	}
	if len(b) < total {
		return nil, 0, ErrIncomplete
	}
	p, err := decodeBody(b[0], b[1+n:total:total], v, nil)
	return p, total, err
}

func tooLarge(total, maxSize int) error {
	return &Error{Code: PacketTooLarge, Msg: fmt.Sprintf("packet of %d bytes over the maximum of %d", total, maxSize)}
}

// Read reads one packet from r: the fixed header byte by byte, then exactly
// the remaining length into a buffer of that size, which the packet keeps
// (binary fields alias it). A header claiming more than arrives costs no
// more memory than what arrived: a long body is read in growing steps.
// io.EOF before the first byte is returned as is (the peer closed).
// Pass an io.ByteReader (a bufio.Reader) to avoid an allocation per header.
func Read(r io.Reader, v Version, maxSize int) (Packet, error) {
	return ReadInto(r, v, maxSize, nil)
}

// ReadInto is Read decoding a PUBLISH into pub, when not nil, and
// returning pub (its earlier content gone) rather than a new one: a
// reader that is done with each packet before the next allocates no
// PUBLISH a packet. Other packets are Read's.
func ReadInto(r io.Reader, v Version, maxSize int, pub *Publish) (Packet, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &oneByteReader{r: r}
	}
	first, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	if err := checkFirstByte(first, v); err != nil {
		return nil, err
	}
	rl, n := 0, 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil, unexpected(err)
		}
		rl |= int(c&0x7f) << (7 * n)
		n++
		if c&0x80 == 0 {
			if n > 1 && c == 0 {
				return nil, malformed("variable byte integer not minimally encoded")
			}
			break
		}
		if n == 4 {
			return nil, malformed("variable byte integer longer than 4 bytes")
		}
	}
	if maxSize > 0 && 1+n+rl > maxSize {
		return nil, tooLarge(1+n+rl, maxSize)
	}
	body, err := readBody(r, rl)
	if err != nil {
		return nil, unexpected(err)
	}
	return decodeBody(first, body, v, pub)
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("mqtt packet: connection closed inside a packet: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("mqtt packet: %w", err)
}

// readStep bounds what a claimed length can make Read allocate before the
// bytes arrive.
const readStep = 64 << 10

func readBody(r io.Reader, n int) ([]byte, error) {
	if n <= readStep {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b := make([]byte, 0, readStep)
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(len(b), n-len(b)))
		}
		m, err := io.ReadFull(r, b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

type oneByteReader struct {
	r   io.Reader
	buf [1]byte
}

func (o *oneByteReader) ReadByte() (byte, error) {
	_, err := io.ReadFull(o.r, o.buf[:])
	return o.buf[0], err
}

func decodeBody(first byte, body []byte, v Version, pub *Publish) (Packet, error) {
	t, flags := Type(first>>4), first&0x0f
	if t != TypeConnect && v != V311 && v != V5 {
		return nil, protocolErr("%s before CONNECT", t)
	}
	c := &cursor{b: body}
	var (
		p   Packet
		err error
	)
	switch t {
	case TypeConnect:
		p, err = decodeConnect(c)
	case TypeConnack:
		p, err = decodeConnack(c, v)
	case TypePublish:
		if pub == nil {
			p, err = decodePublish(flags, c, v)
		} else if err = pub.decode(flags, c, v); err == nil {
			p = pub
		}
	case TypePuback:
		var a Puback
		err = a.decode(c, v, TypePuback)
		p = &a
	case TypePubrec:
		var a Pubrec
		err = a.decode(c, v, TypePubrec)
		p = &a
	case TypePubrel:
		var a Pubrel
		err = a.decode(c, v, TypePubrel)
		p = &a
	case TypePubcomp:
		var a Pubcomp
		err = a.decode(c, v, TypePubcomp)
		p = &a
	case TypeSubscribe:
		p, err = decodeSubscribe(c, v)
	case TypeSuback:
		p, err = decodeSuback(c, v)
	case TypeUnsubscribe:
		p, err = decodeUnsubscribe(c, v)
	case TypeUnsuback:
		p, err = decodeUnsuback(c, v)
	case TypePingreq:
		p = &Pingreq{}
	case TypePingresp:
		p = &Pingresp{}
	case TypeDisconnect:
		p, err = decodeDisconnect(c, v)
	case TypeAuth:
		p, err = decodeAuth(c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	if c.left() != 0 {
		return nil, fmt.Errorf("%s: %w", t, malformed("%d bytes after the last field", c.left()))
	}
	return p, nil
}

// appendHeader appends the fixed header of a packet whose body is rl bytes.
func appendHeader(dst []byte, first byte, rl int) ([]byte, error) {
	if rl > MaxRemainingLength {
		return dst, &Error{Code: PacketTooLarge, Msg: fmt.Sprintf("remaining length %d over the maximum %d", rl, MaxRemainingLength)}
	}
	return appendVarint(append(dst, first), rl), nil
}
