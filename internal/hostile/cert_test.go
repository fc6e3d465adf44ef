package hostile_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

// --- certificates and keys ---

type certCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func certNewCA(t *testing.T, cn string) certCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return certCA{c, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// certLeaf is a device certificate with its key.
type certLeaf struct {
	pair tls.Certificate
	pem  string
	key  crypto.Signer
}

// certIssue makes a leaf certificate for cn with a key of kind ("ecdsa",
// "rsa" or "ed25519"), signed by ca (nil: self-signed).
func certIssue(t *testing.T, ca *certCA, cn, kind string) certLeaf {
	t.Helper()
	var key crypto.Signer
	switch kind {
	case "rsa":
		key, _ = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	default:
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return certLeaf{pair: pair, pem: string(certPEM), key: key}
}

// certSign signs a challenge as a device would: SHA-256 then the key's
// scheme (Ed25519 signs the message itself).
func certSign(t *testing.T, key crypto.Signer, challenge string) string {
	t.Helper()
	var sig []byte
	var err error
	if _, ok := key.(ed25519.PrivateKey); ok {
		sig, err = key.Sign(rand.Reader, []byte(challenge), crypto.Hash(0))
	} else {
		sum := sha256.Sum256([]byte(challenge))
		sig, err = key.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// certRegisterCA registers ca in tenant's account (mode jitr or jitp, devices into pk).
func (w *world) certRegisterCA(t *testing.T, tn tenant, ca certCA, mode, pk string) string {
	t.Helper()
	var code struct{ RegistrationCode string }
	w.do(tn.Admin, "GET", "/v1/cas/registration-code", nil, 200).JSON(t, &code)
	ver := certIssue(t, &ca, code.RegistrationCode, "ecdsa")
	var out struct{ ID string }
	w.do(tn.Admin, "POST", "/v1/cas", map[string]any{"certificatePem": ca.pem, "verificationCertificatePem": ver.pem, "mode": mode,
		"template": map[string]any{"productKey": pk}}, 201).JSON(t, &out)
	return out.ID
}

// certServerPool trusts the server's generated local CA.
func (w *world) certServerPool(t *testing.T) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(w.S.Config.DataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("no CA in the data directory")
	}
	return pool
}

// certDial connects on the TLS listener with a client certificate and an
// optional username; it returns the CONNECT error (nil: accepted).
func (w *world) certDial(t *testing.T, leaf certLeaf, username string) error {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("ssl://" + w.S.App.Broker().Addr("tls")).SetClientID("x509").SetAutoReconnect(false).
		SetConnectRetry(false).SetUsername(username).
		SetTLSConfig(&tls.Config{RootCAs: w.certServerPool(t), ServerName: "localhost", Certificates: []tls.Certificate{leaf.pair}})
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("TLS CONNECT: no CONNACK within 5 s")
	}
	if tok.Error() == nil {
		c.Disconnect(0)
	}
	return tok.Error()
}

func certPath(d apptest.Device) string {
	return "/v1/products/" + d.ProductKey + "/devices/" + d.DeviceName + "/certificate"
}

// certChallenge fetches a binding challenge for d.
func (w *world) certChallenge(t *testing.T, token string, d apptest.Device) string {
	t.Helper()
	var ch struct {
		Challenge string `json:"challenge"`
	}
	w.do(token, "GET", certPath(d)+"/challenge", nil, 200).JSON(t, &ch)
	if ch.Challenge == "" {
		t.Fatal("empty challenge")
	}
	return ch.Challenge
}

// --- item 5: device hijack through certificate binding ---

// TestCertHijackAcrossAccounts: account 2 binds the (public) certificate
// of a device that account 1's CA issued to its own device. That must be
// refused, and the real device must connect as account 1's.
func TestCertHijackAcrossAccounts(t *testing.T) {
	w := newWorld(t)
	ca := certNewCA(t, "T1 factory")
	w.certRegisterCA(t, w.T1, ca, "jitp", w.T1.Direct.ProductKey)
	victim := certIssue(t, &ca, "cam-0001", "ecdsa")

	r := w.S.Do(w.T2.Admin, "PUT", certPath(w.T2.DevA), map[string]any{"certificatePem": victim.pem})
	if r.Status < 400 || r.Status >= 500 {
		t.Fatalf("account 2 bound account 1's CA-issued certificate: %d %s", r.Status, r.Body)
	}
	// Even with proof of possession (the attacker holding the key), a
	// certificate of account 1's CA never becomes account 2's device.
	ch := w.certChallenge(t, w.T2.Admin, w.T2.DevA)
	r = w.S.Do(w.T2.Admin, "PUT", certPath(w.T2.DevA), map[string]any{"certificatePem": victim.pem, "challenge": ch, "signature": certSign(t, victim.key, ch)})
	if r.Status < 400 || r.Status >= 500 {
		t.Fatalf("account 2 bound account 1's CA-issued certificate with proof: %d %s", r.Status, r.Body)
	}
	// The attempts are on account 2's audit trail.
	var trail struct {
		Entries []struct{ Outcome string } `json:"entries"`
	}
	w.do(w.T2.Admin, "GET", "/v1/audit?action=device.certificate.bind&outcome=refused", nil, 200).JSON(t, &trail)
	if len(trail.Entries) != 2 {
		t.Fatalf("audit of refused bindings: %+v", trail.Entries)
	}
	// The real device provisions itself into account 1 (JITP).
	if err := w.certDial(t, victim, "cam-0001&"+w.T1.Direct.ProductKey); err != nil {
		t.Fatalf("the real device does not connect as account 1's cam-0001: %v", err)
	}
	w.do(w.T1.Admin, "GET", "/v1/products/"+w.T1.Direct.ProductKey+"/devices/cam-0001", nil, 200)
	var dev struct {
		CertificateFingerprint string `json:"certificateFingerprint"`
	}
	w.do(w.T2.Admin, "GET", "/v1/products/"+w.T2.Direct.ProductKey+"/devices/devA", nil, 200).JSON(t, &dev)
	if dev.CertificateFingerprint != "" {
		t.Fatalf("account 2's devA carries certificate %s", dev.CertificateFingerprint)
	}
}

// TestCertBoundElsewhereConflicts: a certificate is bound to at most one
// device in the instance.
func TestCertBoundElsewhereConflicts(t *testing.T) {
	w := newWorld(t)
	leaf := certIssue(t, nil, "self-1", "ecdsa")
	w.do(w.T1.Operator, "PUT", certPath(w.T1.DevA), map[string]any{"certificatePem": leaf.pem}, 200)
	w.do(w.T1.Operator, "PUT", certPath(w.T1.DevA), map[string]any{"certificatePem": leaf.pem}, 200) // idempotent
	w.do(w.T1.Operator, "PUT", certPath(w.T1.DevB), map[string]any{"certificatePem": leaf.pem}, 409)
	w.do(w.T2.Operator, "PUT", certPath(w.T2.DevA), map[string]any{"certificatePem": leaf.pem}, 409)
	ch := w.certChallenge(t, w.T2.Operator, w.T2.DevA)
	w.do(w.T2.Operator, "PUT", certPath(w.T2.DevA), map[string]any{"certificatePem": leaf.pem, "challenge": ch, "signature": certSign(t, leaf.key, ch)}, 409)
	if err := w.certDial(t, leaf, "devA&"+w.T1.Direct.ProductKey); err != nil {
		t.Fatalf("the certificate's device does not connect: %v", err)
	}
	// A readonly key neither binds nor asks for a challenge.
	w.do(w.T1.Readonly, "GET", certPath(w.T1.DevB)+"/challenge", nil, 403)
}

// TestCertProofOfPossession: a certificate from a CA corral does not know
// binds only with a signature, by the certificate's key, over a challenge
// corral issued for that device.
func TestCertProofOfPossession(t *testing.T) {
	w := newWorld(t)
	foreign := certNewCA(t, "somebody's CA")
	for i, kind := range []string{"ecdsa", "rsa", "ed25519"} {
		d := []apptest.Device{w.T1.DevA, w.T1.DevB, w.T1.GW}[i]
		leaf := certIssue(t, &foreign, "leaf-"+kind, kind)
		other := certIssue(t, &foreign, "other-"+kind, kind)
		// No proof: refused, and the error says what to do.
		r := w.do(w.T1.Operator, "PUT", certPath(d), map[string]any{"certificatePem": leaf.pem}, 400)
		if !strings.Contains(string(r.Body), "challenge") {
			t.Fatalf("%s: refusal does not say how to prove possession: %s", kind, r.Body)
		}
		ch := w.certChallenge(t, w.T1.Operator, d)
		// Signed by another key, for another device, or garbled: refused.
		w.do(w.T1.Operator, "PUT", certPath(d), map[string]any{"certificatePem": leaf.pem, "challenge": ch, "signature": certSign(t, other.key, ch)}, 400)
		chOther := w.certChallenge(t, w.T1.Operator, w.T1.Sub1)
		w.do(w.T1.Operator, "PUT", certPath(d), map[string]any{"certificatePem": leaf.pem, "challenge": chOther, "signature": certSign(t, leaf.key, chOther)}, 400)
		w.do(w.T1.Operator, "PUT", certPath(d), map[string]any{"certificatePem": leaf.pem, "challenge": ch + "x", "signature": certSign(t, leaf.key, ch+"x")}, 400)
		w.do(w.T1.Operator, "PUT", certPath(d), map[string]any{"certificatePem": leaf.pem, "challenge": ch, "signature": "not base64!"}, 400)
		// A challenge of account 1's device is no good to account 2.
		w.do(w.T2.Operator, "PUT", certPath(w.T2.DevA), map[string]any{"certificatePem": leaf.pem, "challenge": ch, "signature": certSign(t, leaf.key, ch)}, 400)
		if err := w.certDial(t, leaf, ""); err == nil {
			t.Fatalf("%s: refused binding still lets the certificate connect", kind)
		}
		// The right signature binds.
		w.do(w.T1.Operator, "PUT", certPath(d), map[string]any{"certificatePem": leaf.pem, "challenge": ch, "signature": certSign(t, leaf.key, ch)}, 200)
		if err := w.certDial(t, leaf, d.DeviceName+"&"+d.ProductKey); err != nil {
			t.Fatalf("%s: bound certificate does not connect: %v", kind, err)
		}
	}
	// A certificate of a CA registered in the same account needs no proof.
	own := certNewCA(t, "T2 factory")
	w.certRegisterCA(t, w.T2, own, "jitr", w.T2.Direct.ProductKey)
	leaf := certIssue(t, &own, "whatever", "ecdsa")
	w.do(w.T2.Operator, "PUT", certPath(w.T2.DevB), map[string]any{"certificatePem": leaf.pem}, 200)
	if err := w.certDial(t, leaf, "devB&"+w.T2.Direct.ProductKey); err != nil {
		t.Fatalf("own-CA certificate does not connect: %v", err)
	}
}

// TestCertJITPDoesNotReplace: a CA-issued certificate naming a device
// that already has another certificate leaves it pending, with an event,
// instead of silently replacing the device's certificate.
func TestCertJITPDoesNotReplace(t *testing.T) {
	w := newWorld(t)
	first := certIssue(t, nil, "devA", "ecdsa")
	w.do(w.T1.Operator, "PUT", certPath(w.T1.DevA), map[string]any{"certificatePem": first.pem}, 200)
	ca := certNewCA(t, "T1 factory")
	w.certRegisterCA(t, w.T1, ca, "jitp", w.T1.Direct.ProductKey)

	app := w.app(t, w.T1.Readonly)
	in := newInbox()
	mustSubscribe(t, app, "$corral/events/certificate/"+w.T1.Direct.ProductKey+"/devA", in)
	second := certIssue(t, &ca, "devA", "ecdsa")
	if err := w.certDial(t, second, ""); err == nil {
		t.Fatal("JITP replaced devA's certificate")
	}
	var ev struct{ Event string }
	if err := json.Unmarshal(in.next(t).Payload(), &ev); err != nil || ev.Event != "certificate.pending" {
		t.Fatalf("event %+v %v, want certificate.pending", ev, err)
	}
	if err := w.certDial(t, first, "devA&"+w.T1.Direct.ProductKey); err != nil {
		t.Fatalf("devA's own certificate no longer connects: %v", err)
	}
	var list struct {
		Certificates []struct {
			Fingerprint string `json:"fingerprint"`
			DeviceName  string `json:"deviceName"`
			Status      string `json:"status"`
		} `json:"certificates"`
	}
	w.do(w.T1.Readonly, "GET", "/v1/certificates?status=pending", nil, 200).JSON(t, &list)
	if len(list.Certificates) != 1 || list.Certificates[0].DeviceName != "devA" {
		t.Fatalf("pending certificates: %+v", list.Certificates)
	}
	if err := w.certDial(t, second, ""); err == nil {
		t.Fatal("the pending certificate connects on a second try")
	}
	// Account 2 cannot activate account 1's pending certificate; account
	// 1's operator can, explicitly replacing devA's certificate.
	fp := list.Certificates[0].Fingerprint
	w.do(w.T2.Operator, "POST", "/v1/certificates/"+fp+":activate", nil, 404)
	w.do(w.T1.Operator, "POST", "/v1/certificates/"+fp+":activate", nil, 200)
	if err := w.certDial(t, second, "devA&"+w.T1.Direct.ProductKey); err != nil {
		t.Fatalf("activated certificate: %v", err)
	}
	if err := w.certDial(t, first, ""); err == nil {
		t.Fatal("the replaced certificate still connects")
	}
	// A device with no certificate yet is still provisioned at once.
	if err := w.certDial(t, certIssue(t, &ca, "devB", "ecdsa"), "devB&"+w.T1.Direct.ProductKey); err != nil {
		t.Fatalf("JITP for devB: %v", err)
	}
}

// --- item 7: the DeviceSecret travels only over TLS ---

func provSign(secret, dn, pk, random string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("deviceName" + dn + "productKey" + pk + "random" + random))
	return hex.EncodeToString(m.Sum(nil))
}

func provForm(p apptest.Product, dn, random string) url.Values {
	return url.Values{"productKey": {p.ProductKey}, "deviceName": {dn}, "random": {random}, "signMethod": {"hmacsha256"},
		"sign": {provSign(p.ProductSecret, dn, p.ProductKey, random)}}
}

// provRegister posts a dynamic registration to base (http:// or https://).
func (w *world) provRegister(t *testing.T, base string, f url.Values) (int, struct {
	Code int `json:"code"`
	Data struct {
		DeviceSecret string `json:"deviceSecret"`
	} `json:"data"`
	Message string `json:"message"`
}) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.certServerPool(t), ServerName: "localhost"}}}
	resp, err := cl.Post(base+"/auth/register/device", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Code int `json:"code"`
		Data struct {
			DeviceSecret string `json:"deviceSecret"`
		} `json:"data"`
		Message string `json:"message"`
	}
	json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

