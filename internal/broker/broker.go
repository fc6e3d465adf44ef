// Package broker runs corral's MQTT broker on corral's own engine
// (internal/mqtt/engine, MQTT 3.1.1 and 5) and owns everything
// MQTT-specific that knows of devices: listeners (TCP, TLS, WebSocket),
// device and application authentication, per-device topic rights,
// presence events, last wills held to the same rights, kicking sessions,
// and an in-process publish/subscribe API for other capabilities. It is
// the only package that maps errors to MQTT reason codes.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/mqtt/engine"
	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/retained"
	"github.com/corral-iot/corral/internal/netlisten"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// Registry is what the broker needs of the device registry.
type Registry interface {
	LookupDevice(ctx context.Context, pk, dn string) (registry.Device, error)
	LookupDeviceAuth(ctx context.Context, pk, dn string) (registry.Device, error)
	LookupThing(ctx context.Context, name string) (registry.Device, error)
	LookupProduct(ctx context.Context, pk string) (registry.Product, error)
	AuthenticateKey(ctx context.Context, id, secret string) (registry.Principal, error)
	LookupAPIKey(ctx context.Context, id string) (registry.APIKey, error)
	RecordPresence(ctx context.Context, ps []registry.Presence) error
}

// Provisioner registers devices over MQTT (authType=register, regnwl)
// and checks registration-free device tokens (connwl).
type Provisioner interface {
	Dynamic(ctx context.Context, req provision.Request) (provision.Result, error)
	RegisterFree(ctx context.Context, req provision.Request) (provision.Result, error)
	VerifyToken(ctx context.Context, pk, dn, clientID, token string) (bool, error)
	AuthenticateCertificate(ctx context.Context, cert *x509.Certificate, source string) (registry.Device, error)
}

// Auditor records refused connections.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry)
}

// ReportSubErrorsTo sets Options.SubErrors (the gateway service is made
// after the broker it publishes through); call it before Serve.
func (b *Broker) ReportSubErrorsTo(r SubErrorReporter) { b.o.SubErrors = r }

// SubErrorReporter tells a gateway that an action for a sub-device failed.
type SubErrorReporter interface {
	ReportSubError(gwPk, gwDn, subPk, subDn string, code int, message string)
}

// Options configure the broker.
type Options struct {
	Registry    Registry
	Provisioner Provisioner // optional: MQTT dynamic registration
	Auditor     Auditor     // optional
	// SubErrors is told when a device publishes for another device
	// (a gateway for a sub-device not logged in through it) and is
	// refused, so the gateway hears of it on /ext/error (optional).
	SubErrors SubErrorReporter
	Logger    *slog.Logger
	Metrics   prometheus.Registerer // optional
	Now       func() time.Time

	// Listener addresses; empty turns a listener off.
	TCPAddr string
	TLSAddr string
	WSAddr  string
	// The PROXY protocol policy of each listener (nil: off): behind a
	// load balancer, the address in the header is the client's.
	TCPProxy, TLSProxy, WSProxy *netlisten.Proxy
	// WSForwardedFor are the HTTP proxies whose X-Forwarded-For names the
	// WebSocket client's address (empty: none).
	WSForwardedFor []netip.Prefix
	// TLS is the server configuration of the TLS listener (certificate,
	// client-certificate verification).
	TLS *tls.Config
	// Timeouts of the WebSocket listener's HTTP exchange before the
	// upgrade (0: none); an upgraded session is not bound by them.
	WSReadTimeout, WSWriteTimeout, WSIdleTimeout time.Duration
	// RegisterPlain also answers dynamic registration (authType=register,
	// regnwl), whose answer carries a credential, on the plain TCP and
	// WebSocket listeners; by default only the TLS listener does (labs only).
	RegisterPlain bool

	// Per-session limits (see DESIGN.md). MaxQueued and MaxQueuedBytes
	// bound a session's queue of messages not yet written (defaults 1,000
	// and 16 MiB; past them QoS 0 goes first and every drop is counted).
	// MaxInflight bounds unacknowledged QoS 1/2 messages both ways: the
	// outbound window and the Receive Maximum advertised (default 1024).
	// MaxPacketSize bounds a packet from a client and is advertised
	// (default 256 KiB); TopicAliasMaximum is advertised to MQTT 5 clients
	// (default 64; negative: none).
	MaxQueued      int
	MaxQueuedBytes int
	// Sessions keeps persistent sessions and retained messages across
	// restarts (nil: in memory only).
	Sessions          persist.Store
	MaxSessionExpiry  uint32
	MaxPacketSize     uint32
	MaxInflight       uint16
	TopicAliasMaximum int
	PresenceBatchWait time.Duration
	// ParkIdle is engine.Options.ParkIdle: a connection idle this long
	// gives up its goroutine (0: never).
	ParkIdle time.Duration

	// Hostile clients. ConnectTimeout is how long a connection may take to
	// send CONNECT (default 10 s); MaxPendingPerIP caps one address's
	// connections without an accepted CONNECT (0: no cap).
	ConnectTimeout  time.Duration
	MaxPendingPerIP int
	// AuthFailuresPerIP and AuthFailuresPerDevice are the failed logins a
	// minute after which CONNECTs back off (see loginLimiter; 0: off).
	AuthFailuresPerIP     int
	AuthFailuresPerDevice int
	// WSAllowedOrigins are the Origins a browser may open the WebSocket
	// listener from (exact scheme://host[:port], case-insensitive); empty
	// allows any. Requests without an Origin (not from a browser) pass.
	WSAllowedOrigins []string
}

