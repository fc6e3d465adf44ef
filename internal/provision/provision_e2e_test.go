package provision_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// regSign computes a registration signature independently of corral.
func regSign(secret, dn, pk, random string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("deviceName" + dn + "productKey" + pk + "random" + random))
	return hex.EncodeToString(m.Sum(nil))
}

type regReply struct {
	Code int `json:"code"`
	Data struct {
		ProductKey   string `json:"productKey"`
		DeviceName   string `json:"deviceName"`
		DeviceSecret string `json:"deviceSecret"`
	} `json:"data"`
	Message string `json:"message"`
}

var insecure = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// register posts Alibaba's form to /auth/register/device over HTTPS.
func register(t *testing.T, s *apptest.Server, form url.Values) (int, regReply, string) {
	t.Helper()
	resp, err := insecure.Post("https://"+s.App.HTTPSAddr()+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r regReply
	json.Unmarshal(body, &r)
	return resp.StatusCode, r, string(body)
}

// form is a signed registration with a random of its own: a random is
// good once per device.
func form(pk, secret, dn string) url.Values {
	random := fmt.Sprintf("8Ygb7ULYh53B6OA%d", randoms.Add(1))
	return url.Values{"productKey": {pk}, "deviceName": {dn}, "random": {random}, "sign": {regSign(secret, dn, pk, random)}, "signMethod": {"hmacsha256"}}
}

var randoms atomic.Int64

// connects reports whether a triple passes MQTT CONNECT.
func connects(t *testing.T, s *apptest.Server, pk, dn, secret string) bool {
	t.Helper()
	ts := "2524608000000"
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("clientId" + pk + "." + dn + "deviceName" + dn + "productKey" + pk + "timestamp" + ts))
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID(pk + "." + dn + "|securemode=3,signmethod=hmacsha256,timestamp=" + ts + "|").
		SetUsername(dn + "&" + pk).SetPassword(hex.EncodeToString(m.Sum(nil))).SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(o)
	err := apptest.ConnectMQTT(t, c)
	if err != nil {
		return false
	}
	c.Disconnect(0)
	return true
}

func TestHTTPSDynamicRegistrationAutoThenConnect(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("auto", map[string]any{"dynamicRegistration": "auto"})
	st, r, raw := register(t, s, form(p.ProductKey, p.ProductSecret, "SN-0001"))
	if st != 200 || r.Code != 200 || r.Message != "success" || r.Data.DeviceSecret == "" || r.Data.DeviceName != "SN-0001" {
		t.Fatalf("%d %s", st, raw)
	}
	if !strings.HasPrefix(raw, `{"code":200,"data":{"productKey":`) || len(strings.TrimSpace(raw)) >= 192 {
		t.Fatalf("reply is not the SDK's compact shape (%d bytes): %s", len(raw), raw)
	}
	if !connects(t, s, p.ProductKey, "SN-0001", r.Data.DeviceSecret) {
		t.Fatal("registered device cannot connect")
	}
	// Sign hex is case-insensitive.
	f := form(p.ProductKey, p.ProductSecret, "SN-0002")
	f.Set("sign", strings.ToUpper(f.Get("sign")))
	if st, _, raw := register(t, s, f); st != 200 {
		t.Fatalf("upper-case sign: %d %s", st, raw)
	}
	// Plain HTTP does not serve it by default: the answer is a secret.
	resp, err := http.Post(s.URL+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(form(p.ProductKey, p.ProductSecret, "SN-0003").Encode()))
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("plain HTTP: %v %v", err, resp.StatusCode)
	}
	resp.Body.Close()
	// The default policy refuses a second registration.
	if st, r, raw := register(t, s, form(p.ProductKey, p.ProductSecret, "SN-0001")); st != 409 || r.Code != 6205 {
		t.Fatalf("replay: %d %s", st, raw)
	}
}

