package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// session is what the broker knows of one authenticated connection.
type session struct {
	id       identity
	listener string
	remote   string
	reason   atomic.Value // string: why corral closed it
	// gw is, for a sub-device session, the gateway's connection it was
	// logged in through: a later connection of the gateway does not
	// inherit it.
	gw *mqtt.Client
}

// hook plugs corral into mochi-mqtt: authentication, rights, presence.
type hook struct {
	mqtt.HookBase
	b *Broker

	mu        sync.RWMutex
	sessions  map[*mqtt.Client]*session
	devices   map[string]*mqtt.Client        // deviceKey -> current client
	apps      map[string]*session            // application client id -> session
	subs      map[string]map[string]*session // gateway deviceKey -> sub deviceKey -> sub-device session
	subOf     map[string]string              // sub deviceKey -> gateway deviceKey
	subThings map[string]string              // logged-in sub-device's thing name -> sub deviceKey

	owners   *cache.Cache[string, string]           // ProductKey -> owning account id
	products *cache.Cache[string, registry.Product] // ProductKey -> connect settings (no secret)
	things   *cache.Cache[string, string]           // explicit thing name -> owning account id
	keys     *cache.Cache[string, registry.Role]    // API key id -> its role now, or keyDeleted
}

// keyDeleted marks a deleted key in hook.keys.
const keyDeleted registry.Role = ""

// noteKey remembers a key's deletion or new role. Key ids are never
// reused, and a change matters only to a CONNECT that was being
// authenticated as it happened, so entries live a minute.
func (h *hook) noteKey(kind registry.KeyEventKind, k registry.APIKey) {
	if kind == registry.KeyDeleted {
		h.keys.Set(k.ID, keyDeleted)
		return
	}
	h.keys.Set(k.ID, k.Role)
}

// keyStale reports whether an application session was authenticated with
// a key that has since been deleted or given another role.
func (h *hook) keyStale(id identity) bool {
	r, ok := h.keys.Get(id.keyID)
	return ok && r != id.role
}

func newHook(b *Broker) *hook {
	return &hook{b: b, sessions: map[*mqtt.Client]*session{}, devices: map[string]*mqtt.Client{}, apps: map[string]*session{},
		subs: map[string]map[string]*session{}, subOf: map[string]string{}, subThings: map[string]string{},
		owners:   cache.New[string, string](cache.Options{Now: b.o.Now}),
		products: cache.New[string, registry.Product](cache.Options{TTL: productTTL, Now: b.o.Now}),
		things:   cache.New[string, string](cache.Options{TTL: productTTL, Now: b.o.Now}),
		keys:     cache.New[string, registry.Role](cache.Options{TTL: time.Minute, Now: b.o.Now})}
}

func (h *hook) ID() string { return "corral" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished,
		mqtt.OnDisconnect, mqtt.OnPublish, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnPacketSent, mqtt.OnPublishDropped, mqtt.OnPacketEncode,
	}, []byte{b})
}

func (h *hook) session(cl *mqtt.Client) *session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.sessions[cl]
}

func (h *hook) deviceClient(pk, dn string) *mqtt.Client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	cl := h.devices[deviceKey(pk, dn)]
	if cl != nil && cl.Closed() {
		return nil
	}
	return cl
}

func (h *hook) setDisconnectReason(cl *mqtt.Client, r string) {
	if s := h.session(cl); s != nil {
		s.reason.Store(r)
	}
}

// refusal is a refused CONNECT: the reason code, and why (for logs and audit).
type refusal struct {
	code   packets.Code
	reason string
}

func (r *refusal) Error() string { return r.reason }

