package conformance_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// proxy sits between the suite and Mosquitto and changes what passes: a
// broken broker (the defects the engine spec lists, one mode each) shows
// that cases fail, and a repaired one (Mosquitto's declared gaps filled in)
// shows that the gap cases can pass. Packets are decoded and re-encoded
// with the codec.
type proxy struct {
	ln       net.Listener
	upstream string
	mode     mode
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[*conn]bool
	byID  map[string]*conn // the live connection of each client id
}

// mode is what a proxy changes. Hooks run on one connection's goroutines
// and may keep what they need in its conn (under conn.mu).
type mode struct {
	// toClient changes a packet from the broker; nil drops it.
	toClient func(c *conn, p packet.Packet) packet.Packet
	// toServer changes a packet from the client (nil drops it), or refuses
	// it: answer goes to the client (if not nil) and both sides close.
	toServer func(c *conn, p packet.Packet) (fwd packet.Packet, refused bool, answer packet.Packet)
	// strict refuses what the codec refuses: DISCONNECT with the code it
	// names (MQTT 5), then the close.
	strict bool
	// keepAlive closes a client silent for 1.5 × its keep alive.
	keepAlive bool
	// takenOver is written to an MQTT 5 client whose session another
	// connection took over, before its close.
	takenOver packet.Packet
	// v3Disconnect writes a DISCONNECT to a 3.1.1 client the broker closes.
	v3Disconnect bool
	// swallowBad drops what the codec refuses instead of passing it on.
	swallowBad bool
	// maxPacket > 0 (with strict) refuses longer packets with 0x95.
	maxPacket int
}

// conn is one proxied connection.
type conn struct {
	p      *proxy
	cc, sc net.Conn
	v      packet.Version
	ka     uint16
	id     string

	wmu sync.Mutex // client writes

	mu        sync.Mutex
	closing   bool // the proxy or the client ended it
	takenOver bool
	n         int               // PUBLISHes to the client so far
	rm        uint16            // the broker's Receive Maximum
	crm       uint16            // the client's Receive Maximum (0: none)
	out       map[uint16]bool   // QoS 1 and 2 ids written to the client and not acknowledged
	pend      []packet.Packet   // PUBLISHes held for the client's Receive Maximum, in order
	held      map[uint16]bool   // QoS 2 ids the client has not released
	recs      map[uint16]int    // PUBRECs the broker sent per id
	subs      map[uint16][]byte // SUBSCRIBE id → refused positions' codes (0: as the broker says)
}