func TestWhitelistHandsOutTheSecretOnce(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("wl", map[string]any{"dynamicRegistration": "whitelist"})
	d := s.CreateDevice(p.ProductKey, "AA-BB-CC-01")
	st, r, raw := register(t, s, form(p.ProductKey, p.ProductSecret, "AA-BB-CC-01"))
	if st != 200 || r.Data.DeviceSecret != d.DeviceSecret {
		t.Fatalf("%d %s", st, raw)
	}
	if st, r, _ := register(t, s, form(p.ProductKey, p.ProductSecret, "AA-BB-CC-01")); st != 409 || r.Code != 6205 {
		t.Fatalf("second: %d %+v", st, r)
	}
	if st, r, _ := register(t, s, form(p.ProductKey, p.ProductSecret, "AA-BB-CC-99")); st != 404 || r.Code != 6204 {
		t.Fatalf("unknown name: %d %+v", st, r)
	}
	var dev struct{ SecretIssued bool }
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/AA-BB-CC-01", nil, 200).JSON(t, &dev)
	if !dev.SecretIssued {
		t.Fatal("secretIssued not set")
	}
}

func TestBadRegistrationsChangeNothing(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("auto", map[string]any{"dynamicRegistration": "auto"})
	off := s.CreateProduct("off", nil)
	good := form(p.ProductKey, p.ProductSecret, "dev-0001")
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = append([]string(nil), vv...)
		}
		f.Set(k, v)
		return f
	}
	tests := []struct {
		name   string
		f      url.Values
		status int
		code   int
	}{
		{"wrong signature", with("sign", strings.Repeat("ab", 32)), 401, 6201},
		{"signed with another secret", form(p.ProductKey, "not-the-secret", "dev-0001"), 401, 6201},
		{"unknown product", form("AAAAAAAAAAA", p.ProductSecret, "dev-0001"), 404, 6202},
		{"product not in dynamic mode", form(off.ProductKey, off.ProductSecret, "dev-0001"), 403, 6203},
		{"deviceName too short", form(p.ProductKey, p.ProductSecret, "abc"), 400, 460},
		{"deviceName with bad characters", form(p.ProductKey, p.ProductSecret, "dev 0001"), 400, 460},
		{"missing random", with("random", ""), 400, 460},
		{"sign not hex", with("sign", "zz"), 400, 460},
		{"unknown signMethod", with("signMethod", "rsa"), 400, 460},
		{"malformed productKey", with("productKey", "x"), 400, 460},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, r, raw := register(t, s, tt.f)
			if st != tt.status || r.Code != tt.code || r.Message == "" || r.Data.DeviceSecret != "" {
				t.Fatalf("got %d %s", st, raw)
			}
			if strings.Contains(raw, p.ProductSecret) {
				t.Fatal("secret in an error")
			}
		})
	}
	// Oversized body and a repeated field.
	resp, _ := insecure.Post("https://"+s.App.HTTPSAddr()+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(good.Encode()+"&pad="+strings.Repeat("x", 5000)))
	if resp.StatusCode != 413 {
		t.Fatalf("oversized: %d", resp.StatusCode)
	}
	resp.Body.Close()
	resp, _ = insecure.Post("https://"+s.App.HTTPSAddr()+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(good.Encode()+"&deviceName=other-01"))
	if resp.StatusCode != 400 {
		t.Fatalf("repeated field: %d", resp.StatusCode)
	}
	resp.Body.Close()
	var list struct{ Devices []any }
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices", nil, 200).JSON(t, &list)
	if len(list.Devices) != 0 {
		t.Fatalf("bad registrations created %d devices", len(list.Devices))
	}
	var audit struct {
		Entries []struct{ Action, Outcome, Reason string } `json:"entries"`
	}
	s.Admin("GET", "/v1/audit?action=registration.https&outcome=refused", nil, 200).JSON(t, &audit)
	if len(audit.Entries) < 8 {
		t.Fatalf("only %d refused attempts audited", len(audit.Entries))
	}
}