// OnConnect authenticates the client. Refusals are answered here with the
// precise CONNACK code (mochi's own path can only say "bad username or
// password"), then the connection is closed.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	start := time.Now()
	// The CONNECT is in: authentication and the CONNACK get a deadline of
	// their own; mochi sets the keepalive one after this hook.
	cl.Net.Conn.SetDeadline(time.Now().Add(h.b.o.ConnectTimeout)) // network deadlines are wall-clock
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// An address or device in back-off for failed logins is answered
	// "server busy" before any credential is looked at.
	src, user := sourceKey(cl.Net.Remote), limiterKey(pk)
	if ok, why := h.b.logins.check(src, user); !ok {
		return h.refuse(ctx, cl, pk, h.knownAccount(user), src, &refusal{code: packets.ErrServerBusy, reason: why})
	}
	// Authentication reads the store, whose SQLite code grows goroutine
	// stacks deep; doing it on a short-lived goroutine keeps the
	// connection's own goroutine (which lives as long as the session)
	// small, which is most of what an idle connection costs.
	type result struct {
		id  identity
		err error
	}
	done := make(chan result, 1)
	go func() {
		id, err := h.authenticate(ctx, cl, pk)
		done <- result{id, err}
	}()
	r := <-done
	id, err := r.id, r.err
	if err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			r = &refusal{code: packets.ErrServerUnavailable, reason: "internal error"}
			h.b.log.Error("authenticating", "err", err)
		} else {
			h.b.logins.failed(src, user)
		}
		return h.refuse(ctx, cl, pk, id, src, r)
	}
	// Wills are held to the same rights as publishes (mochi lets wills
	// bypass its ACL): a will outside the client's rights is dropped.
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 && !h.mayPublish(ctx, id, cl.Properties.Will.TopicName) {
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
		cl.Properties.Will = mqtt.Will{}
		h.b.m.aclDenied.WithLabelValues("will").Inc()
		h.b.log.Info("last will dropped: topic outside the client's rights", "clientId", id.clientID)
	}
	cl.ID = id.clientID
	h.awaitEndedSession(cl)
	admitConn(cl.Net.Conn)
	s := &session{id: id, listener: cl.Net.Listener, remote: cl.Net.Remote}
	h.mu.Lock()
	h.sessions[cl] = s
	if id.app {
		h.apps[id.clientID] = s
	} else if id.register == nil {
		// Known before the CONNACK, so a kick right after it finds the session.
		h.devices[deviceKey(id.productKey, id.deviceName)] = cl
	}
	h.mu.Unlock()
	h.b.m.authSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// awaitEndedSession waits, briefly, for an earlier connection of the same
// client id that has already been stopped (kicked, or dropped) to finish
// mochi's clean-up of its clean session. That clean-up, run on the old
// connection's goroutine, unsubscribes every filter it held by client id
// and deletes the id from the client map: if the new connection got in
// first, it would lose the subscriptions corral just gave it (_ss=1) and
// every delivery (mochi finds subscribers by id). A live earlier
// connection is taken over by mochi instead, which marks it so that its
// clean-up is skipped. corral's own engine (issue 13) ends this.
func (h *hook) awaitEndedSession(cl *mqtt.Client) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		old, ok := h.b.srv.Clients.Get(cl.ID)
		if !ok || old == cl || !old.Closed() || old.IsTakenOver() || !sessionEnds(old) || time.Now().After(deadline) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sessionEnds reports whether a client's session ends with its connection
