package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// receiveHooks refuse deliveries of one topic and record what Authenticate
// saw.
type receiveHooks struct {
	AllowAll
	deny string
	info chan ConnInfo
}

func (h *receiveHooks) MayReceive(_ *Client, topic string) bool { return topic != h.deny }

func (h *receiveHooks) Authenticate(_ context.Context, info ConnInfo, _ *packet.Connect) (any, packet.ReasonCode, string) {
	if h.info != nil {
		h.info <- info
	}
	return "attrs", packet.Success, ""
}

// TestMayReceive: a delivery MayReceive refuses is not made, retained ones
// included; others are.
func TestMayReceive(t *testing.T) {
	srv, addr := start(t, Options{Hooks: &receiveHooks{deny: "hidden"}})
	if err := srv.Publish(Message{Topic: "hidden", Retain: true, Payload: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	c, _ := mustConnect(t, addr, conn5("mr", true))
	c.subscribe(1, nil, packet.Subscription{Filter: "#"})
	c.silent(100 * time.Millisecond)
	for _, tp := range []string{"hidden", "shown"} {
		if err := srv.Publish(Message{Topic: tp}); err != nil {
			t.Fatal(err)
		}
	}
	if m := c.recvPublish(); m.Topic != "shown" {
		t.Fatalf("got %q", m.Topic)
	}
	in, _ := srv.SessionByID("mr")
	if in.Client.Value != "attrs" {
		t.Fatalf("Client.Value %v, want what Authenticate returned", in.Client.Value)
	}
}

// TestConnInfoTLS: a TLS connection served through ServeConn shows its
// handshake state to Authenticate.
func TestConnInfoTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"engine.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	h := &receiveHooks{info: make(chan ConnInfo, 1)}
	srv := New(Options{Hooks: h})
	defer srv.Close(t.Context())
	a, z := net.Pipe()
	defer a.Close()
	go srv.ServeConn(tls.Server(z, &tls.Config{Certificates: []tls.Certificate{cert}}))
	tc := tls.Client(a, &tls.Config{InsecureSkipVerify: true, ServerName: "engine.test"}) //nolint:gosec // a test's self-signed server
	cl := &client{t: t, c: tc, v: packet.V311}
	cl.send(conn3("tls", true))
	if ack, ok := cl.recv().(*packet.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	info := <-h.info
	if info.TLS == nil || !info.TLS.HandshakeComplete || info.TLS.ServerName != "engine.test" {
		t.Fatalf("TLS state %+v", info.TLS)
	}
	tc.Close()
}

// roleHooks: a client authenticated as "revoked" may not receive secret/#.
type roleHooks struct{ AllowAll }

func (roleHooks) Authenticate(_ context.Context, _ ConnInfo, c *packet.Connect) (any, packet.ReasonCode, string) {
	return c.Username, packet.Success, ""
}

func (roleHooks) MayReceive(c *Client, topic string) bool {
	return c.Value != "revoked" || !strings.HasPrefix(topic, "secret/")
}

// TestRightsRecheckedOnResume: what was queued or left in flight for a
// persistent session under its previous client's rights is not written to
// a new connection that may not receive it (queued and in-flight alike,
// each counted), and the rest still is, in order.
func TestRightsRecheckedOnResume(t *testing.T) {
	srv, addr := start(t, Options{Hooks: roleHooks{}})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			id := "rr-" + ver.name
			before := srv.Stats().Drops[DropNotAuthorized]
			cp := persistent(ver.v, id)
			cp.UsernameFlag, cp.Username = true, "ok"
			c, _ := mustConnect(t, addr, cp)
			c.subscribe(1, nil, packet.Subscription{Filter: "secret/#", QoS: 1}, packet.Subscription{Filter: "open/#", QoS: 1})
			if err := srv.Publish(Message{Topic: "secret/0", QoS: 1}); err != nil {
				t.Fatal(err)
			}
			if p := c.recvPublish(); p.Topic != "secret/0" {
				t.Fatalf("got %q", p.Topic)
			}
			c.c.Close() // secret/0 stays in flight
			eventually(t, "offline", func() bool { return !srv.Connected(id) })
			for _, tp := range []string{"open/1", "secret/1", "open/2"} {
				if err := srv.Publish(Message{Topic: tp, QoS: 1}); err != nil {
					t.Fatal(err)
				}
			}
			cp = persistent(ver.v, id)
			cp.UsernameFlag, cp.Username = true, "revoked"
			c, ack := mustConnect(t, addr, cp)
			if !ack.SessionPresent {
				t.Fatal("session not present")
			}
			for _, want := range []string{"open/1", "open/2"} {
				p := c.recvPublish()
				if p.Topic != want {
					t.Fatalf("got %q, want %q", p.Topic, want)
				}
				c.send(&packet.Puback{Ack: packet.Ack{PacketID: p.PacketID}})
			}
			c.silent(200 * time.Millisecond)
			if n := srv.Stats().Drops[DropNotAuthorized] - before; n != 2 {
				t.Fatalf("%d deliveries counted not authorized, want 2", n)
			}
		})
	}
}