// Broker is the running MQTT broker.
type Broker struct {
	o       Options
	log     *slog.Logger
	eng     *engine.Server
	ret     *retained.Store
	hook    *hook
	m       *metrics
	addrs   map[string]string // listener id -> bound address
	names   map[string]string // bound address -> listener id
	lns     []net.Listener
	pres    *presenceWriter
	auth    *authPool
	adm     *admission
	logins  *loginLimiter
	sample  *logSampler
	stop    chan struct{}
	done    chan struct{}
	serving sync.WaitGroup // the accept loops
	bg      sync.WaitGroup // observer calls
	served  atomic.Bool
	closed  sync.Once

	subObs  []SubscribeObserver // set before Serve
	presObs presenceObservers
}

// SubscribeObserver is told when a device's own SUBSCRIBE was granted
// (not the subscriptions corral adds for _ss=1), so a service can send
// what was waiting for the device (desired values) once it can receive.
type SubscribeObserver interface {
	DeviceSubscribed(pk, dn, filter string)
}

// AddSubscribeObserver registers an observer of devices' subscriptions;
// call it before Serve.
func (b *Broker) AddSubscribeObserver(o SubscribeObserver) { b.subObs = append(b.subObs, o) }

// New builds the broker and binds its listeners; Serve starts it.
func New(o Options) (*Broker, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSessionExpiry == 0 {
		o.MaxSessionExpiry = 24 * 3600
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = 256 << 10
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 1024
	}
	if o.PresenceBatchWait == 0 {
		o.PresenceBatchWait = 20 * time.Millisecond
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	b := &Broker{o: o, log: o.Logger, ret: retained.New(), addrs: map[string]string{}, names: map[string]string{}}
	b.m = newMetrics(o.Metrics)
	b.logins = newLoginLimiter(o.Now, o.AuthFailuresPerIP, o.AuthFailuresPerDevice)
	b.sample = newLogSampler(o.Now, refusalsLoggedPerMinute)
	b.stop, b.done = make(chan struct{}), make(chan struct{})
	b.adm = newAdmission(o.ConnectTimeout, o.MaxPendingPerIP, time.Now, b.m.pendingCap.Inc)
	b.pres = newPresenceWriter(o.Registry, o.Logger, o.PresenceBatchWait)
	b.auth = newAuthPool()
	b.hook = newHook(b)
	var err error
	b.eng, err = engine.Open(context.Background(), engine.Options{
		Store: o.Sessions, Hooks: b.hook, Logger: o.Logger.With("component", "mqtt"), Retained: b.ret,
		MaxPacketSize: int(o.MaxPacketSize), ReceiveMaximum: o.MaxInflight, MaxInflight: int(o.MaxInflight),
		TopicAliasMaximum: o.TopicAliasMaximum, QueueMessages: o.MaxQueued, QueueBytes: o.MaxQueuedBytes,
		MaxSessionExpiry: o.MaxSessionExpiry, ConnectTimeout: o.ConnectTimeout, OnDrop: b.m.drop, ParkIdle: o.ParkIdle,
		// Paho clients without an explicit version retry a refused
		// CONNECT in 3.1: they must hear the refusal's reason again.
		AcceptMQTT31: true,
	})
	if err != nil {
		return nil, fmt.Errorf("restoring MQTT sessions: %w", err)
	}
	b.m.watch(b.eng)
	if err := b.listen(); err != nil {
		_ = b.eng.Close(context.Background())
		return nil, err
	}
	return b, nil
}

func (b *Broker) listen() error {
	if b.o.TLSAddr != "" && b.o.TLS == nil {
		return errors.New("the TLS listener needs a TLS configuration")
	}
	for _, x := range []struct {
		id   string
		conf netlisten.Config
	}{
		// MQTT's keep alive finds dead peers; the engine turns TCP's on for
		// a client that asked for none.
		{"tcp", netlisten.Config{Addr: b.o.TCPAddr, Proxy: b.o.TCPProxy, NoTCPKeepAlive: true}},
		{"tls", netlisten.Config{Addr: b.o.TLSAddr, Proxy: b.o.TLSProxy, TLS: b.o.TLS, NoTCPKeepAlive: true}},
		{"ws", netlisten.Config{Addr: b.o.WSAddr, Proxy: b.o.WSProxy, WebSocket: &netlisten.WebSocket{
			Path: "/mqtt", Subprotocols: []string{"mqtt", "mqttv3.1"}, Origins: b.o.WSAllowedOrigins,
			ReadTimeout: b.o.WSReadTimeout, WriteTimeout: b.o.WSWriteTimeout, IdleTimeout: b.o.WSIdleTimeout,
			FirstDeadline: b.o.ConnectTimeout, ForwardedFor: b.o.WSForwardedFor, Log: b.log}}},
	} {
		if x.conf.Addr == "" {
			continue
		}
		// Admission counts connections by the client's address, so it
		// goes above the PROXY protocol and below TLS and HTTP.
		x.conf.Wrap = b.adm.listener
		ln, err := netlisten.Listen(x.conf)
		if err != nil {
			b.closeListeners()
			return fmt.Errorf("%s listener: %w", x.id, err)
		}
		b.addrs[x.id] = ln.Addr().String()
		b.names[ln.Addr().String()] = x.id
		b.lns = append(b.lns, ln)
	}
	return nil
}

// listenerName is the id ("tcp", "tls", "ws") of the listener the engine
// names by its address.
func (b *Broker) listenerName(addr string) string { return b.names[addr] }

// closeListeners closes the listeners opened so far.
func (b *Broker) closeListeners() {
	for _, ln := range b.lns {
		ln.Close()
	}
}

// maintain forgets quiet login-failure state, logs the summaries of
// refusals the sampler held back and moves the rights generation every
// rightsTTL, until Close.
func (b *Broker) maintain() {
	defer close(b.done)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	rights := time.NewTicker(rightsTTL)
	defer rights.Stop()
	for {
		select {
		case <-b.stop:
			b.logUnlogged(b.sample.sweep(true))
			return
		case <-rights.C:
			b.hook.rightsChanged()
		case <-t.C:
			b.logins.sweep()
			b.logUnlogged(b.sample.sweep(false))
		}
	}
}

func (b *Broker) logUnlogged(counts map[string]int) {
	for src, n := range counts {
		b.log.Info("connections refused and not logged", "source", src, "count", n)
	}
}

// Addr returns the bound address of a listener ("tcp", "tls", "ws"), or "".
func (b *Broker) Addr(listener string) string { return b.addrs[listener] }

// refusalsLoggedPerMinute is how many refused CONNECTs from one source
// are logged a minute; the rest are counted in one summary line.
const refusalsLoggedPerMinute = 5

// Serve starts serving on the listeners.
func (b *Broker) Serve() error {
	go b.pres.run()
	b.served.Store(true)
	go b.maintain()
	for _, ln := range b.lns {
		b.serving.Add(1)
		go func() {
			defer b.serving.Done()
			if err := b.eng.Serve(ln); err != nil && !errors.Is(err, engine.ErrClosed) {
				b.log.Error("mqtt listener stopped", "listener", "mqtt-"+b.names[ln.Addr().String()], "err", err)
			}
		}()
	}
	for id, a := range b.addrs {
		b.log.Info("listening", "listener", "mqtt-"+id, "addr", a)
	}
	return nil
}

// shutdownGrace bounds how long Close waits for connections to take their
// DISCONNECT before they are closed at once.
const shutdownGrace = 5 * time.Second

// Close disconnects every client, stops the listeners and flushes
// presence to the registry.
func (b *Broker) Close() error {
	var err error
	b.closed.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err = b.eng.Close(ctx)
		b.closeListeners()
		b.serving.Wait()
		b.bg.Wait()
		if b.served.Load() { // else the presence writer never ran
			b.pres.stop()
		}
		b.auth.stop()
		close(b.stop)
		if b.served.Load() {
			<-b.done
		}
	})
	if err != nil {
		return fmt.Errorf("closing the MQTT engine: %w", err)
	}
	return nil
}