// (clean session, or MQTT 5 with no session expiry), as mochi decides.
func sessionEnds(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// refuse answers a refused CONNECT: counted, logged (a sample per
// source), audited (one row per source and reason a minute, through an
// aggregating auditor) and closed after the CONNACK.
func (h *hook) refuse(ctx context.Context, cl *mqtt.Client, pk packets.Packet, id identity, src string, r *refusal) error {
	h.b.m.authFailures.WithLabelValues(metricReason(r.reason)).Inc()
	if ok, unlogged := h.b.sample.allow(src); ok {
		if unlogged > 0 {
			h.b.logUnlogged(map[string]int{src: unlogged})
		}
		h.b.log.Info("connection refused", "listener", cl.Net.Listener, "remote", cl.Net.Remote, "clientId", safeClientID(pk.Connect.ClientIdentifier), "reason", r.reason)
	} else if unlogged > 0 {
		h.b.logUnlogged(map[string]int{src: unlogged})
	}
	if h.b.o.Auditor != nil {
		h.b.o.Auditor.Record(ctx, audit.Entry{AccountID: id.accountID, Actor: "mqtt", Action: "mqtt.connect", Target: target(id, pk), Outcome: "refused", Reason: r.reason, Source: src})
	}
	h.b.srv.SendConnack(cl, connackCode(cl, r.code), false, nil)
	return r.code
}

// knownAccount is the account of a throttled CONNECT's device, for its
// audit entry, if the product's owner is cached (no registry read: the
// point of throttling is to skip them).
func (h *hook) knownAccount(username string) identity {
	dn, pkey, err := credential.ParseUsername(username)
	if err != nil {
		return identity{}
	}
	id := identity{productKey: pkey, deviceName: dn}
	if acct, ok := h.owners.Get(pkey); ok {
		id.accountID = acct
	}
	return id
}

// limiterKey is what the per-device login limit counts against: the
// CONNECT's username ({deviceName}&{productKey} or an API key id), or ""
// (certificate logins, oversized names).
func limiterKey(pk packets.Packet) string {
	if u := pk.Connect.Username; len(u) <= 256 {
		return string(u)
	}
	return ""
}

// connackCode gives MQTT 3.1.1 clients the matching 3.1.1 return code.
func connackCode(cl *mqtt.Client, c packets.Code) packets.Code {
	if cl.Properties.ProtocolVersion >= 5 {
		return c
	}
	switch c {
	case packets.ErrNotAuthorized, packets.ErrServerMoved:
		return packets.Err3NotAuthorized
	case packets.ErrBadUsernameOrPassword:
		return packets.ErrMalformedUsernameOrPassword
	case packets.ErrClientIdentifierNotValid:
		return packets.Err3ClientIdentifierNotValid
	case packets.ErrServerBusy, packets.ErrServerUnavailable:
		return packets.Err3ServerUnavailable
	}
	return c
}

func target(id identity, pk packets.Packet) string {
	if id.productKey != "" {
		return deviceKey(id.productKey, id.deviceName)
	}
	return safeClientID(string(pk.Connect.Username))
}

// safeClientID shortens an untrusted id for logs.
func safeClientID(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// OnConnectAuthenticate lets through what OnConnect accepted.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.session(cl) != nil
}

func (h *hook) authenticate(ctx context.Context, cl *mqtt.Client, pk packets.Packet) (identity, error) {
	username := string(pk.Connect.Username)
	password := string(pk.Connect.Password)
	rawID := pk.Connect.ClientIdentifier
	if len(rawID) > 256 || len(username) > 256 || len(password) > 256 {
		return identity{}, &refusal{packets.ErrClientIdentifierNotValid, "oversized clientId, username or password"}
	}
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok && password == "" {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			id, err := h.authCertificate(ctx, cl, certs[0], username)
			if cid, perr := credential.ParseClientID(rawID); perr == nil {
				id = id.withFlags(cid.Params) // flags only: the certificate authenticates
			}
			return id, err
		}
	}
	if strings.Contains(username, "&") || strings.Contains(rawID, "|") {
		return h.authDevice(ctx, cl, rawID, username, password)
	}
	if username == "" {
		return identity{}, &refusal{packets.ErrBadUsernameOrPassword, "no username: devices send {deviceName}&{productKey}, applications an API key id"}
	}
	p, err := h.b.o.Registry.AuthenticateKey(ctx, username, password)
	if err != nil {
		if errors.Is(err, registry.ErrUnauthenticated) {
			return identity{app: true, keyID: username}, &refusal{packets.ErrNotAuthorized, "bad API key"}
		}
		return identity{}, err
	}
	if rawID == "" {
		rawID = fmt.Sprintf("%p", cl)
	}
	return identity{app: true, accountID: p.AccountID, keyID: p.KeyID, role: p.Role, clientID: "app:" + p.KeyID + ":" + rawID}, nil
}

func (h *hook) authDevice(ctx context.Context, cl *mqtt.Client, rawID, username, password string) (identity, error) {
	cid, err := credential.ParseClientID(rawID)
	if err != nil {
		code := packets.ErrClientIdentifierNotValid
		if errors.Is(err, credential.ErrUnsupportedSignMethod) {
			code = packets.ErrBadUsernameOrPassword
		}
		return identity{}, &refusal{code, "clientId: " + err.Error()}
	}
	dn, pkey, err := credential.ParseUsername(username)
	if err != nil {
		return identity{}, &refusal{packets.ErrBadUsernameOrPassword, "username: " + err.Error()}
	}
	id := identity{productKey: pkey, deviceName: dn, clientID: pkey + "." + dn}.withFlags(cid.Params)
	switch cid.AuthType {
	case "":
	case "register", "regnwl":
		return h.register(ctx, cl, cid, id, password)
	case "connwl":
		return h.connectWithToken(ctx, cid, id, password)
	default:
		return id, &refusal{packets.ErrNotAuthorized, "authType " + safeClientID(cid.AuthType) + " is not supported"}
	}
	d, err := h.b.o.Registry.LookupDeviceAuth(ctx, pkey, dn)
	if errors.Is(err, registry.ErrNotFound) {
		id.accountID, _ = h.productAccount(ctx, pkey)
		return id, &refusal{packets.ErrNotAuthorized, "unknown device"}
	}
	if err != nil {
		return id, err
	}
	id.accountID, id.thingName = d.AccountID, d.ThingName
	if _, cached := h.owners.Get(pkey); !cached { // a ProductKey never moves to another account
		h.owners.Set(pkey, d.AccountID)
	}
	if d.Status == registry.StatusDisabled {
		return id, &refusal{packets.ErrNotAuthorized, "device disabled"}
	}
	prod, err := h.productSettings(ctx, pkey)
	if err != nil {
		return id, err
	}
	if prod.AuthType == registry.AuthX509 {
		return id, &refusal{packets.ErrNotAuthorized, "product requires certificate authentication"}
	}
	if prod.ConnectWindow > 0 {
		ts, err := strconv.ParseInt(cid.Timestamp, 10, 64)
		if err != nil {
			return id, &refusal{packets.ErrNotAuthorized, "timestamp missing or not milliseconds; the product checks freshness"}
		}
		if skew := h.b.o.Now().UnixMilli() - ts; skew > int64(prod.ConnectWindow)*1000 || -skew > int64(prod.ConnectWindow)*1000 {
			return id, &refusal{packets.ErrNotAuthorized, "timestamp outside the product's freshness window"}
		}
	}
	sign := credential.MQTTSignContent(cid.ID, dn, pkey, cid.Timestamp)
	if !credential.VerifyPassword(cid.SignMethod, d.DeviceSecret, sign, password) {
		return id, &refusal{packets.ErrNotAuthorized, "bad signature"}
	}
	// Checked after the signature, so that only the device learns it moved.
	if d.DistributedTo != "" {
		return id, &refusal{packets.ErrServerMoved, reasonDistributed}
	}
	return id, nil
}