func startProxy(t *testing.T, upstream string, m mode) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream, mode: m, conns: map[*conn]bool{}, byID: map[string]*conn{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(cc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.cc.Close()
			if c.sc != nil {
				c.sc.Close()
			}
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// readRaw reads one packet's bytes; a remaining length of five bytes is
// malformed.
func readRaw(r *bufio.Reader) ([]byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	b := []byte{first}
	n, shift := 0, 0
	for i := 0; ; i++ {
		if i == 4 {
			return nil, packet.ErrMalformed
		}
		x, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		b = append(b, x)
		n |= int(x&0x7f) << shift
		shift += 7
		if x < 0x80 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(b, body...), nil
}

func (c *conn) write(pk packet.Packet) {
	b, err := pk.Append(nil, c.v)
	if err != nil {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.cc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.cc.Write(b)
}

// end closes both sides; client says the client side ended it.
func (c *conn) end() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.cc.Close()
	c.sc.Close()
}

func (p *proxy) serve(cc net.Conn) {
	c := &conn{p: p, cc: cc, held: map[uint16]bool{}, recs: map[uint16]int{}, subs: map[uint16][]byte{}}
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		if p.byID[c.id] == c {
			delete(p.byID, c.id)
		}
		p.mu.Unlock()
	}()
	cbr := bufio.NewReader(cc)
	raw, err := readRaw(cbr)
	if err != nil {
		cc.Close()
		return
	}
	pk, _, err := packet.Decode(raw, 0, 0)
	connect, ok := pk.(*packet.Connect)
	if err != nil || !ok {
		cc.Close()
		return
	}
	c.v, c.ka, c.id = connect.Version, connect.KeepAlive, connect.ClientID
	c.crm, c.out = connect.Properties.ReceiveMaximum, map[uint16]bool{}
	sc, err := net.Dial("tcp", p.upstream)
	if err != nil {
		cc.Close()
		return
	}
	c.sc = sc
	p.mu.Lock()
	if old := p.byID[c.id]; old != nil && c.id != "" {
		old.mu.Lock()
		old.takenOver = true
		old.mu.Unlock()
	}
	p.byID[c.id] = c
	p.mu.Unlock()
	sc.Write(raw)

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c.fromServer()
	}()
	c.fromClient(cbr)
}

func (c *conn) fromClient(r *bufio.Reader) {
	m := c.p.mode
	for {
		if m.keepAlive && c.ka > 0 {
			c.cc.SetReadDeadline(time.Now().Add(time.Duration(c.ka) * 1500 * time.Millisecond))
		}
		raw, err := readRaw(r)
		if errors.Is(err, packet.ErrMalformed) && (m.strict || m.swallowBad) {
			if m.strict {
				c.refuse(&packet.Disconnect{ReasonCode: packet.MalformedPacket})
				return
			}
			io.Copy(io.Discard, r) // swallowed: the client is left waiting
			c.end()
			return
		}
		if err != nil {
			// Silent past the keep alive, or gone: the broker sees an
			// abrupt close (and publishes the will).
			c.end()
			return
		}
		if packet.Type(raw[0]>>4) == packet.TypeDisconnect {
			c.mu.Lock()
			c.closing = true
			c.mu.Unlock()
		}
		if m.strict || m.swallowBad || m.toServer != nil {
			pk, _, err := packet.Decode(raw, c.v, m.maxPacket)
			if err != nil && m.strict {
				c.refuse(&packet.Disconnect{ReasonCode: packet.Reason(err), Properties: packet.Properties{ReasonString: err.Error()}})
				return
			}
			if err != nil && m.swallowBad {
				continue
			}
			if err == nil && m.toServer != nil {
				fwd, refused, answer := m.toServer(c, pk)
				if refused {
					c.refuse(answer)
					return
				}
				if fwd == nil {
					continue
				}
				if raw, err = fwd.Append(nil, c.v); err != nil {
					c.end()
					return
				}
			}
		}
		c.sc.Write(raw)
	}
}

// refuse answers the client (MQTT 5 only) and closes both sides.
func (c *conn) refuse(answer packet.Packet) {
	if answer != nil && c.v == packet.V5 {
		c.write(answer)
	}
	c.end()
}

func (c *conn) fromServer() {
	m := c.p.mode
	r := bufio.NewReader(c.sc)
	for {
		pk, err := packet.Read(r, c.v, 0)
		if err != nil {
			c.mu.Lock()
			closing, takenOver := c.closing, c.takenOver
			c.mu.Unlock()
			if !closing {
				switch {
				case takenOver && m.takenOver != nil && c.v == packet.V5:
					c.write(m.takenOver)
				case m.v3Disconnect && c.v == packet.V311:
					c.wmu.Lock()
					c.cc.Write([]byte{0xe0, 0})
					c.wmu.Unlock()
				}
			}
			c.end()
			return
		}
		if ca, ok := pk.(*packet.Connack); ok {
			c.mu.Lock()
			c.rm = ca.Properties.ReceiveMaximum
			c.mu.Unlock()
		}
		if m.toClient != nil {
			if pk = m.toClient(c, pk); pk == nil {
				continue
			}
		}
		c.write(pk)
	}
}

// FuzzReadRaw: the proxy's framing takes exactly the bytes of the packet
// the codec decodes, and never more than it was given.
func FuzzReadRaw(f *testing.F) {
	f.Add([]byte{0xc0, 0x00})
	f.Add([]byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'})
	f.Add([]byte{0xc0, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add([]byte{0x30, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := readRaw(bufio.NewReader(bytes.NewReader(b)))
		if err == nil && (len(raw) > len(b) || !bytes.Equal(raw, b[:len(raw)])) {
			t.Fatalf("framed %x out of %x", raw, b)
		}
		if _, n, derr := packet.Decode(b, packet.V5, 0); derr == nil && (err != nil || len(raw) != n) {
			t.Fatalf("codec took %d bytes, framing %d (%v)", n, len(raw), err)
		}
	})
}