func (w *world) httpsBase() string { return "https://" + w.S.App.HTTPSAddr() }

// provMQTTRegister runs MQTT dynamic registration on a listener ("tcp",
// "tls" or "ws") and returns the answer's payload or the CONNECT error.
func (w *world) provMQTTRegister(t *testing.T, listener string, p apptest.Product, dn, random string) (map[string]string, error) {
	t.Helper()
	return w.provMQTTRegisterAs(t, listener, "register", p, dn, random)
}

func (w *world) provMQTTRegisterAs(t *testing.T, listener, authType string, p apptest.Product, dn, random string) (map[string]string, error) {
	t.Helper()
	got := make(chan paho.Message, 1)
	addr := w.S.App.Broker().Addr(listener)
	broker := map[string]string{"tcp": "tcp://" + addr, "tls": "ssl://" + addr, "ws": "ws://" + addr + "/mqtt"}[listener]
	o := paho.NewClientOptions().AddBroker(broker).
		SetTLSConfig(&tls.Config{RootCAs: w.certServerPool(t), ServerName: "localhost"}).
		SetClientID(dn + "." + p.ProductKey + "|authType=" + authType + ",random=" + random + ",securemode=2,signmethod=hmacsha256|").
		SetUsername(dn + "&" + p.ProductKey).SetPassword(provSign(p.ProductSecret, dn, p.ProductKey, random)).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- m })
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("registration CONNECT: no CONNACK within 5 s")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	defer c.Disconnect(0)
	select {
	case m := <-got:
		var ans map[string]string
		if err := json.Unmarshal(m.Payload(), &ans); err != nil {
			t.Fatal(err)
		}
		return ans, nil
	case <-time.After(5 * time.Second):
		t.Fatal("no registration answer")
		return nil, nil
	}
}