// reasonDistributed refuses a device a distribution job moved to another
// instance: MQTT 5 clients get "server moved", 3.1.1 ones "not
// authorised"; either way the Link SDK bootstraps again.
const reasonDistributed = "device distributed to another instance; bootstrap again"

// register runs MQTT dynamic registration: the CONNECT is accepted, the
// answer published to the client alone on /ext/register (or /ext/regnwl),
// and the connection closed (see OnSessionEstablished).
func (h *hook) register(ctx context.Context, cl *mqtt.Client, cid credential.ClientID, id identity, password string) (identity, error) {
	p := h.b.o.Provisioner
	if p == nil {
		return id, &refusal{packets.ErrNotAuthorized, "authType " + cid.AuthType + ": registration over MQTT is off"}
	}
	if cl.Net.Listener != "tls" && !h.b.o.RegisterPlain {
		// The answer is a DeviceSecret or a device token: never in clear.
		return id, &refusal{packets.ErrNotAuthorized, "registration: authType " + cid.AuthType + " is answered on the TLS listener only; connect with TLS"}
	}
	req := provision.Request{Path: provision.PathMQTT, ProductKey: id.productKey, DeviceName: id.deviceName,
		Random: cid.Random, Sign: password, SignMethod: cid.SignMethod, Source: cl.Net.Remote}
	var topic string
	var payload any
	if cid.AuthType == "regnwl" {
		req.Path = provision.PathMQTTNoPre
		res, err := p.RegisterFree(ctx, req)
		if err != nil {
			return id, registrationRefusal(err)
		}
		topic, payload = "/ext/regnwl", map[string]string{"clientId": res.ClientID, "productKey": id.productKey, "deviceName": id.deviceName, "deviceToken": res.DeviceToken}
		id.accountID = res.Device.AccountID
	} else {
		res, err := p.Dynamic(ctx, req)
		if err != nil {
			return id, registrationRefusal(err)
		}
		topic, payload = "/ext/register", map[string]string{"productKey": id.productKey, "deviceName": id.deviceName, "deviceSecret": res.Device.DeviceSecret}
		id.accountID = res.Device.AccountID
	}
	data, _ := json.Marshal(payload)
	id.register = &registerAnswer{topic: topic, payload: data}
	id.clientID = "register:" + id.productKey + "." + id.deviceName + ":" + fmt.Sprintf("%p", cl)
	return id, nil
}

// registrationRefusal maps a refused registration to its CONNACK code.
func registrationRefusal(err error) *refusal {
	code := packets.ErrNotAuthorized
	switch {
	case errors.Is(err, provision.ErrRateLimited):
		code = packets.ErrServerBusy
	case errors.Is(err, provision.ErrInvalid):
		code = packets.ErrBadUsernameOrPassword
	case errors.Is(err, provision.ErrInternal):
		code = packets.ErrServerUnavailable
	}
	return &refusal{code, "registration: " + err.Error()}
}

