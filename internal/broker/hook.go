package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/engine"
	"github.com/corral-iot/corral/internal/mqtt/packet"
	"github.com/corral-iot/corral/internal/mqtt/subs"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// session is what the broker knows of one authenticated connection; it is
// the engine.Client's Value. Fixed once authenticated but for reason. One
// lives as long as each connection, so it holds no copies: its remote
// address is the connection's own net.Addr, formatted when needed.
type session struct {
	id       identity
	listener listenerKind
	addr     net.Addr               // the client's address; nil for none
	reason   atomic.Pointer[string] // why corral closed it
	// gw is, for a sub-device session, the gateway's connection it was
	// logged in through: a later connection of the gateway does not
	// inherit it.
	gw *session
	// rights are its latest rights decisions (rights.go), nil until it
	// publishes or is delivered a message.
	rights atomic.Pointer[rightsCache]
}

// listenerKind is the listener a session came in on, in a byte rather
// than a string (a session lives as long as its connection: 176 B).
type listenerKind uint8

const (
	onOther   listenerKind = iota
	onTCP                  // "tcp"
	onTLS                  // "tls"
	onWS                   // "ws"
	onGateway              // a sub-device's session, through its gateway's connection
)

var listenerNames = [...]string{"", "tcp", "tls", "ws", "gateway"}

func (k listenerKind) String() string { return listenerNames[k] }

// listenerKindOf is the kind of a listener id ("tcp", "tls", "ws").
func listenerKindOf(id string) listenerKind {
	for k, n := range listenerNames {
		if n == id && k != int(onOther) {
			return listenerKind(k)
		}
	}
	return onOther
}

// hook plugs corral into the MQTT engine (engine.Hooks): authentication,
// rights, presence.
//
// mu guards the maps; it is never held while calling the engine, and the
// engine calls the hooks with none of its locks held (but MayReceive, which
// takes mu for reading only).
type hook struct {
	b *Broker

	mu        sync.RWMutex
	devices   map[string]*session            // deviceKey -> its current connection
	apps      map[string]*session            // application client id -> session
	subs      map[string]map[string]*session // gateway deviceKey -> sub deviceKey -> sub-device session
	subOf     map[string]string              // sub deviceKey -> gateway deviceKey
	subThings map[string]string              // logged-in sub-device's thing name -> sub deviceKey

	anon atomic.Uint64 // numbers the session ids of clients that sent none

	// gen is the rights generation: sessions' cached rights decisions
	// (rights.go) hold only while it is unchanged. seed hashes topics
	// into their tables.
	gen  atomic.Uint64
	seed maphash.Seed

	owners   *cache.Cache[string, string]           // ProductKey -> owning account id
	products *cache.Cache[string, registry.Product] // ProductKey -> connect settings (no secret)
	things   *cache.Cache[string, string]           // explicit thing name -> owning account id
	keys     *cache.Cache[string, registry.Role]    // API key id -> its role now, or keyDeleted
	// restored: the owners of sessions restored from the store whose
	// clients have not come back (identityOf).
	restored *cache.Cache[string, identity]
}

// appClientPrefix starts every application client's session id
// (app:{keyId}:{its clientId}), so none can pass for a device ({pk}.{dn}).
const appClientPrefix = "app:"

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
	return &hook{b: b, devices: map[string]*session{}, apps: map[string]*session{},
		subs: map[string]map[string]*session{}, subOf: map[string]string{}, subThings: map[string]string{},
		owners:   cache.New[string, string](cache.Options{Now: b.o.Now}),
		products: cache.New[string, registry.Product](cache.Options{TTL: productTTL, Now: b.o.Now}),
		things:   cache.New[string, string](cache.Options{TTL: productTTL, Now: b.o.Now}),
		keys:     cache.New[string, registry.Role](cache.Options{TTL: time.Minute, Now: b.o.Now}),
		restored: cache.New[string, identity](cache.Options{TTL: time.Minute, Now: b.o.Now}),
		seed:     maphash.MakeSeed()}
}

// remote is the client's address as host:port, or "".
func (s *session) remote() string {
	if s.addr == nil {
		return ""
	}
	return s.addr.String()
}

// sessionOf is the broker's session of an engine client.
func sessionOf(c *engine.Client) *session {
	s, _ := c.Value.(*session)
	return s
}