func TestRegisterOrQueryPolicies(t *testing.T) {
	s := apptest.Start(t)
	ret := s.CreateProduct("ret", map[string]any{"dynamicRegistration": "auto", "provisioning": map[string]any{"reRegister": "return"}})
	rot := s.CreateProduct("rot", map[string]any{"dynamicRegistration": "auto", "provisioning": map[string]any{"reRegister": "rotate"}})

	_, r1, _ := register(t, s, form(ret.ProductKey, ret.ProductSecret, "reset-01"))
	st, r2, raw := register(t, s, form(ret.ProductKey, ret.ProductSecret, "reset-01"))
	if st != 200 || r2.Data.DeviceSecret != r1.Data.DeviceSecret {
		t.Fatalf("return policy: %d %s", st, raw)
	}

	_, a, _ := register(t, s, form(rot.ProductKey, rot.ProductSecret, "reset-02"))
	// A live session with the old secret is closed by the rotation.
	ts := "2524608000000"
	m := hmac.New(sha256.New, []byte(a.Data.DeviceSecret))
	m.Write([]byte("clientId" + rot.ProductKey + ".reset-02deviceNamereset-02productKey" + rot.ProductKey + "timestamp" + ts))
	lost := make(chan struct{}, 1)
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID(rot.ProductKey + ".reset-02|timestamp=" + ts + "|").
		SetUsername("reset-02&" + rot.ProductKey).SetPassword(hex.EncodeToString(m.Sum(nil))).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	st, b, raw := register(t, s, form(rot.ProductKey, rot.ProductSecret, "reset-02"))
	if st != 200 || b.Data.DeviceSecret == a.Data.DeviceSecret || b.Data.DeviceSecret == "" {
		t.Fatalf("rotate policy: %d %s", st, raw)
	}
	select {
	case <-lost:
	case <-time.After(2 * time.Second):
		t.Fatal("old session not closed by rotation")
	}
	if connects(t, s, rot.ProductKey, "reset-02", a.Data.DeviceSecret) {
		t.Fatal("old secret still connects")
	}
	if !connects(t, s, rot.ProductKey, "reset-02", b.Data.DeviceSecret) {
		t.Fatal("new secret does not connect")
	}
	var audit struct {
		Entries []struct{ Outcome string } `json:"entries"`
	}
	s.Admin("GET", "/v1/audit?action=registration.https&target="+rot.ProductKey+"/reset-02", nil, 200).JSON(t, &audit)
	if len(audit.Entries) != 2 || audit.Entries[0].Outcome != "rotated" || audit.Entries[1].Outcome != "created" {
		t.Fatalf("audit: %+v", audit.Entries)
	}
}

// mqttRegister performs MQTT dynamic registration and returns the
// unsolicited answer.
func mqttRegister(t *testing.T, s *apptest.Server, pk, secret, dn, authType string) (string, map[string]string, error) {
	t.Helper()
	random := fmt.Sprintf("r4nd0m%d", randoms.Add(1))
	return mqttRegisterAs(t, s, dn+"."+pk+"|authType="+authType+",random="+random+",securemode=2,signmethod=hmacsha256|", dn+"&"+pk, regSign(secret, dn, pk, random))
}

// mqttRegisterAs connects over TLS with the given CONNECT fields and
// returns the registration answer.
func mqttRegisterAs(t *testing.T, s *apptest.Server, clientID, username, password string) (string, map[string]string, error) {
	t.Helper()
	got := make(chan paho.Message, 1)
	o := paho.NewClientOptions().AddBroker("ssl://" + s.App.Broker().Addr("tls")).
		SetTLSConfig(&tls.Config{InsecureSkipVerify: true}).
		SetClientID(clientID).SetUsername(username).SetPassword(password).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- m })
	c := paho.NewClient(o)
	err := apptest.ConnectMQTT(t, c)
	if err != nil {
		return "", nil, err
	}
	defer c.Disconnect(0)
	select {
	case m := <-got:
		var payload map[string]string
		if err := json.Unmarshal(m.Payload(), &payload); err != nil {
			t.Fatal(err)
		}
		return m.Topic(), payload, nil
	case <-time.After(5 * time.Second):
		t.Fatal("no registration answer")
	}
	return "", nil, nil
}