// connectWithToken authenticates a registration-free device (connwl).
func (h *hook) connectWithToken(ctx context.Context, cid credential.ClientID, id identity, token string) (identity, error) {
	p := h.b.o.Provisioner
	if p == nil {
		return id, &refusal{packets.ErrNotAuthorized, "authType connwl: registration over MQTT is off"}
	}
	d, err := h.b.o.Registry.LookupDevice(ctx, id.productKey, id.deviceName)
	if errors.Is(err, registry.ErrNotFound) {
		return id, &refusal{packets.ErrNotAuthorized, "unknown device"}
	}
	if err != nil {
		return id, err
	}
	id.accountID, id.thingName = d.AccountID, d.ThingName
	if d.Status == registry.StatusDisabled {
		return id, &refusal{packets.ErrNotAuthorized, "device disabled"}
	}
	ok, err := p.VerifyToken(ctx, id.productKey, id.deviceName, cid.ID, token)
	if err != nil {
		return id, err
	}
	if !ok {
		return id, &refusal{packets.ErrNotAuthorized, "bad device token"}
	}
	return id, nil
}

// authCertificate authenticates a device by the client certificate it
// presented on the TLS listener: bound to a device, or signed by a
// registered CA (just-in-time registration or provisioning). A username,
// if sent, must name the same device.
func (h *hook) authCertificate(ctx context.Context, cl *mqtt.Client, cert *x509.Certificate, username string) (identity, error) {
	if h.b.o.Provisioner == nil {
		return identity{}, &refusal{packets.ErrNotAuthorized, "certificate authentication is off"}
	}
	d, err := h.b.o.Provisioner.AuthenticateCertificate(ctx, cert, cl.Net.Remote)
	switch {
	case err == nil:
	case errors.Is(err, provision.ErrCertPending):
		return identity{}, &refusal{packets.ErrNotAuthorized, "certificate pending activation (JITR)"}
	case errors.Is(err, provision.ErrCertRevoked):
		return identity{}, &refusal{packets.ErrNotAuthorized, "certificate revoked"}
	case errors.Is(err, provision.ErrCertUnknown), errors.Is(err, registry.ErrNotFound):
		return identity{}, &refusal{packets.ErrNotAuthorized, "certificate not bound to a device"}
	case errors.Is(err, provision.ErrCertInvalid):
		return identity{}, &refusal{packets.ErrNotAuthorized, "certificate expired, not yet valid or unusable"}
	default:
		return identity{}, err
	}
	id := identity{accountID: d.AccountID, productKey: d.ProductKey, deviceName: d.DeviceName, thingName: d.ThingName, clientID: d.ProductKey + "." + d.DeviceName}
	if username != "" && username != d.DeviceName+"&"+d.ProductKey {
		return id, &refusal{packets.ErrNotAuthorized, "certificate belongs to another device"}
	}
	if d.Status == registry.StatusDisabled {
		return id, &refusal{packets.ErrNotAuthorized, "device disabled"}
	}
	return id, nil
}

// OnACLCheck: subscriptions are checked here; publishes in OnPublish so a
// refused publish is acknowledged and dropped (or, in MQTT 5, answered
// with "not authorized") rather than closing a 3.1.1 connection.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return true
	}
	s := h.session(cl)
	if s == nil {
		return false
	}
	// mochi asks both when subscribing (a filter) and before each
	// delivery (a topic name matched by an approved filter), through this
	// one call: a topic with no wildcard is judged as a delivery, so a
	// SUBSCRIBE to a concrete topic the client may not receive on is
	// refused, and a wildcard filter is accepted on rights alone, its
	// deliveries each checked. Denials are counted from the SUBACK in
	// OnSubscribed.
	if hasWildcard(topic) {
		return h.maySubscribe(context.Background(), s.id, topic)
	}
	return h.mayReceive(context.Background(), s.id, topic)
}

// maySubscribe reports whether a client may subscribe to a filter with
// wildcards.
func (h *hook) maySubscribe(ctx context.Context, id identity, filter string) bool {
	if id.register != nil {
		return false
	}
	if !id.app {
		return h.deviceOrGatewayMay(id, filter)
	}
	return h.appMaySubscribe(ctx, id, filter)
}

// mayReceive reports whether a client may be delivered a message on a
// topic: a device on its own (or its logged-in sub-devices') topics of a
// direction it receives, never its own uplinks; an application on its
// account's topics, uplinks included.
func (h *hook) mayReceive(ctx context.Context, id identity, topic string) bool {
	if id.register != nil {
		return false
	}
	if !id.app {
		return h.deviceOrGatewayMay(id, topic) && h.directionOf(ctx, topic).deviceReceives()
	}
	return h.appMaySubscribe(ctx, id, topic)
}

func (h *hook) deviceOrGatewayMay(id identity, topic string) bool {
	return deviceMay(id, topic) || h.gatewayMay(id.productKey, id.deviceName, topic)
}