// ptr is a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// identityOf is who an engine client is: its connection's identity, or,
// for a persistent session the engine restored from its store and whose
// client has not come back yet (no Value), the owner its session name
// says (Authenticate names sessions "{pk}.{dn}" and "app:{key}:{id}"),
// read from the registry, so messages queued for it while it is away are
// judged by the same rights. ok is false for a name that owns nothing
// (a deleted device or key, a registration session).
func (h *hook) identityOf(ctx context.Context, c *engine.Client) (identity, bool) {
	if s := sessionOf(c); s != nil {
		return s.id, true
	}
	id, err := h.restored.GetOrLoad(c.ID, func() (identity, error) { return h.restoreIdentity(ctx, c.ID) })
	return id, err == nil
}

func (h *hook) restoreIdentity(ctx context.Context, name string) (identity, error) {
	if rest, ok := strings.CutPrefix(name, appClientPrefix); ok {
		keyID, _, ok := strings.Cut(rest, ":")
		if !ok {
			return identity{}, fmt.Errorf("session %q: %w", name, registry.ErrNotFound)
		}
		k, err := h.b.o.Registry.LookupAPIKey(ctx, keyID)
		if err != nil {
			return identity{}, err
		}
		return identity{app: true, accountID: k.AccountID, keyID: k.ID, role: k.Role, clientID: name}, nil
	}
	pk, dn, ok := strings.Cut(name, ".")
	if !ok || strings.HasPrefix(name, "register:") {
		return identity{}, fmt.Errorf("session %q: %w", name, registry.ErrNotFound)
	}
	d, err := h.b.o.Registry.LookupDevice(ctx, pk, dn)
	if err != nil {
		return identity{}, err
	}
	if d.Status == registry.StatusDisabled {
		return identity{}, fmt.Errorf("device %s/%s: %w", pk, dn, registry.ErrForbidden)
	}
	return identity{accountID: d.AccountID, productKey: pk, deviceName: dn, thingName: d.ThingName, clientID: name}, nil
}

// deviceSession is a device's current connection, or nil.
func (h *hook) deviceSession(pk, dn string) *session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.devices[deviceKey(pk, dn)]
}

// refusal is a refused CONNECT: the reason code, and why (for logs, audit
// and the MQTT 5 reason string).
type refusal struct {
	code   packet.ReasonCode
	reason string
}

func (r *refusal) Error() string { return r.reason }

// connectInfo is what authentication knows of a connection.
type connectInfo struct {
	listener string // "tcp", "tls", "ws"
	remote   string
	tls      *tls.ConnectionState
}

// Authenticate authenticates a CONNECT (engine.Hooks). Refusals are
// answered with their precise CONNACK code and reason.
func (h *hook) Authenticate(_ context.Context, info engine.ConnInfo, cp *packet.Connect) (any, packet.ReasonCode, string) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ci := connectInfo{listener: h.b.listenerName(info.Listener), tls: info.TLS}
	if info.RemoteAddr != nil {
		ci.remote = info.RemoteAddr.String()
	}
	// An address or device in back-off for failed logins is answered
	// "server busy" before any credential is looked at.
	src, user := sourceKey(ci.remote), limiterKey(cp)
	if ok, why := h.b.logins.check(src, user); !ok {
		return h.refuse(ctx, ci, cp, h.knownAccount(user), src, &refusal{code: packet.ServerBusy, reason: why})
	}
	// Authentication reads the store, whose SQLite code grows goroutine
	// stacks deep; doing it on another goroutine (authPool) keeps the
	// connection's own goroutine (which lives as long as the session)
	// small, which is most of what an idle connection costs.
	type result struct {
		id  identity
		err error
	}
	done := make(chan result, 1)
	h.b.auth.run(func() {
		id, err := h.authenticate(ctx, ci, cp)
		done <- result{id, err}
	})
	r := <-done
	id, err := r.id, r.err
	if err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			r = &refusal{code: packet.ServerUnavailable, reason: "internal error"}
			h.b.log.Error("authenticating", "err", err)
		} else {
			h.b.logins.failed(src, user)
		}
		return h.refuse(ctx, ci, cp, id, src, r)
	}
	// Wills are held to the same rights as publishes: a will outside the
	// client's rights is dropped.
	if cp.Will != nil && !h.mayPublish(ctx, id, cp.Will.Topic) {
		cp.Will = nil
		h.b.m.aclDenied.WithLabelValues("will").Inc()
		h.b.log.Info("last will dropped: topic outside the client's rights", "clientId", id.clientID)
	}
	cp.ClientID = id.clientID
	admitConn(info.Conn)
	h.b.m.authSeconds.Observe(time.Since(start).Seconds())
	return &session{id: id, listener: listenerKindOf(ci.listener), addr: info.RemoteAddr}, packet.Success, ""
}