// Publish publishes a message into the broker from inside corral.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if err := b.eng.Publish(engine.Message{Topic: topic, Payload: payload, Retain: retain, QoS: qos}); err != nil {
		return fmt.Errorf("publishing to %s: %w", topic, err)
	}
	return nil
}

// Subscribed reports whether anyone (a client or an in-process
// subscriber) would receive a publish on topic now, so that a payload
// no one receives need not be built.
func (b *Broker) Subscribed(topic string) bool { return b.eng.Subscribed(topic) }

// Subscribe subscribes in-process to a filter; the returned function
// unsubscribes. h runs on the publisher's goroutine and must not block.
func (b *Broker) Subscribe(filter string, h func(topic string, payload []byte)) (func(), error) {
	unsub, err := b.eng.Subscribe(filter, func(m *engine.Message) { h(m.Topic, m.Payload) })
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s: %w", filter, err)
	}
	return unsub, nil
}

// SubscribeFromClients subscribes in-process to a filter like Subscribe,
// but hands h only what MQTT clients published: corral's own publishes
// (Publish) are left out, so a topic that carries a request and its
// answer (v4 RRPC) does not give the request back as the answer.
func (b *Broker) SubscribeFromClients(filter string, h func(topic string, payload []byte)) (func(), error) {
	unsub, err := b.eng.Subscribe(filter, func(m *engine.Message) {
		if m.Publisher == "" {
			return
		}
		h(m.Topic, m.Payload)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s: %w", filter, err)
	}
	return unsub, nil
}

// SubscribeOrigin subscribes in-process to a filter like Subscribe, and
// tells h whether a device published the message: a device's own session
// or its gateway's (a sub-device's publish), wills included; not an
// application client, nor corral itself (Publish, PublishFor).
func (b *Broker) SubscribeOrigin(filter string, h func(topic string, payload []byte, fromDevice bool)) (func(), error) {
	unsub, err := b.eng.Subscribe(filter, func(m *engine.Message) { h(m.Topic, m.Payload, originIsDevice(m.Publisher)) })
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s: %w", filter, err)
	}
	return unsub, nil
}