func (h *hook) appMaySubscribe(ctx context.Context, id identity, filter string) bool {
	if name, wild, ok := thingOfTopic(filter); ok && wild {
		return true // a wildcard filter: each delivery is checked with its topic
	} else if ok {
		return h.ownsThing(ctx, id, name)
	}
	if pk, ok := eventProduct(filter); ok {
		if pk == "" {
			return true // a wildcard filter: each delivery is checked with its topic
		}
		acct, ok := h.productAccount(ctx, pk)
		return ok && acct == id.accountID
	}
	return h.ownsTopic(ctx, id, filter)
}

func (h *hook) mayPublish(ctx context.Context, id identity, topic string) bool {
	if id.register != nil || hasWildcard(topic) {
		return false
	}
	if !id.app {
		// A device publishes uplinks (and shared topics) only: corral's
		// answers come from corral alone, downlinks from applications.
		return h.deviceOrGatewayMay(id, topic) && h.directionOf(ctx, topic).devicePublishes()
	}
	return appMayPublish(id) && h.directionOf(ctx, topic).appPublishes() && h.ownsTopic(ctx, id, topic)
}

// directionOf is a topic's direction (topicDirection); a custom topic's
// comes from its product's topic classes (classDirection), read from the
// cached product settings, so a class change applies within productTTL
// (at once on this node).
func (h *hook) directionOf(ctx context.Context, topic string) direction {
	t, ok := parseDeviceTopic(topic)
	if !ok || !t.user || t.rrpc || t.wild() {
		return topicDirection(topic)
	}
	p, err := h.productSettings(ctx, t.pk)
	if err != nil {
		return dirNone
	}
	return classDirection(p.TopicClasses, t.suffix)
}

// appMayPublish reports whether an application key's role lets it publish
// at all: readonly keys subscribe only, over MQTT as over REST.
func appMayPublish(id identity) bool { return id.role.Allows(registry.RoleOperator) }

// ownsTopic reports whether an application client's account owns the
// product a device topic names, or the thing a thing topic names.
func (h *hook) ownsTopic(ctx context.Context, id identity, topic string) bool {
	if name, wild, ok := thingOfTopic(topic); ok {
		return !wild && h.ownsThing(ctx, id, name)
	} else if strings.HasPrefix(topic, thingsPrefix) {
		return false
	}
	pk, ok := productOfTopic(topic)
	if !ok {
		return false
	}
	acct, ok := h.productAccount(ctx, pk)
	return ok && acct == id.accountID
}

// ownsThing reports whether an application client's account owns the
// device a thing name names.
func (h *hook) ownsThing(ctx context.Context, id identity, name string) bool {
	acct, ok := h.thingAccount(ctx, name)
	return ok && acct == id.accountID
}

// thingAccount resolves a thing name to the account of its device: a
// default name ({pk}.{dn}) by its ProductKey, an explicit one by a
// registry lookup, cached until a device is renamed or deleted (a value
// looked up while that happened is used once, not kept).
func (h *hook) thingAccount(ctx context.Context, name string) (string, bool) {
	if pk, _, ok := strings.Cut(name, "."); ok {
		return h.productAccount(ctx, pk)
	}
	acct, err := h.things.GetOrLoad(name, func() (string, error) {
		d, err := h.b.o.Registry.LookupThing(ctx, name)
		return d.AccountID, err
	})
	return acct, err == nil
}

// forgetThings drops a cached thing owner ("": all of them): an explicit
// name that was released may be taken by another account's device.
// Default names are never cached.
func (h *hook) forgetThings(name string) {
	switch {
	case name == "":
		h.things.Clear()
	case !strings.Contains(name, "."):
		h.things.Delete(name)
	}
}

// productSettings returns a product's connect settings, cached so a
// CONNECT costs one registry read (the device), not two. A change made
// through this node's registry drops the entry at once (ProductChanged);
// the TTL bounds how long a change made on another node takes.
func (h *hook) productSettings(ctx context.Context, pk string) (registry.Product, error) {
	return h.products.GetOrLoad(pk, func() (registry.Product, error) {
		p, err := h.b.o.Registry.LookupProduct(ctx, pk)
		p.ProductSecret = ""
		return p, err
	})
}

const productTTL = 5 * time.Second

// productAccount returns the account owning a product. Owners are cached
// until the product is deleted: a ProductKey never moves to another
// account, and is never reused.
func (h *hook) productAccount(ctx context.Context, pk string) (string, bool) {
	acct, err := h.owners.GetOrLoad(pk, func() (string, error) {
		p, err := h.b.o.Registry.LookupProduct(ctx, pk)
		return p.AccountID, err
	})
	return acct, err == nil
}