// TestDynRegOnlyOverTLS: neither HTTP nor MQTT dynamic registration hands
// out a DeviceSecret on a plain listener by default.
func TestDynRegOnlyOverTLS(t *testing.T) {
	w := newWorld(t)
	p := w.S.CreateProduct("auto", map[string]any{"dynamicRegistration": "auto"})
	if st, ans := w.provRegister(t, w.S.URL, provForm(p, "plain-01", "r1")); st == 200 || ans.Data.DeviceSecret != "" {
		t.Fatalf("plain HTTP registration answered %d with a secret", st)
	}
	for _, l := range []string{"tcp", "ws"} {
		for _, auth := range []string{"register", "regnwl"} {
			ans, err := w.provMQTTRegisterAs(t, l, auth, p, "plain-"+l, "r1")
			if err == nil || ans["deviceSecret"] != "" || ans["deviceToken"] != "" {
				t.Fatalf("MQTT %s on the %s listener accepted: %v", auth, l, ans)
			}
			if !strings.Contains(strings.ToLower(err.Error()), "not authori") {
				t.Fatalf("%s %s: want CONNACK not authorized, got %v", l, auth, err)
			}
		}
	}
	// Nothing was created by the refused attempts.
	for _, dn := range []string{"plain-01", "plain-tcp", "plain-ws"} {
		w.do(w.T1.Admin, "GET", "/v1/products/"+p.ProductKey+"/devices/"+dn, nil, 404)
	}
	if st, ans := w.provRegister(t, w.httpsBase(), provForm(p, "tls-01", "r1")); st != 200 || ans.Data.DeviceSecret == "" {
		t.Fatalf("HTTPS registration: %d %+v", st, ans)
	}
	if ans, err := w.provMQTTRegister(t, "tls", p, "tls-02", "r1"); err != nil || ans["deviceSecret"] == "" {
		t.Fatalf("MQTT registration over TLS: %v %v", err, ans)
	}
}