func TestMQTTDynamicRegistration(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("mq", map[string]any{"dynamicRegistration": "auto"})
	topic, ans, err := mqttRegister(t, s, p.ProductKey, p.ProductSecret, "mq-dev-01", "register")
	if err != nil || topic != "/ext/register" || ans["deviceSecret"] == "" || ans["productKey"] != p.ProductKey || ans["deviceName"] != "mq-dev-01" {
		t.Fatalf("register: %v %s %v", err, topic, ans)
	}
	if !connects(t, s, p.ProductKey, "mq-dev-01", ans["deviceSecret"]) {
		t.Fatal("MQTT-registered device cannot connect")
	}
	if _, _, err := mqttRegister(t, s, p.ProductKey, "wrong", "mq-dev-02", "register"); err == nil {
		t.Fatal("wrong product secret accepted")
	}
	// Registration without pre-registration: a token, then connwl.
	topic, ans, err = mqttRegister(t, s, p.ProductKey, p.ProductSecret, "mq-dev-03", "regnwl")
	if err != nil || topic != "/ext/regnwl" || ans["deviceToken"] == "" || ans["clientId"] == "" {
		t.Fatalf("regnwl: %v %s %v", err, topic, ans)
	}
	dial := func(token string) error {
		o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).
			SetClientID(ans["clientId"] + "|securemode=-2,authType=connwl|").SetUsername("mq-dev-03&" + p.ProductKey).SetPassword(token).SetAutoReconnect(false)
		c := paho.NewClient(o)
		err := apptest.ConnectMQTT(t, c)
		if err == nil {
			c.Disconnect(0)
		}
		return err
	}
	if err := dial(ans["deviceToken"]); err != nil {
		t.Fatalf("connwl with the token: %v", err)
	}
	if err := dial("wrong-token"); err == nil {
		t.Fatal("connwl with a wrong token accepted")
	}
}

