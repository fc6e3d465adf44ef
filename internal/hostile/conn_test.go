package hostile_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// --- raw MQTT, so an attack can send what a well-behaved client would not ---

// connConnect is a CONNECT packet of protocol level 4 (3.1.1) or 5.
func connConnect(level byte, clientID, user, pass string) []byte {
	return mqtttest.Connect{Level: level, Creds: mqtttest.Creds{ClientID: clientID, Username: user, Password: pass}, KeepAlive: 60}.Bytes()
}

// connPublish is a QoS 1 PUBLISH of protocol level 5.
func connPublish5(topic string, id uint16, payload []byte) []byte {
	body := append(mqtttest.Str(topic), byte(id>>8), byte(id), 0)
	return mqtttest.Packet(0x32, append(body, payload...))
}

// connDeviceCreds are a device's CONNECT credentials.
func connDeviceCreds(d apptest.Device) (clientID, user, pass string) {
	c := mqtttest.DeviceCreds(d.ProductKey, d.DeviceName, d.DeviceSecret)
	return c.ClientID, c.Username, c.Password
}

// connDial opens a TCP connection to addr from the loopback address src
// ("" for any).
func connDial(t testing.TB, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connReadPacket reads one MQTT packet (type byte and body) within 5 s.
func connReadPacket(c net.Conn) (byte, []byte, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return mqtttest.ReadPacket(c)
}

// connConnack sends CONNECT and returns the CONNACK's return code.
func connConnack(t testing.TB, c net.Conn, connect []byte) byte {
	t.Helper()
	if _, err := c.Write(connect); err != nil {
		t.Fatalf("writing CONNECT: %v", err)
	}
	typ, body, err := connReadPacket(c)
	if err != nil || typ != 0x20 || len(body) < 2 {
		t.Fatalf("CONNACK: type %#x body %x err %v", typ, body, err)
	}
	return body[1]
}

// connClosedByServer waits up to within for the server to close c, and
// fails unless it does (the read ends in EOF or a reset, not our timeout).
func connClosedByServer(t testing.TB, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v", within)
		}
		return
	}
}

// connDeviceFrom connects a device with paho from a loopback source address.
func (w *world) connDeviceFrom(t testing.TB, d apptest.Device, src string) error {
	o := w.deviceOptions(d).SetDialer(&net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}})
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return errors.New("no CONNACK within 5 s")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(50)
	return nil
}

func connWithLog(c *config.Config) { c.LogLevel = "debug" }

