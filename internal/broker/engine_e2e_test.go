package broker_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// TestEngineSettingsAdvertised: the mqtt_* settings reach the engine: an
// MQTT 5 client is told the Receive Maximum (mqtt_max_inflight), Topic
// Alias Maximum and Maximum Packet Size in CONNACK, and a packet above
// the maximum ends its connection with DISCONNECT 0x95.
func TestEngineSettingsAdvertised(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) {
		c.MQTTMaxInflight = 9
		c.MQTTTopicAliasMaximum = 7
		c.MQTTMaxPacketSize = 4096
	})
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	nc, err := net.DialTimeout("tcp", s.App.Broker().Addr("tcp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	send := func(p packet.Packet) {
		t.Helper()
		b, err := p.Append(nil, packet.V5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	send(&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: "limits",
		UsernameFlag: true, Username: kid, PasswordFlag: true, Password: []byte(secret)})
	p, err := packet.Read(nc, packet.V5, 0)
	if err != nil {
		t.Fatal(err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK: %+v", p)
	}
	if pr := ack.Properties; pr.ReceiveMaximum != 9 || pr.TopicAliasMaximum != 7 || pr.MaximumPacketSize != 4096 {
		t.Fatalf("CONNACK advertises receive maximum %d, topic alias maximum %d, maximum packet size %d; want 9, 7, 4096",
			pr.ReceiveMaximum, pr.TopicAliasMaximum, pr.MaximumPacketSize)
	}
	send(&packet.Publish{Topic: "/big", Payload: bytes.Repeat([]byte("x"), 5000)})
	p, err = packet.Read(nc, packet.V5, 0)
	if d, ok := p.(*packet.Disconnect); err != nil || !ok || d.ReasonCode != packet.PacketTooLarge {
		t.Fatalf("after an oversized packet: %+v, %v; want DISCONNECT 0x95", p, err)
	}
}

// TestAssignedClientIDNamesTheSession: an MQTT 5 application that sends
// no client id is assigned its session's name, and resumes the session
// (session present, its subscription kept) by connecting with it.
func TestAssignedClientIDNamesTheSession(t *testing.T) {
	s := apptest.Start(t)
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	expiry := uint32(60)
	connect := func(id string) (net.Conn, *packet.Connack) {
		t.Helper()
		nc, err := net.DialTimeout("tcp", s.App.Broker().Addr("tcp"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		cp := &packet.Connect{Version: packet.V5, CleanStart: id == "", KeepAlive: 30, ClientID: id,
			UsernameFlag: true, Username: kid, PasswordFlag: true, Password: []byte(secret)}
		cp.Properties.SessionExpiry = &expiry
		b, _ := cp.Append(nil, packet.V5)
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		p, err := packet.Read(nc, packet.V5, 0)
		ack, ok := p.(*packet.Connack)
		if err != nil || !ok || ack.ReasonCode != packet.Success {
			t.Fatalf("CONNACK %+v, %v", p, err)
		}
		return nc, ack
	}
	nc, ack := connect("")
	id := ack.Properties.AssignedClientID
	if !strings.HasPrefix(id, "app:"+kid+":") {
		t.Fatalf("assigned client id %q, want the session's name app:%s:…", id, kid)
	}
	sub := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "$aws/events/presence/#", QoS: 1}}}
	b, _ := sub.Append(nil, packet.V5)
	nc.Write(b)
	if p, err := packet.Read(nc, packet.V5, 0); err != nil || p.Type() != packet.TypeSuback {
		t.Fatalf("SUBACK: %+v, %v", p, err)
	}
	nc.Close()
	_, ack = connect(id)
	if !ack.SessionPresent {
		t.Fatalf("reconnecting with the assigned id %q found no session", id)
	}
}
