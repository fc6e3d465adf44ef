package conformance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// ct is one running case: its test, its target, and the names unique to it.
type ct struct {
	*testing.T
	tg     *Target
	prefix string // topics of this case start with it
	ids    string // client ids of this case start with it
}

// topic names a topic of this case.
func (c *ct) topic(s string) string { return c.prefix + "/" + s }

// id names a client of this case.
func (c *ct) id(role string) string { return c.ids + role }

// child is the context of a subtest of the case, with names of its own.
func (c *ct) child(t *testing.T, tag string) *ct {
	return &ct{T: t, tg: c.tg, prefix: c.prefix + "/" + tag, ids: c.ids + tag + "-"}
}

// client is one raw MQTT connection of a case.
type client struct {
	c      *ct
	nc     net.Conn
	br     *bufio.Reader
	v      packet.Version
	nextID uint16
	// maxSize bounds packets read (the client's Maximum Packet Size).
	maxSize int
}

// dial opens a connection speaking v; it is closed when the case ends.
func (c *ct) dial(v packet.Version) *client {
	c.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var nc net.Conn
	var err error
	if c.tg.Dial != nil {
		nc, err = c.tg.Dial(ctx)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", c.tg.Addr)
	}
	if err != nil {
		c.Fatalf("dial %s: %v", c.tg.Name, err)
	}
	c.Cleanup(func() { nc.Close() })
	return &client{c: c, nc: nc, br: bufio.NewReader(nc), v: v}
}

// connect dials and sends cp (its version is the connection's), filling in
// the target's credentials, and returns the CONNACK, whatever its code.
func (c *ct) connect(cp *packet.Connect) (*client, *packet.Connack) {
	c.Helper()
	cl := c.dial(cp.Version)
	if c.tg.Credentials != nil && !cp.UsernameFlag {
		cp.Username, cp.Password = c.tg.Credentials(cp.ClientID)
		cp.UsernameFlag, cp.PasswordFlag = true, cp.Password != nil
	}
	cl.send(cp)
	return cl, expect[*packet.Connack](cl)
}

// connectOK is connect that requires a successful CONNACK.
func (c *ct) connectOK(cp *packet.Connect) *client {
	c.Helper()
	cl, ack := c.connect(cp)
	if ack.ReasonCode != packet.Success {
		c.Fatalf("CONNACK %#x for %q, want success", byte(ack.ReasonCode), cp.ClientID)
	}
	return cl
}

// v3 connects a 3.1.1 client with a clean session.
func (c *ct) v3(role string) *client {
	c.Helper()
	return c.connectOK(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 30, ClientID: c.id(role)})
}

// v5 connects an MQTT 5 client with a clean start and no session expiry.
func (c *ct) v5(role string) *client {
	c.Helper()
	return c.connectOK(&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: c.id(role)})
}

// endSession removes the persistent session of a client id: a clean
// connection that ends at once. Call it in Cleanup.
func (c *ct) endSession(v packet.Version, id string) {
	cl, ack := c.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 30, ClientID: id})
	if ack.ReasonCode == packet.Success {
		cl.send(&packet.Disconnect{})
	}
	cl.nc.Close()
}

// sync waits until the server has handled what this connection sent
// before: a PINGREQ is answered after them (a server reads a connection's
// packets in order), which a QoS 0 PUBLISH, unanswered, needs before
// another connection may count on it.
func (cl *client) sync() {
	cl.c.Helper()
	cl.send(&packet.Pingreq{})
	expect[*packet.Pingresp](cl)
}

// clearRetained removes the retained message of a topic. Call it in Cleanup.
func (c *ct) clearRetained(topic string) {
	cl, _ := c.connect(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 30, ClientID: c.id("clr")})
	cl.send(&packet.Publish{Topic: topic, Retain: true})
	cl.send(&packet.Disconnect{})
	cl.nc.Close()
}

func (cl *client) id() uint16 {
	cl.nextID++
	if cl.nextID == 0 {
		cl.nextID = 1
	}
	return cl.nextID
}

// send writes one packet.
func (cl *client) send(p packet.Packet) {
	cl.c.Helper()
	b, err := p.Append(nil, cl.v)
	if err != nil {
		cl.c.Fatalf("encode %s: %v", p.Type(), err)
	}
	cl.sendRaw(b)
}

// sendRaw writes bytes as they are (malformed packets).
func (cl *client) sendRaw(b []byte) {
	cl.c.Helper()
	cl.nc.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := cl.nc.Write(b); err != nil {
		cl.c.Fatalf("write: %v", err)
	}
}