// TestLogNeverCarriesCredentialsOrPayloads (issue 9, item 8): mochi logged
// whole packets: a second CONNECT put a device's password and an API key's
// secret (base64) in the log, and refused 100 KiB publishes grew it by
// 130 KiB each.
func TestLogNeverCarriesCredentialsOrPayloads(t *testing.T) {
	w := newWorld(t, connWithLog)
	addr := w.S.App.Broker().Addr("tcp")
	cid, user, pass := connDeviceCreds(w.T1.DevA)
	kid, secret, _ := strings.Cut(w.T1.Admin, ".")
	for _, cr := range []struct{ name, cid, user, pass string }{
		{"device", cid, user, pass},
		{"application", "app-twice", kid, secret},
	} {
		for _, level := range []byte{4, 5} {
			c := connDial(t, addr, "")
			if code := connConnack(t, c, connConnect(level, cr.cid, cr.user, cr.pass)); code != 0 {
				t.Fatalf("%s v%d: CONNACK %d", cr.name, level, code)
			}
			c.Write(connConnect(level, cr.cid, cr.user, cr.pass)) // a protocol violation: the server closes
			connClosedByServer(t, c, 5*time.Second)
		}
	}
	// Publishes outside the device's rights, acknowledged "not authorized"
	// in MQTT 5: the PUBACK comes after mochi logs the refusal.
	c := connDial(t, addr, "")
	if code := connConnack(t, c, connConnect(5, cid, user, pass)); code != 0 {
		t.Fatalf("CONNACK %d", code)
	}
	marker := []byte("PAYLOAD-MUST-NOT-BE-LOGGED-")
	payload := bytes.Repeat(marker, 100<<10/len(marker))
	forbidden := "/" + w.T2.DevA.ProductKey + "/devA/user/x"
	publish20 := func() {
		for i := 1; i <= 20; i++ {
			if _, err := c.Write(connPublish5(forbidden, uint16(i), payload)); err != nil {
				t.Fatal(err)
			}
			typ, body, err := connReadPacket(c)
			if err != nil || typ != 0x40 || len(body) < 3 || body[2] != 0x87 {
				t.Fatalf("PUBACK: type %#x body %x err %v, want not authorized", typ, body, err)
			}
		}
	}
	publish20() // the first lines of a kind may pass a rate limit; the next 20 may not grow the log
	before := w.S.Log.Len()
	publish20()
	if grown := w.S.Log.Len() - before; grown > 16<<10 {
		t.Errorf("20 refused 100 KiB publishes grew the log by %d bytes, want at most 16 KiB", grown)
	}
	// An oversized packet (over the 256 KiB maximum) closes the connection.
	c.Write(connPublish5(forbidden, 99, bytes.Repeat(marker, 300<<10/len(marker))))
	connClosedByServer(t, c, 5*time.Second)

	log := w.S.Log.Bytes()
	for _, s := range []struct{ what, v string }{
		{"device password", pass},
		{"device password (base64)", base64.StdEncoding.EncodeToString([]byte(pass))},
		{"API key secret", secret},
		{"API key secret (base64)", base64.StdEncoding.EncodeToString([]byte(secret))},
		{"payload", string(marker)},
		{"payload (base64)", base64.StdEncoding.EncodeToString(payload[:3*len(marker)])[:32]},
		{"device secret", w.T1.DevA.DeviceSecret},
	} {
		if bytes.Contains(log, []byte(s.v)) {
			t.Errorf("the log carries the %s", s.what)
		}
	}
	if !bytes.Contains(log, []byte(`"type":"CONNECT"`)) {
		t.Errorf("the second CONNECT's log line names no packet type:\n%s", tail(log))
	}
}

func tail(b []byte) []byte { return b[max(0, len(b)-1500):] }

// TestConnectDeadline (issue 9, item 9): connections that never sent
// CONNECT were held forever.
func TestConnectDeadline(t *testing.T) {
	w := newWorld(t, func(c *config.Config) { c.MQTTConnectTimeout = 300 * time.Millisecond })
	start := time.Now()
	c := connDial(t, w.S.App.Broker().Addr("tcp"), "")
	connClosedByServer(t, c, 5*time.Second)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("closed after %v, before the deadline", el)
	}
	// A CONNECT sent slowly, a byte at a time, gets no more time.
	c = connDial(t, w.S.App.Broker().Addr("tcp"), "")
	cid, user, pass := connDeviceCreds(w.T1.DevA)
	c.Write(connConnect(4, cid, user, pass)[:3])
	connClosedByServer(t, c, 5*time.Second)

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+w.S.App.Broker().Addr("ws")+"/mqtt", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = ws.ReadMessage()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("WebSocket without CONNECT still open after 5 s")
	}
	// A device that does send CONNECT in time keeps its session past the deadline.
	dev := w.device(t, w.T1.DevA)
	in := newInbox()
	own := "/" + w.T1.DevA.ProductKey + "/devA/user/echo"
	mustSubscribe(t, dev, own, in)
	c = connDial(t, w.S.App.Broker().Addr("tcp"), "")
	connClosedByServer(t, c, 5*time.Second) // the deadline has passed for the device too
	publish(t, dev, own, "still here")
	if m := in.next(t); string(m.Payload()) != "still here" {
		t.Fatalf("got %q", m.Payload())
	}
}