// originIsDevice reports whether a publish's origin (the publisher's
// session id as Authenticate named it) is a device: devices' are
// {pk}.{dn}, applications' app:{keyId}:{id}; corral's own publishes have
// none.
func originIsDevice(origin string) bool {
	return strings.Contains(origin, ".") && !strings.HasPrefix(origin, appClientPrefix)
}

// SubscribeAll subscribes in-process to several filters, each with its
// handler; the returned function unsubscribes them all.
func (b *Broker) SubscribeAll(hs map[string]func(topic string, payload []byte)) (func(), error) {
	var unsubs []func()
	stop := func() {
		for _, u := range unsubs {
			u()
		}
	}
	for f, h := range hs {
		u, err := b.Subscribe(f, h)
		if err != nil {
			stop()
			return nil, err
		}
		unsubs = append(unsubs, u)
	}
	return stop, nil
}

// Kick closes a device's live session, if it has one (a sub-device's
// session through its gateway is logged out). MQTT 5 clients are told
// reason in their DISCONNECT (0x98); 3.1.1 connections just close.
func (b *Broker) Kick(pk, dn string, reason string) bool {
	s := b.hook.deviceSession(pk, dn)
	if s == nil {
		b.hook.mu.RLock()
		gw := b.hook.subOf[deviceKey(pk, dn)]
		b.hook.mu.RUnlock()
		if gw == "" {
			return false
		}
		gwPk, gwDn := registry.SplitGatewayKey(gw)
		return b.LogoutSub(gwPk, gwDn, pk, dn, reason)
	}
	s.reason.Store(&reason)
	b.hook.rightsChanged() // a kick may revoke rights (a distributed device): decide again
	return b.eng.Kick(s.id.clientID, reason)
}

// dropSession forgets the persistent session (clean session false, or an
// MQTT 5 session expiry) of a client that is no longer connected: its
// subscriptions and the messages queued for it. A live session is
// dropped when it ends (SessionEnded), for a kicked disabled or deleted
// device.
func (b *Broker) dropSession(clientID string) { b.eng.Discard(clientID) }

// clearRetained drops the retained messages of a thing whose name was
// released.
func (b *Broker) clearRetained(thing string) {
	if thing == "" {
		return
	}
	var topics []string
	b.ret.Match(thingsPrefix+thing+"/#", b.o.Now(), func(m *retained.Message) bool {
		topics = append(topics, m.Topic)
		return true
	})
	for _, t := range topics {
		if _, err := b.ret.Retain(retained.Message{Topic: t}); err != nil {
			b.log.Warn("clearing a retained message", "topic", t, "err", err)
		}
	}
}

