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