// TestPendingConnectionsCappedPerAddress (issue 9, item 9): 500 TCP
// connections and 20 WebSocket upgrades without CONNECT were all held.
func TestPendingConnectionsCappedPerAddress(t *testing.T) {
	w := newWorld(t, func(c *config.Config) { c.MQTTMaxPendingPerIP = 3 })
	addr := w.S.App.Broker().Addr("tcp")
	// Authenticated connections do not count.
	for i := 0; i < 4; i++ {
		w.device(t, w.T1.DevB)
	}
	var held []net.Conn
	for i := 0; i < 3; i++ {
		held = append(held, connDial(t, addr, "127.0.0.1"))
	}
	// A CONNECT on a held connection is served.
	cid, user, pass := connDeviceCreds(w.T1.DevA)
	if code := connConnack(t, held[0], connConnect(4, cid, user, pass)); code != 0 {
		t.Fatalf("CONNACK %d on a pending connection under the cap", code)
	}
	held[0] = connDial(t, addr, "127.0.0.1")
	over := connDial(t, addr, "127.0.0.1")
	connClosedByServer(t, over, 5*time.Second)
	// WebSocket upgrades count against the same address.
	if ws, _, err := websocket.DefaultDialer.Dial("ws://"+w.S.App.Broker().Addr("ws")+"/mqtt", nil); err == nil {
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := ws.ReadMessage(); err == nil {
			t.Fatal("a WebSocket upgrade over the cap was served")
		}
		ws.Close()
	}
	// Another address is not affected.
	if err := w.connDeviceFrom(t, w.T1.DevA, "127.0.0.2"); err != nil {
		t.Fatalf("a device on 127.0.0.2: %v", err)
	}
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
			t.Fatalf("a pending connection under the cap was closed: %v", err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestWebSocketOrigins (issue 9, item 18): the WebSocket listener took any
// Origin; ws_allowed_origins limits it.
func TestWebSocketOrigins(t *testing.T) {
	dial := func(w *world, origin string) (*websocket.Conn, int) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
		ws, resp, err := d.Dial("ws://"+w.S.App.Broker().Addr("ws")+"/mqtt", h)
		if err != nil {
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { ws.Close() })
		return ws, resp.StatusCode
	}
	open := newWorld(t)
	if _, code := dial(open, "https://anywhere.example"); code != http.StatusSwitchingProtocols {
		t.Fatalf("default: Origin refused with %d, want any origin (credentials travel in CONNECT)", code)
	}
	w := newWorld(t, func(c *config.Config) {
		c.WSAllowedOrigins = "https://console.example.com, http://localhost:3000"
	})
	if _, code := dial(w, "https://evil.example"); code != http.StatusForbidden {
		t.Fatalf("foreign Origin: %d, want 403", code)
	}
	if _, code := dial(w, "https://console.example.com.evil.example"); code != http.StatusForbidden {
		t.Fatalf("suffix Origin: %d, want 403", code)
	}
	for _, origin := range []string{"https://console.example.com", "http://LOCALHOST:3000", ""} {
		ws, code := dial(w, origin)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("Origin %q: %d, want 101", origin, code)
		}
		cid, user, pass := connDeviceCreds(w.T1.DevA)
		ws.WriteMessage(websocket.BinaryMessage, connConnect(4, cid, user, pass))
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := ws.ReadMessage()
		if err != nil || len(msg) < 4 || msg[0] != 0x20 || msg[3] != 0 {
			t.Fatalf("Origin %q: CONNACK %x, %v", origin, msg, err)
		}
	}
}

// connAudit returns the mqtt.connect audit entries from source.
func connAudit(w *world, source string) []connAuditEntry {
	var page struct {
		Entries []connAuditEntry `json:"entries"`
	}
	w.do(w.T1.Admin, "GET", "/v1/audit?action=mqtt.connect&limit=1000", nil, 200).JSON(w.tb, &page)
	var out []connAuditEntry
	for _, e := range page.Entries {
		if e.Source == source {
			out = append(out, e)
		}
	}
	return out
}

type connAuditEntry struct {
	Reason, Source, Target string
	Count                  int
}