// forgetProduct drops what is cached of a product.
func (h *hook) forgetProduct(pk string, deleted bool) {
	h.products.Delete(pk)
	if deleted {
		h.owners.Delete(pk)
	}
}

// OnPublish enforces publish rights and counts messages in.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.session(cl)
	if s == nil || !h.mayPublish(context.Background(), s.id, pk.TopicName) {
		h.b.m.aclDenied.WithLabelValues("publish").Inc()
		if s != nil {
			h.reportSubError(s.id, pk.TopicName)
		}
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
			return pk, packets.ErrNotAuthorized
		}
		return pk, packets.CodeSuccessIgnore
	}
	h.b.m.in.Inc()
	return pk, nil
}

// reportSubError tells a device refused a publish on another device's
// topic (a gateway publishing for a sub-device that is not logged in
// through it) on its /ext/error topic, code 520, upon which the Link SDK
// logs the sub-device in again, instead of dropping it in silence.
func (h *hook) reportSubError(id identity, topic string) {
	if h.b.o.SubErrors == nil || id.app || id.register != nil {
		return
	}
	t, ok := parseDeviceTopic(topic)
	if !ok || t.wild() || t.session || t.names(id.productKey, id.deviceName) {
		return
	}
	h.b.o.SubErrors.ReportSubError(id.productKey, id.deviceName, t.pk, t.dn, alink.CodeNoSession,
		"sub-device "+t.pk+"/"+t.dn+" is not logged in through this gateway")
}

// OnPacketEncode settles a device's session as its accepting CONNACK goes
// out: after mochi has set the session up (clean, resumed or taken over),
// before the device knows it is connected, so a downlink sent the moment
// it is online is not missed. A gateway's new session starts with no
// sub-device logged in (those of a session it took over go offline until
// logged in again); a stock device (_ss=1) is subscribed to its
// downlinks.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != packets.CodeSuccess.Code {
		return pk
	}
	s := h.session(cl)
	if s == nil || s.id.app || s.id.register != nil {
		return pk
	}
	h.logoutSubsOfOtherSessions(deviceKey(s.id.productKey, s.id.deviceName), cl)
	if s.id.serverSubs {
		h.b.addSubscriptions(cl, downlinkFilters(s.id.productKey, s.id.deviceName, s.id.rrpcExt))
	}
	return pk
}

// OnPacketSent counts messages out.
func (h *hook) OnPacketSent(_ *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Publish {
		h.b.m.out.Inc()
	}
}

// OnPublishDropped counts deliveries mochi dropped because the client's
// write queue was full (a subscriber slower than its publishers).
func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.b.m.dropped.WithLabelValues(strconv.Itoa(int(pk.FixedHeader.Qos))).Inc()
	h.b.log.Debug("delivery dropped: client queue full", "clientId", cl.ID, "topic", pk.TopicName)
}

// OnSubscribe makes a device's v4 RRPC subscriptions NoLocal: request and
// reply share the topic, and a device (or a gateway, for a sub-device)
// must not get its own reply back as a request. Elsewhere directions
// decide at delivery; a shared /user/ topic still echoes, as it always
// has.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if s := h.session(cl); s == nil || s.id.app {
		return pk
	}
	for i := range pk.Filters {
		if strings.HasPrefix(pk.Filters[i].Filter, "/ext/rrpc/") {
			pk.Filters[i].NoLocal = true
		}
	}
	return pk
}

// OnSubscribed counts refused subscriptions.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	var granted []string
	for i, c := range codes {
		if i >= len(pk.Filters) {
			break
		}
		if c >= 0x80 {
			h.b.m.aclDenied.WithLabelValues("subscribe").Inc()
			h.b.log.Debug("subscription refused", "clientId", cl.ID, "filter", pk.Filters[i].Filter)
			continue
		}
		granted = append(granted, pk.Filters[i].Filter)
	}
	s := h.session(cl)
	if len(granted) == 0 || len(h.b.subObs) == 0 || s == nil || s.id.app || s.id.register != nil {
		return
	}
	// Off the client's read loop: observers read the store and publish.
	go func() {
		for _, f := range granted {
			for _, o := range h.b.subObs {
				o.DeviceSubscribed(s.id.productKey, s.id.deviceName, f)
			}
		}
	}()
}