// TestDynRegPlainLabSettings: the lab settings open the plain listeners.
func TestDynRegPlainLabSettings(t *testing.T) {
	w := newWorld(t, func(c *config.Config) { c.DynRegPlainHTTP, c.MQTTRegisterPlain = true, true })
	p := w.S.CreateProduct("auto", map[string]any{"dynamicRegistration": "auto"})
	if st, ans := w.provRegister(t, w.S.URL, provForm(p, "lab-01", "r1")); st != 200 || ans.Data.DeviceSecret == "" {
		t.Fatalf("plain HTTP registration with dynreg_plain_http: %d %+v", st, ans)
	}
	if ans, err := w.provMQTTRegister(t, "tcp", p, "lab-02", "r1"); err != nil || ans["deviceSecret"] == "" {
		t.Fatalf("plain MQTT registration with mqtt_register_plain: %v %v", err, ans)
	}
}

// --- item 14: a captured registration request is good once ---

func TestRegistrationReplayRefused(t *testing.T) {
	w := newWorld(t)
	ret := w.S.CreateProduct("return", map[string]any{"dynamicRegistration": "auto", "provisioning": map[string]any{"reRegister": "return"}})
	st, first := w.provRegister(t, w.httpsBase(), provForm(ret, "ret-01", "captured"))
	if st != 200 || first.Data.DeviceSecret == "" {
		t.Fatalf("first registration: %d %+v", st, first)
	}
	if st, again := w.provRegister(t, w.httpsBase(), provForm(ret, "ret-01", "captured")); st == 200 || again.Data.DeviceSecret != "" {
		t.Fatalf("replayed registration returned the secret: %d", st)
	}
	if ans, err := w.provMQTTRegister(t, "tls", ret, "ret-01", "captured"); err == nil {
		t.Fatalf("replay over MQTT returned %v", ans)
	}
	// The real device, with a fresh random, still gets its secret back.
	if st, again := w.provRegister(t, w.httpsBase(), provForm(ret, "ret-01", "fresh")); st != 200 || again.Data.DeviceSecret != first.Data.DeviceSecret {
		t.Fatalf("fresh re-registration: %d", st)
	}
	// The same random for another device is no replay.
	if st, _ := w.provRegister(t, w.httpsBase(), provForm(ret, "ret-02", "captured")); st != 200 {
		t.Fatalf("same random, other device: %d", st)
	}

	rot := w.S.CreateProduct("rotate", map[string]any{"dynamicRegistration": "auto", "provisioning": map[string]any{"reRegister": "rotate"}})
	st, r1 := w.provRegister(t, w.httpsBase(), provForm(rot, "rot-01", "captured"))
	if st != 200 {
		t.Fatalf("first registration: %d", st)
	}
	dev := apptest.Device{ProductKey: rot.ProductKey, DeviceName: "rot-01", DeviceSecret: r1.Data.DeviceSecret}
	c := w.device(t, dev)
	if st, _ := w.provRegister(t, w.httpsBase(), provForm(rot, "rot-01", "captured")); st == 200 {
		t.Fatal("replayed registration rotated the secret")
	}
	publish(t, c, "/"+rot.ProductKey+"/rot-01/user/still-here", "x")
	if !c.IsConnectionOpen() {
		t.Fatal("the real device was kicked by the replay")
	}
	w.device(t, dev) // its secret still works
}

