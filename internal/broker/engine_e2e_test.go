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

// TestOfflineDeviceGetsQueuedDownlinks: a device with a persistent session
// (3.1.1, clean session off) is delivered, when it reconnects, the QoS 1
// downlink an application published while it was away (spec: "Offline
// persistent sessions get nothing").
func TestOfflineDeviceGetsQueuedDownlinks(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("offline", nil)
	d := s.CreateDevice(p.ProductKey, "away-1")
	c := deviceCreds(d)
	topic := "/" + p.ProductKey + "/away-1/user/get"
	subscribeAndLeave(t, s, c, p.ProductKey, "away-1", topic)
	if r := s.Do(s.AdminKey, "POST", "/v1/publish?topic="+topic+"&qos=1", "while-away"); r.Status != 204 {
		t.Fatalf("HTTP publish: %d %s", r.Status, r.Body)
	}
	nc, ack := rawDeviceConnect(t, s, c)
	if !ack.SessionPresent {
		t.Fatal("the persistent session was not resumed")
	}
	pk, err := packet.Read(nc, packet.V311, 0)
	if pub, ok := pk.(*packet.Publish); err != nil || !ok || pub.Topic != topic || string(pub.Payload) != "while-away" || pub.QoS != 1 {
		t.Fatalf("after reconnecting: %+v, %v; want the QoS 1 downlink published while away", pk, err)
	}
}

// TestSharedSubscriptionRights: rights apply to the filter inside
// $share/{group}/ (spec: "$share/{group}/{filter} is refused"): an
// application shares its account's topics, not another account's.
func TestSharedSubscriptionRights(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("shared", nil)
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	nc, err := net.DialTimeout("tcp", s.App.Broker().Addr("tcp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	cp := &packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: "shared-app",
		UsernameFlag: true, Username: kid, PasswordFlag: true, Password: []byte(secret)}
	b, _ := cp.Append(nil, packet.V5)
	nc.Write(b)
	if pk, err := packet.Read(nc, packet.V5, 0); err != nil || pk.Type() != packet.TypeConnack {
		t.Fatalf("CONNACK: %+v, %v", pk, err)
	}
	for i, tt := range []struct {
		filter string
		want   packet.ReasonCode
	}{
		{"$share/workers//" + p.ProductKey + "/+/user/#", 1},
		{"$share/workers//nosuchproduct/+/user/#", packet.NotAuthorized},
	} {
		sub := &packet.Subscribe{PacketID: uint16(i + 1), Subscriptions: []packet.Subscription{{Filter: tt.filter, QoS: 1}}}
		b, _ := sub.Append(nil, packet.V5)
		nc.Write(b)
		pk, err := packet.Read(nc, packet.V5, 0)
		ack, ok := pk.(*packet.Suback)
		if err != nil || !ok || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != tt.want {
			t.Errorf("%s: %+v, %v; want SUBACK %#x", tt.filter, pk, err, byte(tt.want))
		}
	}
}

// TestDurableSessionAcrossRestart (issue 13 item 4): a device's persistent
// session outlives corral: a QoS 1 downlink accepted (HTTP 204) while the
// device was away before a restart, and one published after the restart
// to the session restored from the store (its client not back yet, so the
// rights check names the device from the session), both reach the device
// when it reconnects, with session present.
func TestDurableSessionAcrossRestart(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("durable", nil)
	d := s.CreateDevice(p.ProductKey, "away-2")
	c := deviceCreds(d)
	topic := "/" + p.ProductKey + "/away-2/user/get"
	subscribeAndLeave(t, s, c, p.ProductKey, "away-2", topic)
	if r := s.Do(s.AdminKey, "POST", "/v1/publish?topic="+topic+"&qos=1", "before-restart"); r.Status != 204 {
		t.Fatalf("HTTP publish: %d %s", r.Status, r.Body)
	}
	s.Stop()

	s2 := apptest.StartWith(t, s.Config)
	if r := s2.Do(s2.AdminKey, "POST", "/v1/publish?topic="+topic+"&qos=1", "after-restart"); r.Status != 204 {
		t.Fatalf("HTTP publish after the restart: %d %s", r.Status, r.Body)
	}
	nc, ack := rawDeviceConnect(t, s2, c)
	if !ack.SessionPresent {
		t.Fatal("the persistent session did not survive the restart")
	}
	for _, want := range []string{"before-restart", "after-restart"} {
		pk, err := packet.Read(nc, packet.V311, 0)
		pub, ok := pk.(*packet.Publish)
		if err != nil || !ok || pub.Topic != topic || string(pub.Payload) != want || pub.QoS != 1 {
			t.Fatalf("after the restart: %+v, %v; want the QoS 1 downlink %q", pk, err, want)
		}
		b, _ := (&packet.Puback{Ack: packet.Ack{PacketID: pub.PacketID}}).Append(nil, packet.V311)
		nc.Write(b)
	}
}

// rawDeviceConnect connects a device to srv's MQTT listener with a raw
// 3.1.1 CONNECT (clean session 0) and returns the connection and its
// accepting CONNACK.
func rawDeviceConnect(t *testing.T, srv *apptest.Server, c creds) (net.Conn, *packet.Connack) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", srv.App.Broker().Addr("tcp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	cp := &packet.Connect{Version: packet.V311, KeepAlive: 30, ClientID: c.clientID,
		UsernameFlag: true, Username: c.username, PasswordFlag: true, Password: []byte(c.password)}
	b, _ := cp.Append(nil, packet.V311)
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	pk, err := packet.Read(nc, packet.V311, 0)
	ack, ok := pk.(*packet.Connack)
	if err != nil || !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %+v, %v", pk, err)
	}
	return nc, ack
}

// subscribeAndLeave connects a device with a persistent session,
// subscribes it to topic at QoS 1, disconnects it and waits until the
// broker has seen it go.
func subscribeAndLeave(t *testing.T, s *apptest.Server, c creds, pk, dn, topic string) {
	t.Helper()
	nc, _ := rawDeviceConnect(t, s, c)
	sub := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: topic, QoS: 1}}}
	b, _ := sub.Append(nil, packet.V311)
	nc.Write(b)
	if p, err := packet.Read(nc, packet.V311, 0); err != nil || p.Type() != packet.TypeSuback {
		t.Fatalf("SUBACK: %+v, %v", p, err)
	}
	b, _ = (&packet.Disconnect{}).Append(nil, packet.V311)
	nc.Write(b)
	nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.App.Broker().Connected(pk, dn) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