// TestFailedLoginsThrottled (issue 9, item 11): one address made 17,000
// refused CONNECTs in 3 s, each with an audit row and a log line.
func TestFailedLoginsThrottled(t *testing.T) {
	w := newWorld(t, func(c *config.Config) {
		c.MQTTAuthFailuresPerIP = 5
		c.MQTTAuthFailuresPerDevice = 1000
		c.LogLevel = "info"
	})
	addr := w.S.App.Broker().Addr("tcp")
	cid, user, _ := connDeviceCreds(w.T1.DevA)
	bad := connConnect(4, cid, user, strings.Repeat("0", 64))
	codes := map[byte]int{}
	const flood = 40
	i := 0
	for ; i < flood && codes[3] == 0; i++ {
		codes[connConnack(t, connDial(t, addr, "127.0.0.1"), bad)]++
	}
	// Right after the back-off starts (it lasts a second), the address is
	// refused even with a good signature ...
	_, _, pass := connDeviceCreds(w.T1.DevA)
	if code := connConnack(t, connDial(t, addr, "127.0.0.1"), connConnect(5, cid, user, pass)); code != 0x89 {
		t.Errorf("MQTT 5 CONNECT from the flooding address: %#x, want 0x89 (server busy)", code)
	}
	for ; i < flood; i++ {
		codes[connConnack(t, connDial(t, addr, "127.0.0.1"), bad)]++
	}
	if codes[3] == 0 || codes[5] > 15 || codes[3]+codes[5] != flood {
		t.Fatalf("answers to %d bad CONNECTs: %v; want mostly 3 (server unavailable) after 5 refusals", flood, codes)
	}
	// ... and the same device on another address does not notice.
	if err := w.connDeviceFrom(t, w.T1.DevA, "127.0.0.2"); err != nil {
		t.Fatalf("devA on 127.0.0.2 during the flood: %v", err)
	}
	// The audit holds one row per reason for the source, with counts.
	var rows []connAuditEntry
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows = connAudit(w, "127.0.0.1")
		total := 0
		for _, r := range rows {
			total += r.Count
		}
		if total == flood+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the aggregate is flushed every second
	}
	total := 0
	for _, r := range rows {
		total += r.Count
	}
	if len(rows) > 2 || total != flood+1 {
		t.Fatalf("audit rows for the flooding source: %+v; want at most 2 (one per reason) counting %d", rows, flood+1)
	}
	// The log samples: a few lines for the source, not one per attempt.
	lines := 0
	for _, l := range strings.Split(string(w.S.Log.Bytes()), "\n") {
		if strings.Contains(l, `"connection refused"`) && strings.Contains(l, `127.0.0.1`) {
			lines++
		}
	}
	if lines > 10 {
		t.Errorf("%d 'connection refused' log lines for %d attempts, want a sample", lines, flood+1)
	}
}

// TestFailedLoginsPerDevice: failures for one device from many addresses
// put the device in back-off for those addresses, not for its own.
func TestFailedLoginsPerDevice(t *testing.T) {
	w := newWorld(t, func(c *config.Config) {
		c.MQTTAuthFailuresPerIP = 1000
		c.MQTTAuthFailuresPerDevice = 6
	})
	addr := w.S.App.Broker().Addr("tcp")
	cid, user, pass := connDeviceCreds(w.T1.DevB)
	bad := connConnect(4, cid, user, strings.Repeat("0", 64))
	codes := map[byte]int{}
	for i := 0; i < 30 && codes[3] == 0; i++ {
		codes[connConnack(t, connDial(t, addr, fmt.Sprintf("127.0.0.%d", 10+i%3)), bad)]++
	}
	if codes[3] == 0 || codes[5] != 6 {
		t.Fatalf("answers to bad CONNECTs for one device from 3 addresses: %v; want back-off (3) after 6", codes)
	}
	// Right after the back-off starts (it lasts a second), a failing
	// address is refused even with the right signature ...
	if code := connConnack(t, connDial(t, addr, "127.0.0.10"), connConnect(4, cid, user, pass)); code != 3 {
		t.Errorf("good CONNECT from an address that failed: %d, want 3 during the device's back-off", code)
	}
	// ... the device's own address is not, and other devices are not.
	if code := connConnack(t, connDial(t, addr, "127.0.0.2"), connConnect(4, cid, user, pass)); code != 0 {
		t.Errorf("devB from a clean address: %d, want accepted", code)
	}
	if err := w.connDeviceFrom(t, w.T1.DevA, "127.0.0.10"); err != nil {
		t.Errorf("devA from the same address: %v", err)
	}
}