// Connected reports whether a device has a live session of its own.
func (b *Broker) Connected(pk, dn string) bool { return b.eng.Connected(pk + "." + dn) }

// DeviceChanged implements registry.Observer: a disabled or deleted
// device loses its session at once.
func (b *Broker) DeviceChanged(_ context.Context, kind registry.DeviceEventKind, d registry.Device) {
	b.hook.restored.Delete(d.ProductKey + "." + d.DeviceName)
	switch kind {
	case registry.DeviceDisabled:
		b.Kick(d.ProductKey, d.DeviceName, "DISABLED")
		b.dropSession(d.ProductKey + "." + d.DeviceName)
	case registry.DeviceDeleted:
		b.Kick(d.ProductKey, d.DeviceName, "DELETED")
		b.dropSession(d.ProductKey + "." + d.DeviceName)
		b.hook.forgetThings(d.ThingName)
		b.clearRetained(d.ThingName)
	case registry.DeviceRenamed:
		// Its topics changed: the session reconnects with the new ones,
		// and what was retained under the old name, which another
		// account's device may take next, goes.
		b.hook.forgetThings("")
		b.Kick(d.ProductKey, d.DeviceName, "THING_RENAMED")
		b.clearRetained(d.PreviousThingName)
	case registry.DeviceCredentialsChanged:
		b.Kick(d.ProductKey, d.DeviceName, "CREDENTIALS_CHANGED")
	}
	b.hook.rightsChanged() // after the caches above were dropped
}

// ProductChanged implements registry.ProductObserver: the next CONNECT
// sees a changed product's settings (say, certificate-only).
func (b *Broker) ProductChanged(_ context.Context, kind registry.ProductEventKind, pk string) {
	b.hook.forgetProduct(pk, kind == registry.ProductDeleted)
	b.hook.rightsChanged() // after: a decision read from the old settings is not used again
}

// APIKeyChanged implements registry.KeyObserver: the sessions of a key
// that was deleted or changed role close at once (a changed key
// reconnects with its new rights; a deleted one cannot).
func (b *Broker) APIKeyChanged(_ context.Context, kind registry.KeyEventKind, k registry.APIKey) {
	reason := "API_KEY_DELETED"
	if kind == registry.KeyRoleChanged {
		reason = "API_KEY_ROLE_CHANGED"
	}
	h := b.hook
	h.restored.Clear() // sessions named app:{key}:{id}: rare enough to drop all
	// Remembered before the sessions are scanned: a CONNECT authenticated
	// with the old key but not yet in the session table is caught when its
	// session is established (keyStale).
	h.noteKey(kind, k)
	h.rightsChanged()
	var ss []*session
	h.mu.RLock()
	for _, s := range h.apps {
		if s.id.keyID == k.ID {
			ss = append(ss, s)
		}
	}
	h.mu.RUnlock()
	for _, s := range ss {
		s.reason.Store(&reason)
		b.eng.Kick(s.id.clientID, reason)
	}
}

// ErrTopicNotAllowed means a topic is outside the publisher's rights; it
// is a registry.ErrForbidden.
var ErrTopicNotAllowed = fmt.Errorf("topic is outside the caller's rights: %w", registry.ErrForbidden)

// PublishFor publishes on behalf of an account's application (HTTP
// publish): the same rights as the account's MQTT application clients.
func (b *Broker) PublishFor(ctx context.Context, accountID, topic string, payload []byte, qos byte, retain bool) error {
	if topic == "" || len(topic) > 1024 || strings.ContainsAny(topic, "+#\x00") || !utf8.ValidString(topic) {
		return &registry.ValidationError{Field: "topic", Reason: "must be a non-empty MQTT topic name without wildcards, at most 1024 bytes"}
	}
	if qos > 1 {
		return &registry.ValidationError{Field: "qos", Reason: "must be 0 or 1"}
	}
	if !b.hook.directionOf(ctx, topic).appPublishes() {
		return fmt.Errorf("topic %q is the device's to publish (an uplink), corral's (a reply) or in no topic class; applications publish downlinks only: %w", safeClientID(topic), ErrTopicNotAllowed)
	}
	if !b.hook.ownsTopic(ctx, identity{app: true, accountID: accountID}, topic) {
		return fmt.Errorf("topic %q: %w", safeClientID(topic), ErrTopicNotAllowed)
	}
	return b.Publish(topic, payload, retain, qos)
}