// OnSessionEstablished marks a device online and announces it.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	s := h.session(cl)
	if s == nil {
		return
	}
	if r := s.id.register; r != nil {
		// The registration answer goes to this client alone, then the
		// connection ends: it has no other rights.
		cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: r.topic, Payload: r.payload})
		s.reason.Store("REGISTERED")
		h.b.srv.DisconnectClient(cl, packets.CodeDisconnect)
		return
	}
	h.b.m.connections.WithLabelValues(s.listener).Inc()
	if s.id.app {
		if h.keyStale(s.id) {
			// Its key changed while it authenticated (see APIKeyChanged).
			s.reason.Store("API_KEY_CHANGED")
			h.b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
		}
		return
	}
	if s.id.serverSubs {
		// Subscribed as the CONNACK went out (OnPacketEncode); what was
		// retained for them may follow the CONNACK now.
		h.b.sendRetainedAll(cl, downlinkFilters(s.id.productKey, s.id.deviceName, s.id.rrpcExt))
	}
	now := h.b.o.Now()
	h.b.pres.record(registry.Presence{ProductKey: s.id.productKey, DeviceName: s.id.deviceName, Online: true, At: now})
	h.b.publishPresence(s, "connected", "", now)
}

// OnDisconnect marks a device offline (unless a newer session of it took
// over) and announces it.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.mu.Lock()
	s := h.sessions[cl]
	delete(h.sessions, cl)
	current := false
	if s != nil && s.id.app && h.apps[s.id.clientID] == s {
		delete(h.apps, s.id.clientID)
	}
	if s != nil && !s.id.app && s.id.register == nil {
		key := deviceKey(s.id.productKey, s.id.deviceName)
		if h.devices[key] == cl {
			delete(h.devices, key)
			current = true
		}
	}
	h.mu.Unlock()
	if s == nil {
		return
	}
	if s.id.register != nil {
		return
	}
	h.b.m.connections.WithLabelValues(s.listener).Dec()
	if s.id.app {
		return
	}
	if cause := cl.StopCause(); cause != nil {
		err = cause
	}
	reason := disconnectReason(s, err, current)
	if !expire && (reason == "DISABLED" || reason == "DELETED") {
		// A disabled or deleted device keeps no session to come back to.
		h.b.forget(cl)
	}
	now := h.b.o.Now()
	if current {
		h.logoutAllSubs(deviceKey(s.id.productKey, s.id.deviceName), "GATEWAY_DISCONNECTED")
		h.b.pres.record(registry.Presence{ProductKey: s.id.productKey, DeviceName: s.id.deviceName, Online: false, At: now})
	}
	h.b.publishPresence(s, "disconnected", reason, now)
}

// disconnectReason uses AWS IoT's names for why a session ended.
func disconnectReason(s *session, err error, current bool) string {
	if r, ok := s.reason.Load().(string); ok && r != "" {
		return r
	}
	switch {
	case errors.Is(err, packets.ErrSessionTakenOver), !current:
		return "DUPLICATE_CLIENTID"
	case err == nil, errors.Is(err, packets.CodeDisconnect):
		return "CLIENT_INITIATED_DISCONNECT"
	case errors.Is(err, packets.ErrKeepAliveTimeout):
		return "MQTT_KEEP_ALIVE_TIMEOUT"
	case errors.Is(err, packets.ErrServerShuttingDown):
		return "SERVER_INITIATED_DISCONNECT"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "reset"), strings.Contains(msg, "closed"):
		return "CONNECTION_LOST"
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		return "MQTT_KEEP_ALIVE_TIMEOUT"
	}
	return "CONNECTION_LOST"
}

// metricReason keeps the reason label's set small.
func metricReason(r string) string {
	switch {
	case strings.HasPrefix(r, "clientId"):
		return "bad_client_id"
	case strings.HasPrefix(r, "username"), strings.HasPrefix(r, "no username"):
		return "bad_username"
	case r == "unknown device":
		return "unknown_device"
	case r == "device disabled":
		return "disabled"
	case r == reasonDistributed:
		return "distributed"
	case r == "bad signature":
		return "bad_signature"
	case r == "bad API key":
		return "bad_api_key"
	case strings.HasPrefix(r, "oversized"):
		return "oversized"
	case strings.HasPrefix(r, "registration"):
		return "registration_refused"
	case r == "bad device token":
		return "bad_token"
	case strings.HasPrefix(r, "timestamp"):
		return "stale_timestamp"
	case strings.HasPrefix(r, "product requires"):
		return "needs_certificate"
	case strings.HasPrefix(r, "certificate"):
		return "bad_certificate"
	case strings.HasPrefix(r, "authType"):
		return "unsupported_auth_type"
	case strings.HasPrefix(r, "throttled"):
		return "throttled"
	}
	return "other"
}
