package broker_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/device"
	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtttest"
	"github.com/corral-iot/corral/internal/registry"
)

// sign computes the Alibaba CONNECT password independently of corral's code.
func sign(secret, clientID, dn, pk, ts string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("clientId" + clientID + "deviceName" + dn + "productKey" + pk + "timestamp" + ts))
	return hex.EncodeToString(m.Sum(nil))
}

type creds struct{ clientID, username, password string }

func deviceCreds(d apptest.Device) creds {
	id := d.ProductKey + "." + d.DeviceName
	ts := "2524608000000"
	return creds{
		clientID: id + "|securemode=3,signmethod=hmacsha256,timestamp=" + ts + ",_v=sdk-c-4.1.0|",
		username: d.DeviceName + "&" + d.ProductKey,
		password: sign(d.DeviceSecret, id, d.DeviceName, d.ProductKey, ts),
	}
}

func needMosquittoClients(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Fatal("mosquitto_pub is not installed (apt-get install mosquitto-clients); .ci/run installs it")
	}
}

func hostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

// mosqPub runs mosquitto_pub and returns its combined output and error.
func mosqPub(t *testing.T, addr string, c creds, topic, msg string, extra ...string) (string, error) {
	t.Helper()
	h, p := hostPort(addr)
	args := append([]string{"-h", h, "-p", p, "-i", c.clientID, "-u", c.username, "-P", c.password, "-t", topic, "-m", msg, "-q", "1"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput()
	return string(out), err
}

// app connects an application client with an API key token.
func app(t *testing.T, s *apptest.Server, token, id string) paho.Client {
	t.Helper()
	kid, secret, _ := strings.Cut(token, ".")
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID(id).SetUsername(kid).SetPassword(secret).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("app connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

type inbox struct {
	mu   sync.Mutex
	msgs []paho.Message
	ch   chan paho.Message
}

func newInbox() *inbox { return &inbox{ch: make(chan paho.Message, 1000)} }

func (i *inbox) handler(_ paho.Client, m paho.Message) { i.ch <- m }

func (i *inbox) next(t *testing.T, within time.Duration) paho.Message {
	t.Helper()
	select {
	case m := <-i.ch:
		return m
	case <-time.After(within):
		t.Fatal("no message")
		return nil
	}
}

func subscribe(t *testing.T, c paho.Client, filter string, in *inbox) {
	t.Helper()
	tok := c.Subscribe(filter, 1, in.handler)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	if r := tok.(*paho.SubscribeToken).Result()[filter]; r >= 0x80 {
		t.Fatalf("subscribe %s refused: %#x", filter, r)
	}
}

func TestDeviceConnectsWithMosquittoAndAppReceives(t *testing.T) {
	needMosquittoClients(t)
	s := apptest.Start(t)
	p := s.CreateProduct("thermo", nil)
	d := s.CreateDevice(p.ProductKey, "therm-01")
	in := newInbox()
	subscribe(t, app(t, s, s.AdminKey, "backend-1"), "/sys/"+p.ProductKey+"/+/thing/event/property/post", in)

	topic := "/sys/" + p.ProductKey + "/therm-01/thing/event/property/post"
	if out, err := mosqPub(t, s.App.Broker().Addr("tcp"), deviceCreds(d), topic, `{"id":"1","params":{"t":21.5}}`); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	m := in.next(t, 5*time.Second)
	if m.Topic() != topic || !strings.Contains(string(m.Payload()), "21.5") {
		t.Fatalf("got %s %s", m.Topic(), m.Payload())
	}
	// MQTT 5 too.
	if out, err := mosqPub(t, s.App.Broker().Addr("tcp"), deviceCreds(d), topic, "v5", "-V", "5"); err != nil {
		t.Fatalf("mosquitto_pub -V 5: %v %s", err, out)
	}
	if m := in.next(t, 5*time.Second); string(m.Payload()) != "v5" {
		t.Fatalf("got %s", m.Payload())
	}
	// The registry saw it online, then offline.
	var dev struct {
		Status        string
		FirstOnlineAt *time.Time
		LastOnlineAt  *time.Time
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/therm-01", nil, 200).JSON(t, &dev)
		if dev.Status == "offline" && dev.FirstOnlineAt != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if dev.Status != "offline" || dev.FirstOnlineAt == nil || dev.LastOnlineAt == nil {
		t.Fatalf("device after a session: %+v", dev)
	}
}

func TestRefusedConnections(t *testing.T) {
	needMosquittoClients(t)
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d := s.CreateDevice(p.ProductKey, "dev-ok")
	dis := s.CreateDevice(p.ProductKey, "dev-disabled")
	s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices/dev-disabled:disable", nil, 200)
	moved := s.CreateDevice(p.ProductKey, "dev-moved")
	if err := s.App.Registry().MarkDistributed(context.Background(), p.ProductKey, "dev-moved", "ap-southeast-1"); err != nil {
		t.Fatal(err)
	}
	good := deviceCreds(d)
	addr := s.App.Broker().Addr("tcp")

	tests := []struct {
		name string
		c    creds
		want string
	}{
		{"bad signature", creds{good.clientID, good.username, strings.Repeat("0", 64)}, "not authori"},
		{"secret of another device", deviceCreds(apptest.Device{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: "x"}), "not authori"},
		{"unknown device", deviceCreds(apptest.Device{ProductKey: d.ProductKey, DeviceName: "nobody", DeviceSecret: d.DeviceSecret}), "not authori"},
		{"disabled device", deviceCreds(dis), "not authori"},
		{"distributed device", deviceCreds(moved), "not authori"},
		{"malformed clientId extension", creds{d.ProductKey + "." + d.DeviceName + "|securemode=3,signmethod|", good.username, good.password}, "identifier rejected"},
		{"unsupported signmethod", creds{strings.Replace(good.clientID, "hmacsha256", "rsa", 1), good.username, good.password}, "bad user name or password"},
		{"username without &", creds{good.clientID, d.DeviceName + d.ProductKey, good.password}, "bad user name or password"},
		{"oversized clientId", creds{strings.Repeat("x", 300) + "|securemode=3|", good.username, good.password}, "identifier rejected"},
		{"wrong API key", creds{"app-1", "ckNOPE", "secret"}, "not authori"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := mosqPub(t, addr, tt.c, "/sys/"+p.ProductKey+"/dev-ok/thing/x", "x")
			if err == nil || !strings.Contains(strings.ToLower(out), tt.want) {
				t.Fatalf("mosquitto_pub: err %v, output %q, want %q", err, out, tt.want)
			}
			if strings.Contains(out, d.DeviceSecret) {
				t.Fatal("secret in output")
			}
		})
	}
	var audit struct {
		Entries []struct{ Action, Outcome, Reason string } `json:"entries"`
	}
	s.Admin("GET", "/v1/audit?action=mqtt.connect", nil, 200).JSON(t, &audit)
	reasons := map[string]bool{}
	for _, e := range audit.Entries {
		reasons[e.Reason] = true
	}
	for _, r := range []string{"bad signature", "unknown device", "device disabled", "device distributed to another instance; bootstrap again"} {
		if !reasons[r] {
			t.Errorf("no audit entry for %q: %+v", r, audit.Entries)
		}
	}
	metrics := string(s.Do("", "GET", "/metrics", nil).Body)
	for _, want := range []string{`corral_mqtt_auth_failures_total{reason="bad_signature"}`, `corral_mqtt_auth_failures_total{reason="bad_client_id"}`,
		`corral_mqtt_auth_failures_total{reason="distributed"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func connectDevice(t *testing.T, s *apptest.Server, d apptest.Device, will *device.Message) *device.Client {
	t.Helper()
	no := false
	c, err := device.Connect(context.Background(), device.Options{Broker: "tcp://" + s.App.Broker().Addr("tcp"),
		Triple: device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}, Will: will, AutoReconnect: &no})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestTopicRights(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d1 := s.CreateDevice(p.ProductKey, "dev-1")
	s.CreateDevice(p.ProductKey, "dev-2")
	c1 := connectDevice(t, s, d1, nil)
	ctx := context.Background()

	for _, f := range []string{"/sys/" + p.ProductKey + "/dev-2/thing/#", "/sys/" + p.ProductKey + "/+", "#", "$aws/things/dev-2/shadow/#", "$aws/events/presence/#"} {
		if err := c1.Subscribe(ctx, f, 1, func(device.Message) {}); err == nil {
			t.Errorf("device subscribed to %s", f)
		}
	}
	own := newInbox()
	if err := c1.Subscribe(ctx, "/"+p.ProductKey+"/dev-1/user/#", 1, func(m device.Message) { own.ch <- nil }); err != nil {
		t.Fatal(err)
	}
	in := newInbox()
	subscribe(t, app(t, s, s.AdminKey, "watcher"), "/"+p.ProductKey+"/+/user/#", in)
	// A publish outside the device's rights is acknowledged and dropped.
	if err := c1.Publish(ctx, "/"+p.ProductKey+"/dev-2/user/spoof", 1, []byte("x")); err != nil {
		t.Fatalf("QoS 1 publish outside rights should be acked and dropped: %v", err)
	}
	if !c1.Connected() {
		t.Fatal("a dropped publish closed a 3.1.1 session")
	}
	// The next publish of the same session is the fence: had the spoof
	// been delivered, it would have arrived first.
	if err := c1.Publish(ctx, "/"+p.ProductKey+"/dev-1/user/ok", 1, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if m := in.next(t, 5*time.Second); string(m.Payload()) != "ok" {
		t.Fatalf("got %s on %s before the fence", m.Payload(), m.Topic())
	}
	metrics := string(s.Do("", "GET", "/metrics", nil).Body)
	if !strings.Contains(metrics, `corral_mqtt_acl_denied_total{kind="publish"} 1`) || !strings.Contains(metrics, `corral_mqtt_acl_denied_total{kind="subscribe"} 5`) {
		t.Errorf("ACL metrics: %s", grep(metrics, "acl_denied"))
	}
	// Downstream from the application to the device.
	if r := s.Do(s.AdminKey, "POST", "/v1/publish?topic=/"+p.ProductKey+"/dev-1/user/get&qos=1", "hello"); r.Status != 204 {
		t.Fatalf("HTTP publish: %d %s", r.Status, r.Body)
	}
	select {
	case <-own.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("device did not receive the HTTP publish")
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestWillsHeldToRights(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d1 := s.CreateDevice(p.ProductKey, "will-1")
	d2 := s.CreateDevice(p.ProductKey, "will-2")
	in, presence := newInbox(), newInbox()
	watcher := app(t, s, s.AdminKey, "watcher")
	subscribe(t, watcher, "/"+p.ProductKey+"/+/user/#", in)
	subscribe(t, watcher, "$aws/events/presence/disconnected/+", presence)

	// The sessions end by their connections dropping (no DISCONNECT),
	// which always fires a will.
	dial := func(d apptest.Device, willTopic, will string) net.Conn {
		c := deviceCreds(d)
		conn, err := rawConnectWithWill(s.App.Broker().Addr("tcp"), c, willTopic, will)
		if err != nil {
			t.Fatalf("connect %s: %v", d.DeviceName, err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// will-1 names another device's topic: dropped. will-2 its own: delivered.
	// The two wills differ, so a late forged will cannot pass for the good one.
	bad := dial(d1, "/"+p.ProductKey+"/will-2/user/status", "forged")
	good := dial(d2, "/"+p.ProductKey+"/will-2/user/status", "gone")
	bad.Close()
	// The broker handles a session's will before announcing its end, so
	// once will-1's disconnection is announced its will has been dealt with.
	if m := presence.next(t, 5*time.Second); !strings.HasSuffix(m.Topic(), "will-1") {
		t.Fatalf("presence: %s", m.Topic())
	}
	good.Close()
	if m := in.next(t, 5*time.Second); string(m.Payload()) != "gone" || !strings.HasSuffix(m.Topic(), "/will-2/user/status") {
		t.Fatalf("first will delivered: %s %s, want will-2's own", m.Topic(), m.Payload())
	}
	metrics := string(s.Do("", "GET", "/metrics", nil).Body)
	if !strings.Contains(metrics, `corral_mqtt_acl_denied_total{kind="will"} 1`) {
		t.Errorf("will denial not counted: %s", grep(metrics, "acl_denied"))
	}
}

type presence struct {
	ClientID         string `json:"clientId"`
	Timestamp        int64  `json:"timestamp"`
	EventType        string `json:"eventType"`
	DisconnectReason string `json:"disconnectReason"`
	ProductKey       string `json:"productKey"`
	DeviceName       string `json:"deviceName"`
}

func TestPresenceKickAndTakeover(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d := s.CreateDevice(p.ProductKey, "pres-1")
	var other struct{ Token string }
	s.Admin("POST", "/v1/accounts", map[string]any{"name": "other"}, 201).JSON(t, &other)

	mine, theirs := newInbox(), newInbox()
	subscribe(t, app(t, s, s.AdminKey, "mine"), "$aws/events/presence/+/+", mine)
	subscribe(t, app(t, s, other.Token, "theirs"), "$aws/events/presence/#", theirs)

	next := func() presence {
		var ev presence
		m := mine.next(t, 5*time.Second)
		if err := json.Unmarshal(m.Payload(), &ev); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(m.Topic(), "/"+ev.ClientID) || !strings.Contains(m.Topic(), ev.EventType) {
			t.Fatalf("topic %s for %+v", m.Topic(), ev)
		}
		return ev
	}
	c := connectDevice(t, s, d, nil)
	if ev := next(); ev.EventType != "connected" || ev.ProductKey != p.ProductKey || ev.DeviceName != "pres-1" || ev.Timestamp == 0 {
		t.Fatalf("connected event: %+v", ev)
	}
	// A second session of the same device takes over the first.
	c2 := connectDevice(t, s, d, nil)
	seen := map[string]string{}
	for i := 0; i < 2; i++ {
		ev := next()
		seen[ev.EventType] = ev.DisconnectReason
	}
	if seen["disconnected"] != "DUPLICATE_CLIENTID" {
		t.Fatalf("takeover events: %v", seen)
	}
	for deadline := time.Now().Add(5 * time.Second); c.Connected() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if c.Connected() || !c2.Connected() {
		t.Fatalf("after takeover: first %v, second %v", c.Connected(), c2.Connected())
	}
	// Disabling through the API closes the live session within a second.
	start := time.Now()
	s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices/pres-1:disable", nil, 200)
	ev := next()
	if ev.EventType != "disconnected" || ev.DisconnectReason != "DISABLED" || time.Since(start) > time.Second {
		t.Fatalf("kick: %+v after %v", ev, time.Since(start))
	}
	for deadline := time.Now().Add(time.Second); c2.Connected() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if c2.Connected() {
		t.Fatal("disabled device still connected")
	}
	// The other account hears only its own device: its first presence
	// event is its own device's, after all of ours were published.
	var op struct{ ProductKey string }
	s.Do(other.Token, "POST", "/v1/products", map[string]any{"name": "theirs"}).JSON(t, &op)
	var od apptest.Device
	if r := s.Do(other.Token, "POST", "/v1/products/"+op.ProductKey+"/devices", map[string]any{"deviceName": "their-1"}); r.Status != 201 {
		t.Fatalf("other account's device: %d %s", r.Status, r.Body)
	} else {
		r.JSON(t, &od)
	}
	connectDevice(t, s, od, nil)
	if m := theirs.next(t, 5*time.Second); !strings.HasSuffix(m.Topic(), "/"+op.ProductKey+".their-1") {
		t.Fatalf("the other account heard %s", m.Topic())
	}
}

func TestDeleteKicks(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d := s.CreateDevice(p.ProductKey, "del-1")
	c := connectDevice(t, s, d, nil)
	start := time.Now()
	s.Admin("DELETE", "/v1/products/"+p.ProductKey+"/devices/del-1", nil, 204)
	for time.Since(start) < time.Second && c.Connected() {
		time.Sleep(10 * time.Millisecond)
	}
	if c.Connected() {
		t.Fatal("deleted device still connected after 1 s")
	}
}

// TestConnectionEndMetrics: /metrics counts ended connections by reason.
func TestConnectionEndMetrics(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	kicked := connectDevice(t, s, s.CreateDevice(p.ProductKey, "ends-1"), nil)
	s.Admin("DELETE", "/v1/products/"+p.ProductKey+"/devices/ends-1", nil, 204)
	c := deviceCreds(s.CreateDevice(p.ProductKey, "ends-2"))
	closed, err := mqtttest.Dial(s.App.Broker().Addr("tcp"), "", mqtttest.Connect{Creds: mqtttest.Creds{ClientID: c.clientID, Username: c.username, Password: c.password}, KeepAlive: 60})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	want := []string{`corral_mqtt_connection_ends_total{reason="kicked"} 1`, `corral_mqtt_connection_ends_total{reason="closed"} 1`}
	var metrics string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		metrics = string(s.Do("", "GET", "/metrics", nil).Body)
		if strings.Contains(metrics, want[0]) && strings.Contains(metrics, want[1]) {
			break
		}
	}
	for _, w := range want {
		if !strings.Contains(metrics, w) {
			t.Errorf("/metrics lacks %s: %s", w, grep(metrics, "connection_ends"))
		}
	}
	if kicked.Connected() {
		t.Error("deleted device still connected")
	}
}

func TestTLSAndWebSocketListeners(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d := s.CreateDevice(p.ProductKey, "tls-1")
	ca, err := os.ReadFile(filepath.Join(s.Config.DataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	triple := device.Triple{ProductKey: d.ProductKey, DeviceName: d.DeviceName, DeviceSecret: d.DeviceSecret}
	for _, tt := range []struct {
		name, url string
		tls       *tls.Config
	}{
		{"tls", "ssl://" + s.App.Broker().Addr("tls"), &tls.Config{RootCAs: pool, ServerName: "localhost"}},
		{"websocket", (&url.URL{Scheme: "ws", Host: s.App.Broker().Addr("ws"), Path: "/mqtt"}).String(), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := device.Connect(context.Background(), device.Options{Broker: tt.url, Triple: triple, TLS: tt.tls})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := make(chan string, 1)
			topic := fmt.Sprintf("/%s/tls-1/user/%s", p.ProductKey, tt.name)
			if err := c.Subscribe(context.Background(), topic, 1, func(m device.Message) { got <- string(m.Payload) }); err != nil {
				t.Fatal(err)
			}
			if err := c.Publish(context.Background(), topic, 1, []byte(tt.name)); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-got:
				if m != tt.name {
					t.Fatal(m)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no echo")
			}
		})
	}
	// mosquitto over TLS with the CA file.
	needMosquittoClients(t)
	h, port := hostPort(s.App.Broker().Addr("tls"))
	c := deviceCreds(d)
	c.clientID = strings.Replace(c.clientID, "securemode=3", "securemode=2", 1)
	out, err := exec.Command("mosquitto_pub", "-h", h, "-p", port, "--cafile", filepath.Join(s.Config.DataDir, "tls", "ca.pem"), "--insecure",
		"-i", c.clientID, "-u", c.username, "-P", c.password, "-t", "/"+d.ProductKey+"/tls-1/user/x", "-m", "x").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub over TLS: %v %s", err, out)
	}
}

// TestQueueOverflowIsCounted: a subscriber that stops reading fills its
// write queue (mqtt_max_queued); further deliveries are dropped, and
// /metrics says so instead of losing them silently.
func TestQueueOverflowIsCounted(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.MQTTMaxQueued = 16 })
	p := s.CreateProduct("q", nil)
	release := make(chan struct{})
	defer close(release)
	sub := app(t, s, s.AdminKey, "stalled-app")
	// paho hands messages over in order: a handler that never returns
	// stops it reading the socket, so TCP pushes back on the broker.
	if tok := sub.Subscribe("/"+p.ProductKey+"/+/user/#", 0, func(paho.Client, paho.Message) { <-release }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	payload := make([]byte, 64<<10)
	for i := 0; i < 400; i++ { // 25 MiB: more than the socket buffers and the queue hold
		if err := s.App.Broker().Publish("/"+p.ProductKey+"/d1/user/bulk", payload, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	metrics := string(s.Do("", "GET", "/metrics", nil).Body)
	line := grep(metrics, `corral_mqtt_messages_dropped_total{qos="0"}`)
	if line == "" || strings.HasSuffix(line, " 0") {
		t.Fatalf("no drops counted: %q", line)
	}
}

// rawConnectWithWill opens an MQTT 3.1.1 session with a QoS 1 will and
// waits for its CONNACK; closing the connection ends the session without
// a DISCONNECT.
func rawConnectWithWill(addr string, c creds, willTopic, will string) (net.Conn, error) {
	return mqtttest.Dial(addr, "", mqtttest.Connect{Creds: mqtttest.Creds{ClientID: c.clientID, Username: c.username, Password: c.password},
		KeepAlive: 60, Will: &mqtttest.Will{Topic: willTopic, Payload: []byte(will), QoS: 1}})
}

// TestOnPresence: in-process observers get every session start and end
// as a registry.Presence (the device's account and thing name with it, a
// takeover's end with its reason) in order, until they stop.
func TestOnPresence(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	d := s.CreateDevice(p.ProductKey, "obs-1")
	evs := make(chan registry.Presence, 100)
	stop := s.App.Broker().OnPresence(func(p registry.Presence) { evs <- p })
	next := func() registry.Presence {
		t.Helper()
		select {
		case ev := <-evs:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no presence")
			return registry.Presence{}
		}
	}
	c := connectDevice(t, s, d, nil)
	ev := next()
	if !ev.Online || ev.ProductKey != p.ProductKey || ev.DeviceName != "obs-1" || ev.AccountID == "" ||
		ev.ThingName != registry.DefaultThingName(p.ProductKey, "obs-1") || ev.At.IsZero() || ev.Reason != "" || !ev.First {
		t.Fatalf("connected: %+v; want the device's first session", ev)
	}
	// Once the registry has it online, its sessions are not its first.
	var dev struct{ Status string }
	for deadline := time.Now().Add(5 * time.Second); dev.Status != "online" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/obs-1", nil, 200).JSON(t, &dev)
	}
	c.Close()
	if ev := next(); ev.Online || !ev.First {
		t.Fatalf("the first session's end: %+v; want it first", ev)
	}
	c = connectDevice(t, s, d, nil)
	if ev := next(); !ev.Online || ev.First {
		t.Fatalf("a second session: %+v; want it not first", ev)
	}
	connectDevice(t, s, d, nil) // takes over
	got := map[bool]string{}
	for range 2 {
		ev := next()
		got[ev.Online] = ev.Reason
	}
	if r, ok := got[false]; !ok || r != "DUPLICATE_CLIENTID" {
		t.Fatalf("takeover: %v", got)
	}
	if _, ok := got[true]; !ok {
		t.Fatalf("takeover: no connect in %v", got)
	}
	c.Close()
	stop()
	connectDevice(t, s, d, nil)
	select {
	case ev := <-evs:
		t.Fatalf("after stop: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}
