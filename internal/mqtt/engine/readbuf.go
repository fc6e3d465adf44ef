package engine

import (
	"time"
)

// readBufSize is the read buffer a busy connection borrows: one read
// system call takes every packet the kernel holds for it, up to this.
const readBufSize = 8 << 10

// readBuf is a borrowed buffer and its unread part, buf[r:w].
type readBuf struct {
	buf  [readBufSize]byte
	r, w int
}

// buffered says whether bytes read from the socket wait in the buffer.
func (c *conn) buffered() bool { return c.inFirst() || c.inBuf() }

// inFirst says whether bytes of readFirst's wait c.b[c.br:c.bn] are not yet taken.
func (c *conn) inFirst() bool { return c.br < c.bn }

// inBuf says whether bytes wait in the borrowed buffer. They never do
// while c.b holds some: c.b is read only when nothing is buffered, and
// taken before the buffer is filled.
func (c *conn) inBuf() bool { return c.rb != nil && c.rb.r < c.rb.w }

// releaseBuf gives an empty (or abandoned) buffer back.
func (c *conn) releaseBuf() {
	if c.rb != nil {
		c.srv.readBufs.Put(c.rb)
		c.rb = nil
		c.srv.count.readBufs.Add(-1)
	}
}

// fill reads what the socket has into the buffer (borrowed if none), at
// least one byte or an error. Call only with nothing buffered.
func (c *conn) fill() error {
	if c.rb == nil {
		if c.rb, _ = c.srv.readBufs.Get().(*readBuf); c.rb == nil {
			c.rb = new(readBuf)
		}
		c.srv.count.readBufs.Add(1)
	}
	c.rb.r, c.rb.w = 0, 0
	for {
		n, err := c.nc.Read(c.rb.buf[:])
		if n > 0 {
			c.rb.w = n
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Read and ReadByte let packet.Read read the connection: from the
// buffer while it holds bytes, else by one read of all that is there.
func (c *conn) Read(p []byte) (int, error) {
	if c.inFirst() {
		n := copy(p, c.b[c.br:c.bn])
		c.br += uint8(n)
		return n, nil
	}
	if !c.inBuf() {
		if len(p) >= readBufSize {
			return c.nc.Read(p)
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.rb.buf[c.rb.r:c.rb.w])
	c.rb.r += n
	return n, nil
}

func (c *conn) ReadByte() (byte, error) {
	if c.inFirst() {
		c.br++
		return c.b[c.br-1], nil
	}
	if !c.inBuf() {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	b := c.rb.buf[c.rb.r]
	c.rb.r++
	return b, nil
}

// packetBuffered says whether the buffer holds a whole packet: reading
// it then needs no deadline.
func (c *conn) packetBuffered() bool {
	var b []byte
	switch {
	case c.inFirst():
		b = c.b[c.br:c.bn]
	case c.inBuf():
		b = c.rb.buf[c.rb.r:c.rb.w]
	default:
		return false
	}
	rl := 0
	for i := 1; i < len(b) && i <= 4; i++ {
		rl |= int(b[i]&0x7f) << (7 * (i - 1))
		if b[i]&0x80 == 0 {
			return 1+i+rl <= len(b)
		}
	}
	return false
}

// readFirst reads what comes, up to len(c.b), into c.b without a buffer:
// the wait of an idle connection for its next packet. A small packet
// (PINGREQ, DISCONNECT, an ack) is then read whole by this one call.
func (c *conn) readFirst() error {
	for {
		n, err := c.nc.Read(c.b[:])
		if n > 0 {
			c.br, c.bn = 0, uint8(n)
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// setReadDeadline sets the socket's read deadline (zero: none).
func (c *conn) setReadDeadline(t time.Time) {
	_ = c.nc.SetReadDeadline(t)
	c.rdDeadline = 0
	if !t.IsZero() {
		c.rdDeadline = t.UnixNano()
	}
}

// deadlineLags says whether the read deadline as set is no longer the
// one due, t (the keep-alive one, or a packet's: setPacketDeadline): none
// where one is due or the reverse, later than t, or earlier by more than
// slack (a quarter of the keep alive, or of Options.PacketTimeout).
func (c *conn) deadlineLags(t time.Time, slack time.Duration) bool {
	if t.IsZero() || c.rdDeadline == 0 {
		return t.IsZero() != (c.rdDeadline == 0)
	}
	d := t.UnixNano() - c.rdDeadline
	return d < 0 || d > int64(slack)
}