// refuse answers a refused CONNECT: counted, logged (a sample per
// source), audited (one row per source and reason a minute, through an
// aggregating auditor) and closed after the CONNACK.
func (h *hook) refuse(ctx context.Context, ci connectInfo, cp *packet.Connect, id identity, src string, r *refusal) (any, packet.ReasonCode, string) {
	h.b.m.authFailures.WithLabelValues(metricReason(r.reason)).Inc()
	if ok, unlogged := h.b.sample.allow(src); ok {
		if unlogged > 0 {
			h.b.logUnlogged(map[string]int{src: unlogged})
		}
		h.b.log.Info("connection refused", "listener", ci.listener, "remote", ci.remote, "clientId", safeClientID(cp.ClientID), "reason", r.reason)
	} else if unlogged > 0 {
		h.b.logUnlogged(map[string]int{src: unlogged})
	}
	if h.b.o.Auditor != nil {
		h.b.o.Auditor.Record(ctx, audit.Entry{AccountID: id.accountID, Actor: "mqtt", Action: "mqtt.connect", Target: target(id, cp), Outcome: "refused", Reason: r.reason, Source: src})
	}
	return nil, r.code, r.reason
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
func limiterKey(cp *packet.Connect) string {
	if u := cp.Username; len(u) <= 256 {
		return u
	}
	return ""
}

func target(id identity, cp *packet.Connect) string {
	if id.productKey != "" {
		return deviceKey(id.productKey, id.deviceName)
	}
	return safeClientID(cp.Username)
}

// safeClientID shortens an untrusted id for logs.
func safeClientID(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

func (h *hook) authenticate(ctx context.Context, ci connectInfo, cp *packet.Connect) (identity, error) {
	username := cp.Username
	password := string(cp.Password)
	rawID := cp.ClientID
	if len(rawID) > 256 || len(username) > 256 || len(password) > 256 {
		return identity{}, &refusal{packet.ClientIdentifierNotValid, "oversized clientId, username or password"}
	}
	if ci.tls != nil && password == "" {
		if certs := ci.tls.PeerCertificates; len(certs) > 0 {
			id, err := h.authCertificate(ctx, ci, certs[0], username)
			if cid, perr := credential.ParseClientID(rawID); perr == nil {
				id = id.withFlags(cid.Params) // flags only: the certificate authenticates
			}
			return id, err
		}
	}
	if strings.Contains(username, "&") || strings.Contains(rawID, "|") {
		return h.authDevice(ctx, ci, rawID, username, password)
	}
	if username == "" {
		return identity{}, &refusal{packet.BadUsernameOrPassword, "no username: devices send {deviceName}&{productKey}, applications an API key id"}
	}
	p, err := h.b.o.Registry.AuthenticateKey(ctx, username, password)
	if err != nil {
		if errors.Is(err, registry.ErrUnauthenticated) {
			return identity{app: true, keyID: username}, &refusal{packet.NotAuthorized, "bad API key"}
		}
		return identity{}, err
	}
	if rawID == "" {
		rawID = "anon-" + strconv.FormatUint(h.anon.Add(1), 10)
	}
	// An application's session is named by its key and the id it sent. An
	// MQTT 5 client that sent none is assigned the session's whole name,
	// and resumes the session by sending it back.
	clientID := appClientPrefix + p.KeyID + ":" + rawID
	if strings.HasPrefix(rawID, appClientPrefix+p.KeyID+":") {
		clientID = rawID
	}
	return identity{app: true, accountID: p.AccountID, keyID: p.KeyID, role: p.Role, clientID: clientID}, nil
}

func (h *hook) authDevice(ctx context.Context, ci connectInfo, rawID, username, password string) (identity, error) {
	cid, err := credential.ParseClientID(rawID)
	if err != nil {
		code := packet.ClientIdentifierNotValid
		if errors.Is(err, credential.ErrUnsupportedSignMethod) {
			code = packet.BadUsernameOrPassword
		}
		return identity{}, &refusal{code, "clientId: " + err.Error()}
	}
	dn, pkey, err := credential.ParseUsername(username)
	if err != nil {
		return identity{}, &refusal{packet.BadUsernameOrPassword, "username: " + err.Error()}
	}
	// The session id is the one string a connection keeps of its names:
	// ProductKey and DeviceName are slices of it (the CONNECT's username
	// they were parsed from is then garbage), and so is, below, the thing
	// name when it is the default ({pk}.{dn}, the same characters).
	clientID := pkey + "." + dn
	pkey, dn = clientID[:len(pkey)], clientID[len(pkey)+1:]
	id := identity{productKey: pkey, deviceName: dn, clientID: clientID}.withFlags(cid.Params)
	switch cid.AuthType {
	case "":
	case "register", "regnwl":
		return h.register(ctx, ci, cid, id, password)
	case "connwl":
		return h.connectWithToken(ctx, cid, id, password)
	default:
		return id, &refusal{packet.NotAuthorized, "authType " + safeClientID(cid.AuthType) + " is not supported"}
	}
	d, err := h.b.o.Registry.LookupDeviceAuth(ctx, pkey, dn)
	if errors.Is(err, registry.ErrNotFound) {
		id.accountID, _ = h.productAccount(ctx, pkey)
		return id, &refusal{packet.NotAuthorized, "unknown device"}
	}
	if err != nil {
		return id, err
	}
	id.accountID, id.thingName, id.first = d.AccountID, d.ThingName, d.Status == registry.StatusInactive
	if d.ThingName == id.clientID { // the default, registry.DefaultThingName: share the string
		id.thingName = id.clientID
	}
	if acct, cached := h.owners.Get(pkey); !cached { // a ProductKey never moves to another account
		h.owners.Set(pkey, d.AccountID)
	} else if acct == d.AccountID {
		// The cached copy: one string for all of a product's sessions
		// rather than one read from the store for each.
		id.accountID = acct
	}
	if d.Status == registry.StatusDisabled {
		return id, &refusal{packet.NotAuthorized, "device disabled"}
	}
	prod, err := h.productSettings(ctx, pkey)
	if err != nil {
		return id, err
	}
	if prod.AuthType == registry.AuthX509 {
		return id, &refusal{packet.NotAuthorized, "product requires certificate authentication"}
	}
	if prod.ConnectWindow > 0 {
		ts, err := strconv.ParseInt(cid.Timestamp, 10, 64)
		if err != nil {
			return id, &refusal{packet.NotAuthorized, "timestamp missing or not milliseconds; the product checks freshness"}
		}
		if skew := h.b.o.Now().UnixMilli() - ts; skew > int64(prod.ConnectWindow)*1000 || -skew > int64(prod.ConnectWindow)*1000 {
			return id, &refusal{packet.NotAuthorized, "timestamp outside the product's freshness window"}
		}
	}
	sign := credential.MQTTSignContent(cid.ID, dn, pkey, cid.Timestamp)
	if !credential.VerifyPassword(cid.SignMethod, d.DeviceSecret, sign, password) {
		return id, &refusal{packet.NotAuthorized, "bad signature"}
	}
	// Checked after the signature, so that only the device learns it moved.
	if d.DistributedTo != "" {
		return id, &refusal{packet.ServerMoved, reasonDistributed}
	}
	return id, nil
}

// reasonDistributed refuses a device a distribution job moved to another
// instance: MQTT 5 clients get "server moved", 3.1.1 ones "not
// authorised"; either way the Link SDK bootstraps again.
const reasonDistributed = "device distributed to another instance; bootstrap again"

// register runs MQTT dynamic registration: the CONNECT is accepted, the
// answer published to the client alone on /ext/register (or /ext/regnwl),
// and the connection closed (see SessionStarted).
func (h *hook) register(ctx context.Context, ci connectInfo, cid credential.ClientID, id identity, password string) (identity, error) {
	p := h.b.o.Provisioner
	if p == nil {
		return id, &refusal{packet.NotAuthorized, "authType " + cid.AuthType + ": registration over MQTT is off"}
	}
	if ci.listener != "tls" && !h.b.o.RegisterPlain {
		// The answer is a DeviceSecret or a device token: never in clear.
		return id, &refusal{packet.NotAuthorized, "registration: authType " + cid.AuthType + " is answered on the TLS listener only; connect with TLS"}
	}
	req := provision.Request{Path: provision.PathMQTT, ProductKey: id.productKey, DeviceName: id.deviceName,
		Random: cid.Random, Sign: password, SignMethod: cid.SignMethod, Source: ci.remote}
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
	id.clientID = "register:" + id.productKey + "." + id.deviceName + ":" + strconv.FormatUint(h.anon.Add(1), 10)
	return id, nil
}

// registrationRefusal maps a refused registration to its CONNACK code.
func registrationRefusal(err error) *refusal {
	code := packet.NotAuthorized
	switch {
	case errors.Is(err, provision.ErrRateLimited):
		code = packet.ServerBusy
	case errors.Is(err, provision.ErrInvalid):
		code = packet.BadUsernameOrPassword
	case errors.Is(err, provision.ErrInternal):
		code = packet.ServerUnavailable
	}
	return &refusal{code, "registration: " + err.Error()}
}

// connectWithToken authenticates a registration-free device (connwl).
func (h *hook) connectWithToken(ctx context.Context, cid credential.ClientID, id identity, token string) (identity, error) {
	p := h.b.o.Provisioner
	if p == nil {
		return id, &refusal{packet.NotAuthorized, "authType connwl: registration over MQTT is off"}
	}
	d, err := h.b.o.Registry.LookupDeviceAuth(ctx, id.productKey, id.deviceName) // with the distribution mark
	if errors.Is(err, registry.ErrNotFound) {
		return id, &refusal{packet.NotAuthorized, "unknown device"}
	}
	if err != nil {
		return id, err
	}
	id.accountID, id.thingName = d.AccountID, d.ThingName
	if d.ThingName == id.clientID { // the default, registry.DefaultThingName: share the string
		id.thingName = id.clientID
	}
	if d.Status == registry.StatusDisabled {
		return id, &refusal{packet.NotAuthorized, "device disabled"}
	}
	ok, err := p.VerifyToken(ctx, id.productKey, id.deviceName, cid.ID, token)
	if err != nil {
		return id, err
	}
	if !ok {
		return id, &refusal{packet.NotAuthorized, "bad device token"}
	}
	if d.DistributedTo != "" { // after the token: only the device learns it moved
		return id, &refusal{packet.ServerMoved, reasonDistributed}
	}
	return id, nil
}

// authCertificate authenticates a device by the client certificate it
// presented on the TLS listener: bound to a device, or signed by a
// registered CA (just-in-time registration or provisioning). A username,
// if sent, must name the same device.
func (h *hook) authCertificate(ctx context.Context, ci connectInfo, cert *x509.Certificate, username string) (identity, error) {
	if h.b.o.Provisioner == nil {
		return identity{}, &refusal{packet.NotAuthorized, "certificate authentication is off"}
	}
	d, err := h.b.o.Provisioner.AuthenticateCertificate(ctx, cert, ci.remote)
	switch {
	case err == nil:
	case errors.Is(err, provision.ErrCertPending):
		return identity{}, &refusal{packet.NotAuthorized, "certificate pending activation (JITR)"}
	case errors.Is(err, provision.ErrCertRevoked):
		return identity{}, &refusal{packet.NotAuthorized, "certificate revoked"}
	case errors.Is(err, provision.ErrCertUnknown), errors.Is(err, registry.ErrNotFound):
		return identity{}, &refusal{packet.NotAuthorized, "certificate not bound to a device"}
	case errors.Is(err, provision.ErrCertInvalid):
		return identity{}, &refusal{packet.NotAuthorized, "certificate expired, not yet valid or unusable"}
	default:
		return identity{}, err
	}
	id := identity{accountID: d.AccountID, productKey: d.ProductKey, deviceName: d.DeviceName, thingName: d.ThingName, clientID: d.ProductKey + "." + d.DeviceName}
	if username != "" && username != d.DeviceName+"&"+d.ProductKey {
		return id, &refusal{packet.NotAuthorized, "certificate belongs to another device"}
	}
	if d.Status == registry.StatusDisabled {
		return id, &refusal{packet.NotAuthorized, "device disabled"}
	}
	// The certificate lookup does not read the distribution mark; the
	// device's auth row does (one more read, on the rarer TLS path).
	a, err := h.b.o.Registry.LookupDeviceAuth(ctx, d.ProductKey, d.DeviceName)
	if err != nil {
		return id, fmt.Errorf("reading distribution mark: %w", err)
	}
	if a.DistributedTo != "" {
		return id, &refusal{packet.ServerMoved, reasonDistributed}
	}
	return id, nil
}

// MaySubscribe checks a SUBSCRIBE's filter (engine.Hooks; for a shared
// subscription, the filter inside). A filter without wildcards is judged
// as a delivery would be, so a SUBSCRIBE to a concrete topic the client
// may not receive on is refused; a wildcard filter is accepted on rights
// alone, its deliveries each checked (MayReceive).
func (h *hook) MaySubscribe(c *engine.Client, filter string) bool {
	s := sessionOf(c)
	ok := s != nil
	if ok && hasWildcard(filter) {
		ok = h.maySubscribe(context.Background(), s.id, filter)
	} else if ok {
		ok = h.mayReceive(context.Background(), s.id, filter)
	}
	if !ok {
		h.b.m.aclDenied.WithLabelValues("subscribe").Inc()
		h.b.log.Debug("subscription refused", "clientId", c.ID, "filter", safeClientID(filter))
	}
	return ok
}

// MayReceive checks each delivery (engine.Hooks); a live session's
// decisions are cached (rights.go).
func (h *hook) MayReceive(c *engine.Client, topic string) bool {
	ctx := context.Background()
	if s := sessionOf(c); s != nil {
		return h.mayReceiveCached(ctx, s, topic)
	}
	id, ok := h.identityOf(ctx, c)
	return ok && h.mayReceive(ctx, id, topic)
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
	return appMayPublish(id, topic) && h.directionOf(ctx, topic).appPublishes() && h.ownsTopic(ctx, id, topic)
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
// on a topic: readonly keys subscribe only, over MQTT as over REST, but
// for a shadow get (a read, as GET is over REST); operators publish.
func appMayPublish(id identity, topic string) bool {
	return id.role.Allows(registry.RoleOperator) || (id.role.Allows(registry.RoleReadonly) && isShadowGet(topic))
}

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

// MayPublish enforces publish rights (engine.Hooks; a live session's
// decision cached, rights.go) and counts messages in. A refused publish
// is acknowledged and dropped under 3.1.1 and answered "not authorized"
// under MQTT 5.
func (h *hook) MayPublish(c *engine.Client, topic string) bool {
	ctx := context.Background()
	var ok bool
	s := sessionOf(c)
	if s != nil {
		ok = h.mayPublishCached(ctx, s, topic)
	} else {
		id, known := h.identityOf(ctx, c) // a restored session's will
		ok = known && h.mayPublish(ctx, id, topic)
	}
	if !ok {
		h.b.m.aclDenied.WithLabelValues("publish").Inc()
		if s != nil {
			h.reportSubError(s.id, topic)
		}
		return false
	}
	h.b.m.in.Inc()
	return true
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

// SubscriptionOptions makes a device's v4 RRPC subscriptions No Local
// (engine.SubscriptionHooks): request and reply share the topic, and a
// device (or a gateway, for a sub-device) must not get its own reply back
// as a request. Elsewhere directions decide at delivery; a shared /user/
// topic still echoes, as it always has.
func (h *hook) SubscriptionOptions(c *engine.Client, filter string, o subs.Options) subs.Options {
	if s := sessionOf(c); s != nil && !s.id.app && strings.HasPrefix(filter, "/ext/rrpc/") {
		o.NoLocal = true
	}
	return o
}

// Subscribed tells the SubscribeObservers what a device's own SUBSCRIBE
// was granted (engine.SubscriptionHooks).
func (h *hook) Subscribed(c *engine.Client, filters []string) {
	s := sessionOf(c)
	if len(h.b.subObs) == 0 || s == nil || s.id.app || s.id.register != nil {
		return
	}
	// Off the client's read loop: observers read the store and publish.
	h.b.bg.Add(1)
	go func() {
		defer h.b.bg.Done()
		for _, f := range filters {
			for _, o := range h.b.subObs {
				o.DeviceSubscribed(s.id.productKey, s.id.deviceName, f)
			}
		}
	}()
}

// SessionStarted settles a connection once its CONNACK is queued, before
// it is written (engine.Hooks): a registration
// is answered and closed; a device is online, announced, its gateway's
// sub-devices of other connections logged out, and a stock device (_ss=1)
// subscribed to its downlinks.
func (h *hook) SessionStarted(c *engine.Client, _ bool) {
	s := sessionOf(c)
	if s == nil {
		return
	}
	if r := s.id.register; r != nil {
		// The registration answer goes to this client alone, then the
		// connection ends: it has no other rights.
		if err := h.b.eng.PublishTo(c.ID, engine.Message{Topic: r.topic, Payload: r.payload}); err != nil {
			h.b.log.Warn("registration answer not sent", "device", deviceKey(s.id.productKey, s.id.deviceName), "err", err)
		}
		s.reason.Store(ptr("REGISTERED"))
		h.b.eng.Kick(c.ID, "REGISTERED")
		return
	}
	h.mu.Lock()
	if s.id.app {
		h.apps[s.id.clientID] = s
	} else {
		h.devices[deviceKey(s.id.productKey, s.id.deviceName)] = s
	}
	h.mu.Unlock()
	h.b.m.connections.WithLabelValues(s.listener.String()).Inc()
	if s.id.app {
		if h.keyStale(s.id) {
			// Its key changed while it authenticated (see APIKeyChanged).
			s.reason.Store(ptr("API_KEY_CHANGED"))
			h.b.eng.Kick(c.ID, "API_KEY_CHANGED")
		}
		return
	}
	h.logoutSubsOfOtherSessions(deviceKey(s.id.productKey, s.id.deviceName), s)
	if s.id.serverSubs {
		h.b.subscribeClient(s, downlinkFilters(s.id.productKey, s.id.deviceName, s.id.rrpcExt))
	}
	now := h.b.o.Now()
	h.b.pres.record(registry.Presence{ProductKey: s.id.productKey, DeviceName: s.id.deviceName, Online: true, At: now})
	h.b.publishPresence(s, "connected", "", now)
}

// SessionEnded marks a device offline (unless a newer connection of it
// took over) and announces it (engine.Hooks).
func (h *hook) SessionEnded(c *engine.Client, r engine.EndReason) {
	s := sessionOf(c)
	if s == nil || s.id.register != nil {
		return
	}
	h.mu.Lock()
	current := false
	if s.id.app && h.apps[s.id.clientID] == s {
		delete(h.apps, s.id.clientID)
	}
	if !s.id.app {
		key := deviceKey(s.id.productKey, s.id.deviceName)
		if h.devices[key] == s {
			delete(h.devices, key)
			// Taken over: the device stays online through the new
			// connection, which logs out the sub-devices of this one.
			current = r != engine.EndTakeover
		}
	}
	h.mu.Unlock()
	h.b.m.connections.WithLabelValues(s.listener.String()).Dec()
	if s.id.app {
		return
	}
	reason := disconnectReason(s, r, current)
	if reason == "DISABLED" || reason == "DELETED" {
		// A disabled or deleted device keeps no session to come back to.
		h.b.eng.Discard(c.ID)
	}
	now := h.b.o.Now()
	if current {
		h.logoutAllSubs(deviceKey(s.id.productKey, s.id.deviceName), "GATEWAY_DISCONNECTED")
		h.b.pres.record(registry.Presence{ProductKey: s.id.productKey, DeviceName: s.id.deviceName, Online: false, At: now})
	}
	h.b.publishPresence(s, "disconnected", reason, now)
}

// disconnectReason uses AWS IoT's names for why a session ended.
func disconnectReason(s *session, r engine.EndReason, current bool) string {
	if why := s.reason.Load(); why != nil && *why != "" {
		return *why
	}
	switch {
	case r == engine.EndTakeover, !current:
		return "DUPLICATE_CLIENTID"
	case r == engine.EndNormal, r == engine.EndWithWill:
		return "CLIENT_INITIATED_DISCONNECT"
	case r == engine.EndKeepAlive:
		return "MQTT_KEEP_ALIVE_TIMEOUT"
	case r == engine.EndShutdown, r == engine.EndKicked:
		return "SERVER_INITIATED_DISCONNECT"
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
