package packet

import (
	"bytes"
	"unicode/utf8"
)

// MaxRemainingLength is the largest remaining length a four-byte Variable
// Byte Integer holds (MQTT 5.0 1.5.5, 3.1.1 2.2.3).
const MaxRemainingLength = 268_435_455

func varintLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16_384:
		return 2
	case v < 2_097_152:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, v int) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if v == 0 {
			return dst
		}
	}
}

// decodeVarint decodes a Variable Byte Integer from the front of b. n == 0
// with a nil error means b ends inside the integer. A fifth byte and a
// non-minimal encoding are malformed (MQTT 5.0 [MQTT-1.5.5-1]); refusing the
// latter also keeps decode → encode → decode byte-stable.
func decodeVarint(b []byte) (v, n int, err error) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, nil
		}
		c := b[i]
		v |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if i > 0 && c == 0 {
				return 0, 0, malformed("variable byte integer not minimally encoded")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, malformed("variable byte integer longer than 4 bytes")
}

// cursor reads the fields of one packet's body. Running out of bytes inside
// a body is malformed: the remaining length said the fields were there.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) left() int { return len(c.b) - c.i }

func errShort(what string) error { return malformed("packet ends inside the %s", what) }

func (c *cursor) byte(what string) (byte, error) {
	if c.i >= len(c.b) {
		return 0, errShort(what)
	}
	c.i++
	return c.b[c.i-1], nil
}

func (c *cursor) uint16(what string) (uint16, error) {
	if c.left() < 2 {
		return 0, errShort(what)
	}
	v := uint16(c.b[c.i])<<8 | uint16(c.b[c.i+1])
	c.i += 2
	return v, nil
}

func (c *cursor) uint32(what string) (uint32, error) {
	if c.left() < 4 {
		return 0, errShort(what)
	}
	b := c.b[c.i:]
	c.i += 4
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), nil
}

func (c *cursor) varint(what string) (int, error) {
	v, n, err := decodeVarint(c.b[c.i:])
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errShort(what)
	}
	c.i += n
	return v, nil
}

// binary reads Binary Data. The result aliases the packet's bytes: decoding
// never copies a payload.
func (c *cursor) binary(what string) ([]byte, error) {
	n, err := c.uint16(what)
	if err != nil {
		return nil, err
	}
	if c.left() < int(n) {
		return nil, errShort(what)
	}
	b := c.b[c.i : c.i+int(n) : c.i+int(n)]
	c.i += int(n)
	return b, nil
}

// string reads a UTF-8 Encoded String: ill-formed UTF-8 (surrogates
// included) and U+0000 are malformed (MQTT 5.0 1.5.4, 3.1.1 1.5.3).
func (c *cursor) string(what string) (string, error) {
	b, err := c.binary(what)
	if err != nil {
		return "", err
	}
	if err := checkUTF8(b, what); err != nil {
		return "", err
	}
	return string(b), nil
}

func checkUTF8(b []byte, what string) error {
	if !utf8.Valid(b) {
		return malformed("%s is not valid UTF-8", what)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return malformed("%s contains U+0000", what)
	}
	return nil
}

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(dst []byte, s string) []byte {
	return append(appendUint16(dst, uint16(len(s))), s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	return append(appendUint16(dst, uint16(len(b))), b...)
}

// sizer adds up an encoded length, remembering the first field too long for
// its two-byte length prefix, so that encoders check once at the end.
type sizer struct {
	n   int
	err error
}

func (s *sizer) str(what string, v string) { s.field(what, len(v)) }
func (s *sizer) bin(what string, v []byte) { s.field(what, len(v)) }

func (s *sizer) field(what string, n int) {
	if n > 65535 && s.err == nil {
		s.err = &Error{Code: MalformedPacket, Msg: what + " longer than 65,535 bytes"}
	}
	s.n += 2 + n
}