func TestClientDrivenRegistrationHookAndEvents(t *testing.T) {
	var mu sync.Mutex
	var events []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		json.NewDecoder(r.Body).Decode(&req)
		if r.Header.Get("X-Corral-Signature") == "" {
			w.WriteHeader(401)
			return
		}
		switch {
		case r.URL.Path == "/events":
			mu.Lock()
			events = append(events, req)
			mu.Unlock()
		case req["deviceName"] == "SN-DENY-01":
			json.NewEncoder(w).Encode(map[string]any{"allow": false, "reason": "recalled batch"})
		case req["deviceName"] == "SN-SLOW-01":
			<-r.Context().Done() // never answers: corral gives up at its timeout
		default:
			json.NewEncoder(w).Encode(map[string]any{"allow": true, "attributes": map[string]string{"site": "plant-7"}})
		}
	}))
	defer hook.Close()
	s := apptest.Start(t, apptest.AllowWebhooksTo("127.0.0.0/8"))
	p := s.CreateProduct("client", map[string]any{"dynamicRegistration": "auto", "provisioning": map[string]any{
		"allow": []string{"SN-[A-Z]+-[0-9]{2}"}, "hookUrl": hook.URL + "/hook", "hookTimeoutMs": 200, "eventUrls": []string{hook.URL + "/events"}}})
	var key struct{ RegistrationKey string }
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/registration-key", nil, 200).JSON(t, &key)
	token := func(id string) string {
		m := hmac.New(sha256.New, []byte(key.RegistrationKey))
		m.Write([]byte(id))
		return hex.EncodeToString(m.Sum(nil))
	}
	// Its answer is a DeviceSecret: served on the HTTPS listener only.
	body := func(id, tok string) string {
		b, _ := json.Marshal(map[string]any{"productKey": p.ProductKey, "deviceId": id, "token": tok,
			"metadata": map[string]string{"model": "T-1000", "firmware": "1.2.3"}})
		return string(b)
	}
	if r := s.Do("", "POST", "/v1/register", body("SN-OK-09", token("SN-OK-09"))); r.Status != 404 || strings.Contains(string(r.Body), "deviceSecret") {
		t.Fatalf("client registration over plain HTTP: %d %s", r.Status, r.Body)
	}
	reg := func(id, tok string) (int, map[string]any) {
		resp, err := insecure.Post("https://"+s.App.HTTPSAddr()+"/v1/register", "application/json", strings.NewReader(body(id, tok)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	st, out := reg("SN-OK-01", token("SN-OK-01"))
	if st != 200 || out["deviceSecret"] == "" || out["outcome"] != "created" || out["endpoints"] == nil {
		t.Fatalf("client registration: %d %v", st, out)
	}
	var dev struct{ Attributes map[string]string }
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/SN-OK-01", nil, 200).JSON(t, &dev)
	if dev.Attributes["model"] != "T-1000" || dev.Attributes["site"] != "plant-7" {
		t.Fatalf("attributes from metadata and hook: %v", dev.Attributes)
	}
	for _, tt := range []struct {
		name, id, tok string
		status        int
	}{
		{"wrong token", "SN-OK-02", token("SN-OK-03"), 401},
		{"id outside the allowlist", "XX-1", token("XX-1"), 403},
		{"hook denies", "SN-DENY-01", token("SN-DENY-01"), 403},
		{"hook times out: denied", "SN-SLOW-01", token("SN-SLOW-01"), 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if st, out := reg(tt.id, tt.tok); st != tt.status {
				t.Fatalf("%d %v", st, out)
			}
			s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/"+tt.id, nil, 404)
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if n >= 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	kinds := map[string]int{}
	for _, e := range events {
		kinds[e["event"].(string)]++
	}
	if kinds["registration.succeeded"] != 1 || kinds["registration.refused"] != 4 {
		t.Fatalf("events: %v", kinds)
	}
}

func TestRegistrationEventsOnMQTTAndRateLimit(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.RegistrationRatePerIP = 2 })
	p := s.CreateProduct("auto", map[string]any{"dynamicRegistration": "auto"})
	kid, secret, _ := strings.Cut(s.AdminKey, ".")
	got := make(chan paho.Message, 10)
	o := paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID("backend").SetUsername(kid).SetPassword(secret)
	app := paho.NewClient(o)
	if tok := app.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer app.Disconnect(0)
	if tok := app.Subscribe("$corral/events/registration/"+p.ProductKey+"/+", 0, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	limited := false
	for i := 0; i < 10; i++ {
		st, _, _ := register(t, s, form(p.ProductKey, p.ProductSecret, "burst-"+string(rune('a'+i))+"-01"))
		if st == 429 {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 from 10 quick registrations at 2/s")
	}
	select {
	case m := <-got:
		var ev map[string]any
		json.Unmarshal(m.Payload(), &ev)
		if ev["event"] != "registration.succeeded" || ev["productKey"] != p.ProductKey {
			t.Fatalf("event %s", m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no registration event over MQTT")
	}
}

// TestLinkSDKWireFormats replays the bytes the Alibaba Link SDKs send and
// checks the answers against what their parsers need. iotkit-embedded v3
// (src/dynamic_register/dynreg.c) posts an unencoded form with the fixed
// random "8Ygb7ULYh53B6OA" and an upper-case hex sign, reads at most 256
// bytes, and scans the body by hand: "code" must come first with its digits
// right after the colon, "data" must open an object, and the values inside
// it must be strings. Link SDK C v4 (components/dynreg) sends a decimal
// random, requires HTTP 200 and keeps 192 bytes of body. Both then connect
// with the clientId forms of their dev_sign_mqtt.c / core_auth.c.
func TestLinkSDKWireFormats(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("sdk", map[string]any{"dynamicRegistration": "auto"})
	longest := strings.Repeat("d", 28) + "-v3x" // the longest DeviceName: 32 characters
	for _, tc := range []struct{ sdk, dn, random string }{
		{"v3", longest, "8Ygb7ULYh53B6OA"},
		{"v4", "sdk-v4-device", "2739187466"},
	} {
		sign := strings.ToUpper(regSign(p.ProductSecret, tc.dn, p.ProductKey, tc.random))
		body := "productKey=" + p.ProductKey + "&deviceName=" + tc.dn + "&random=" + tc.random + "&sign=" + sign + "&signMethod=hmacsha256"
		req, _ := http.NewRequest("POST", "https://"+s.App.HTTPSAddr()+"/auth/register/device", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/xml,text/javascript,text/html,application/json")
		resp, err := insecure.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		reply := strings.TrimSpace(string(raw))
		if resp.StatusCode != 200 || len(reply) >= 192 || !strings.HasPrefix(reply, `{"code":200,"data":{`) || strings.ContainsAny(reply, " \n\t") {
			t.Fatalf("%s: %d, %d bytes: %s", tc.sdk, resp.StatusCode, len(reply), reply)
		}
		var r regReply
		if err := json.Unmarshal(raw, &r); err != nil || r.Data.DeviceName != tc.dn || len(r.Data.DeviceSecret) != 32 {
			t.Fatalf("%s: %v %s", tc.sdk, err, reply)
		}
		var data map[string]any
		json.Unmarshal([]byte(reply[strings.Index(reply, `"data":`)+7:strings.Index(reply, `},"message"`)+1]), &data)
		for k, v := range data {
			if _, ok := v.(string); !ok {
				t.Fatalf("%s: data.%s is not a string: %s", tc.sdk, k, reply)
			}
		}
		// Connect as that SDK would: its clientId form, an upper-case password.
		ts := "2524608000000"
		id := p.ProductKey + "." + tc.dn
		m := hmac.New(sha256.New, []byte(r.Data.DeviceSecret))
		m.Write([]byte("clientId" + id + "deviceName" + tc.dn + "productKey" + p.ProductKey + "timestamp" + ts))
		cid := map[string]string{
			"v3": id + "|timestamp=" + ts + ",securemode=3,signmethod=hmacsha256,gw=0,ext=0,a=sdk-c-3.0.1|",
			"v4": id + "|timestamp=" + ts + ",_ss=1,_v=sdk-c-4.1.0,securemode=3,signmethod=hmacsha256,ext=3,|",
		}[tc.sdk]
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.App.Broker().Addr("tcp")).SetClientID(cid).
			SetUsername(tc.dn + "&" + p.ProductKey).SetPassword(strings.ToUpper(hex.EncodeToString(m.Sum(nil)))).SetAutoReconnect(false))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect: %v", tc.sdk, tok.Error())
		}
		c.Disconnect(0)
	}
}

// TestMQTTRegistrationLuatOSForm: LuatOS's aliyun library (a common
// firmware for cellular modules) registers over MQTT with only the
// DeviceName before the "|", HMAC-SHA1, a Unix-seconds random, securemode
// -2 for regnwl and an instanceId item.
func TestMQTTRegistrationLuatOSForm(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("luat", map[string]any{"dynamicRegistration": "auto"})
	sign := func(dn, random string) string {
		m := hmac.New(sha1.New, []byte(p.ProductSecret))
		m.Write([]byte("deviceName" + dn + "productKey" + p.ProductKey + "random" + random))
		return strings.ToUpper(hex.EncodeToString(m.Sum(nil)))
	}
	topic, ans, err := mqttRegisterAs(t, s, "luat-01|securemode=2,authType=register,random=1764130000,signmethod=hmacsha1|", "luat-01&"+p.ProductKey, sign("luat-01", "1764130000"))
	if err != nil || topic != "/ext/register" || len(ans["deviceSecret"]) != 32 {
		t.Fatalf("register: %v %s %v", err, topic, ans)
	}
	if !connects(t, s, p.ProductKey, "luat-01", ans["deviceSecret"]) {
		t.Fatal("registered device cannot connect")
	}
	topic, ans, err = mqttRegisterAs(t, s, "luat-02|securemode=-2,authType=regnwl,random=1764130001,signmethod=hmacsha1,instanceId=iot-06z00|", "luat-02&"+p.ProductKey, sign("luat-02", "1764130001"))
	if err != nil || topic != "/ext/regnwl" || ans["deviceToken"] == "" {
		t.Fatalf("regnwl: %v %s %v", err, topic, ans)
	}
}

// TestPerProductRegistrationLimit: a product's registration budget is its
// own. At 0.01/s (a burst of one, refilled after 100 s) the product's
// second registration is refused with 429 / 6208 and creates nothing,
// while another product, from the same address, still registers.
func TestPerProductRegistrationLimit(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.RegistrationRatePerIP = 0; c.RegistrationRatePerPK = 0.01 })
	a := s.CreateProduct("a", map[string]any{"dynamicRegistration": "auto"})
	b := s.CreateProduct("b", map[string]any{"dynamicRegistration": "auto"})
	if st, r, body := register(t, s, form(a.ProductKey, a.ProductSecret, "first-01")); st != 200 || r.Code != 200 {
		t.Fatalf("first registration of product a: %d %s", st, body)
	}
	st, r, body := register(t, s, form(a.ProductKey, a.ProductSecret, "second-01"))
	if st != 429 || r.Code != 6208 || !strings.Contains(r.Message, "this product") {
		t.Fatalf("second registration of product a: %d %s; want 429 with code 6208 naming the product", st, body)
	}
	if got := s.Do(s.AdminKey, "GET", "/v1/products/"+a.ProductKey+"/devices/second-01", nil); got.Status != 404 {
		t.Fatalf("a refused registration created the device: %d %s", got.Status, got.Body)
	}
	if st, r, body := register(t, s, form(b.ProductKey, b.ProductSecret, "other-01")); st != 200 || r.Code != 200 || r.Data.DeviceSecret == "" {
		t.Fatalf("product b, same address, after product a was limited: %d %s", st, body)
	}
}