// read reads the next packet, waiting at most d.
func (cl *client) read(d time.Duration) (packet.Packet, error) {
	cl.nc.SetReadDeadline(time.Now().Add(d))
	return packet.Read(cl.br, cl.v, cl.maxSize)
}

// expect reads the next packet and requires it to be a T.
func expect[T packet.Packet](cl *client) T {
	cl.c.Helper()
	pk, err := cl.read(waitFor)
	if err != nil {
		cl.c.Fatalf("waiting for %T: %v", *new(T), err)
	}
	got, ok := pk.(T)
	if !ok {
		cl.c.Fatalf("got %s, want %T", describe(pk), *new(T))
	}
	return got
}

// describe shows a packet without its payload.
func describe(p packet.Packet) string {
	if pub, ok := p.(*packet.Publish); ok {
		return fmt.Sprintf("PUBLISH{topic %q qos %d retain %v dup %v id %d, %d bytes}", pub.Topic, pub.QoS, pub.Retain, pub.Dup, pub.PacketID, len(pub.Payload))
	}
	return fmt.Sprintf("%s%+v", p.Type(), p)
}

// closedErr says whether the connection is closed (or closes) within d,
// without any packet first. A DISCONNECT is a packet: disconnect checks it.
func closedErr(cl *client, d time.Duration) error {
	pk, err := cl.read(d)
	switch {
	case err == nil:
		return fmt.Errorf("got %s, want the connection closed", describe(pk))
	case isClosed(err):
		return nil
	default:
		return fmt.Errorf("want the connection closed: %w", err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// closed requires the connection closed within d with no packet first.
func (cl *client) closed(d time.Duration) {
	cl.c.Helper()
	if err := closedErr(cl, d); err != nil {
		cl.c.Fatal(err)
	}
}

// disconnectedErr says whether a DISCONNECT with the code arrives (after
// any PUBLISH or ack still in flight), then the connection closes.
func disconnectedErr(cl *client, code packet.ReasonCode) error {
	for skipped := 0; ; skipped++ {
		pk, err := cl.read(waitFor)
		if err != nil {
			return fmt.Errorf("want DISCONNECT %#x (after %d PUBLISH and acks): %w", byte(code), skipped, err)
		}
		d, ok := pk.(*packet.Disconnect)
		if !ok {
			switch pk.(type) {
			case *packet.Publish, *packet.Puback, *packet.Pubrec, *packet.Pubcomp, *packet.Pubrel:
				continue
			}
			return fmt.Errorf("got %s, want DISCONNECT %#x", describe(pk), byte(code))
		}
		if d.ReasonCode != code {
			return fmt.Errorf("DISCONNECT %#x (%q), want %#x", byte(d.ReasonCode), d.Properties.ReasonString, byte(code))
		}
		return closedErr(cl, waitFor)
	}
}

// disconnected requires a DISCONNECT with the code, then the close.
func (cl *client) disconnected(code packet.ReasonCode) {
	cl.c.Helper()
	if err := disconnectedErr(cl, code); err != nil {
		cl.c.Fatal(err)
	}
}

// silentErr says whether no packet arrives for d.
func silentErr(cl *client, d time.Duration) error {
	pk, err := cl.read(d)
	if err == nil {
		return fmt.Errorf("got %s, want nothing", describe(pk))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("want nothing: %w", err)
}

// silent requires no packet for a short while.
func (cl *client) silent() {
	cl.c.Helper()
	if err := silentErr(cl, quiet); err != nil {
		cl.c.Fatal(err)
	}
}

// subscribe subscribes and returns the SUBACK's codes.
func (cl *client) subscribe(props packet.Properties, subs ...packet.Subscription) []packet.ReasonCode {
	cl.c.Helper()
	id := cl.id()
	cl.send(&packet.Subscribe{PacketID: id, Properties: props, Subscriptions: subs})
	sa := expect[*packet.Suback](cl)
	if sa.PacketID != id || len(sa.ReasonCodes) != len(subs) {
		cl.c.Fatalf("SUBACK id %d with %d codes, want id %d with %d", sa.PacketID, len(sa.ReasonCodes), id, len(subs))
	}
	return sa.ReasonCodes
}

// sub subscribes to filters at a QoS and requires it granted.
func (cl *client) sub(qos byte, filters ...string) {
	cl.c.Helper()
	subs := make([]packet.Subscription, len(filters))
	for i, f := range filters {
		subs[i] = packet.Subscription{Filter: f, QoS: qos}
	}
	for i, code := range cl.subscribe(packet.Properties{}, subs...) {
		if code != packet.ReasonCode(qos) {
			cl.c.Fatalf("SUBACK %#x for %q, want QoS %d granted", byte(code), filters[i], qos)
		}
	}
}

// publish publishes p and completes its QoS flow, requiring success; it
// returns the last ack (nil at QoS 0).
func (cl *client) publish(p *packet.Publish) packet.Packet {
	cl.c.Helper()
	if p.QoS > 0 && p.PacketID == 0 {
		p.PacketID = cl.id()
	}
	cl.send(p)
	switch p.QoS {
	case 1:
		a := expect[*packet.Puback](cl)
		if a.PacketID != p.PacketID || a.ReasonCode >= 0x80 {
			cl.c.Fatalf("PUBACK id %d code %#x, want id %d success", a.PacketID, byte(a.ReasonCode), p.PacketID)
		}
		return a
	case 2:
		r := expect[*packet.Pubrec](cl)
		if r.PacketID != p.PacketID || r.ReasonCode >= 0x80 {
			cl.c.Fatalf("PUBREC id %d code %#x, want id %d success", r.PacketID, byte(r.ReasonCode), p.PacketID)
		}
		cl.send(&packet.Pubrel{Ack: packet.Ack{PacketID: p.PacketID}})
		c := expect[*packet.Pubcomp](cl)
		if c.PacketID != p.PacketID || c.ReasonCode != packet.Success {
			cl.c.Fatalf("PUBCOMP id %d code %#x, want id %d success", c.PacketID, byte(c.ReasonCode), p.PacketID)
		}
		return r
	}
	return nil
}

// pub publishes a payload to a topic at a QoS.
func (cl *client) pub(topic string, qos byte, payload string) {
	cl.c.Helper()
	cl.publish(&packet.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
}

// next reads the next PUBLISH and acknowledges it (PUBACK, or PUBREC then
// PUBCOMP for the PUBREL, which may come after later messages).
func (cl *client) next() *packet.Publish {
	cl.c.Helper()
	return cl.nextWithin(waitFor)
}

// nextWithin is next waiting up to d for each packet.
func (cl *client) nextWithin(d time.Duration) *packet.Publish {
	cl.c.Helper()
	for {
		pk, err := cl.read(d)
		if err != nil {
			cl.c.Fatalf("waiting for a PUBLISH: %v", err)
		}
		switch p := pk.(type) {
		case *packet.Publish:
			switch p.QoS {
			case 1:
				cl.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
			case 2:
				cl.send(&packet.Pubrec{Ack: packet.Ack{PacketID: p.PacketID}})
			}
			return p
		case *packet.Pubrel:
			cl.send(&packet.Pubcomp{Ack: packet.Ack{PacketID: p.PacketID}})
		default:
			cl.c.Fatalf("got %s, want a PUBLISH", describe(pk))
		}
	}
}

// nextRaw reads the next packet, requires a PUBLISH, and does not answer.
func (cl *client) nextRaw() *packet.Publish {
	cl.c.Helper()
	return expect[*packet.Publish](cl)
}

// want reads the next PUBLISH (acknowledged) and requires its topic,
// payload and QoS.
func (cl *client) want(topic string, qos byte, payload string) *packet.Publish {
	cl.c.Helper()
	return cl.wantWithin(waitFor, topic, qos, payload)
}

// wantWithin is want waiting up to d.
func (cl *client) wantWithin(d time.Duration, topic string, qos byte, payload string) *packet.Publish {
	cl.c.Helper()
	p := cl.nextWithin(d)
	if p.Topic != topic || p.QoS != qos || string(p.Payload) != payload {
		cl.c.Fatalf("got PUBLISH %q qos %d %q, want %q qos %d %q", p.Topic, p.QoS, p.Payload, topic, qos, payload)
	}
	return p
}

// drainUntil reads PUBLISHes (acknowledged) until one on topic arrives and
// returns those before it (a marker proves what did not come).
func (cl *client) drainUntil(topic string) []*packet.Publish {
	cl.c.Helper()
	var before []*packet.Publish
	for {
		p := cl.next()
		if p.Topic == topic {
			return before
		}
		before = append(before, p)
	}
}

// bye sends DISCONNECT (normal) and closes once the broker has closed
// its side: the broker has then taken the session offline, so what a
// case publishes next is queued for it, not sent to this connection.
func (cl *client) bye() {
	cl.send(&packet.Disconnect{})
	cl.nc.SetReadDeadline(time.Now().Add(waitFor))
	_, _ = io.Copy(io.Discard, cl.br)
	cl.nc.Close()
}

func ptr[T any](v T) *T { return &v }