// --- item 15: product changes take effect at once ---

func TestProductChangesApplyAtOnce(t *testing.T) {
	w := newWorld(t)
	pk := w.T1.Direct.ProductKey
	w.device(t, w.T1.DevA).Disconnect(0) // the broker now has the product's settings
	w.do(w.T1.Operator, "PATCH", "/v1/products/"+pk, map[string]any{"authType": "x509"}, 200)
	c := paho.NewClient(w.deviceOptions(w.T1.DevA))
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("password CONNECT accepted right after the product became certificate-only")
	}
	w.do(w.T1.Operator, "PATCH", "/v1/products/"+pk, map[string]any{"authType": "secret"}, 200)
	w.device(t, w.T1.DevA)

	p := w.S.CreateProduct("auto", map[string]any{"dynamicRegistration": "auto"})
	if st, _ := w.provRegister(t, w.httpsBase(), provForm(p, "on-01", "r1")); st != 200 {
		t.Fatalf("registration: %d", st)
	}
	w.do(w.T1.Operator, "PATCH", "/v1/products/"+p.ProductKey, map[string]any{"dynamicRegistration": "off"}, 200)
	if st, _ := w.provRegister(t, w.httpsBase(), provForm(p, "off-01", "r1")); st == 200 {
		t.Fatal("registration accepted right after registration was turned off")
	}
	if _, err := w.provMQTTRegister(t, "tls", p, "off-02", "r1"); err == nil {
		t.Fatal("MQTT registration accepted right after registration was turned off")
	}
}
