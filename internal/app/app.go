// Package app wires corral together: it opens the store, loads the
// key-encryption key, builds the domain services and the listeners, and
// runs them until shut down. It is the only package that imports them all.
package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/broker"
	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/gateway"
	"github.com/corral-iot/corral/internal/httpapi"
	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/netlisten"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadowsvc"
	"github.com/corral-iot/corral/internal/store/sqlite"
	"github.com/corral-iot/corral/internal/thing"
	"github.com/corral-iot/corral/internal/webhook"
)

// Version is set at build time with -ldflags "-X .../internal/app.Version=…".
var Version = "dev"

// AdminKeyFile is the name, in the data directory, of the first admin key.
const AdminKeyFile = "admin.key"

// App is a running corral server.
type App struct {
	cfg   config.Config
	log   *slog.Logger
	store *sqlite.Store
	reg   *registry.Service
	audit *audit.Log
	// connAudit aggregates the broker's refused logins (floods of them).
	connAudit *audit.Aggregator
	api       *httpapi.API
	mqtt      *broker.Broker

	httpSrv  *http.Server
	httpLn   net.Listener
	httpsSrv *http.Server
	httpsLn  net.Listener
	tls      *tls.Config // the HTTPS listener's (no client certificates)
	// proxy is each listener's PROXY protocol policy (nil: off).
	proxy   func(listener string, on bool) *netlisten.Proxy
	prov    *provision.Service
	gw      *gateway.Service
	things  *thing.Service
	desired *thing.Desired
	configs *thing.Configs
	hooks   *webhook.Client
	dist    *distribution.Service // nil unless distribution_centre
	// jobs, notifier and imports are distribution jobs, their device
	// notifications and the instance-to-instance imports; nil with dist.
	jobs     *jobs.Service
	notifier *jobs.Notifier
	imports  jobs.Destination
	geo      *distribution.GeoIP // nil without geoip_db
	shadows  *shadowsvc.Service
	// shadowMQTT serves shadows over MQTT (both dialects, pushes, events,
	// presence in the shadow).
	shadowMQTT *shadowsvc.MQTT

	wg      sync.WaitGroup
	errs    chan error
	closing sync.Once
}

// NewLogger builds the structured logger the configuration asks for.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// New builds a server from its configuration: it creates the data
// directory, opens and migrates the store, loads or creates the
// key-encryption key and, on first start, the admin key.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	key, err := loadKEK(cfg, log)
	if err != nil {
		return nil, err
	}
	box, err := credential.NewBox(key)
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "corral.db"), sqlite.Options{Synchronous: cfg.SQLiteSynchronous})
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	// The durability promise rests on what SQLite actually runs with, not
	// on what the DSN asked for: read it back and refuse to run otherwise.
	pr, err := st.Effective(ctx)
	if err == nil && (pr.JournalMode != "wal" || !strings.EqualFold(pr.Synchronous, cfg.SQLiteSynchronous)) {
		err = fmt.Errorf("effective journal_mode=%s synchronous=%s, configured wal and %s", pr.JournalMode, pr.Synchronous, cfg.SQLiteSynchronous)
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("opening store: %w", err)
	}
	log.Info("store opened", "path", filepath.Join(cfg.DataDir, "corral.db"), "journal_mode", pr.JournalMode, "synchronous", pr.Synchronous)
	allow, err := webhook.ParseCIDRs(cfg.WebhookAllowCIDRs)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("webhook_allow_cidrs: %w", err)
	}
	hookPolicy := webhook.Policy{Allow: allow}
	a := &App{cfg: cfg, log: log, store: st, errs: make(chan error, 8)}
	a.audit = audit.NewLog(st, log, nil)
	a.connAudit = audit.NewAggregator(st, log, nil)
	a.reg = registry.New(registry.Options{Store: st, Box: box, Auditor: a.audit, Logger: log, URLPolicy: hookPolicy})
	if err := a.bootstrap(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if n, err := a.reg.ResetPresence(ctx); err != nil {
		st.Close()
		return nil, err
	} else if n > 0 {
		log.Info("marked devices offline that were online when the server last stopped", "devices", n)
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.registerRegistryMetrics(metrics)
	if a.proxy, err = proxyPolicies(cfg, metrics, log); err != nil {
		st.Close()
		return nil, err
	}
	whKey := []byte(cfg.WebhookSecret)
	if len(whKey) == 0 {
		k, created, err := credential.LoadOrCreateKeyFile(filepath.Join(cfg.DataDir, "webhook.key"))
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("webhook key: %w", err)
		}
		if created {
			log.Info("generated the webhook signing key", "path", filepath.Join(cfg.DataDir, "webhook.key"))
		}
		whKey = k
	}
	a.hooks = webhook.New(webhook.Options{Secret: whKey, Logger: log, Policy: hookPolicy})
	a.prov = provision.New(provision.Options{Registry: a.reg, Webhooks: a.hooks, Auditor: a.audit, Logger: log,
		RatePerIP: cfg.RegistrationRatePerIP, RatePerProduct: cfg.RegistrationRatePerPK})
	if a.mqtt, err = a.newBroker(cfg, metrics); err != nil {
		st.Close()
		return nil, err
	}
	a.reg.AddProductObserver(a.mqtt)
	a.reg.AddProductObserver(a.prov)
	a.prov.SetPublisher(a.mqtt)
	a.gw = gateway.New(gateway.Options{Broker: a.mqtt, Registry: a.reg, Provisioner: a.prov, Logger: log})
	a.mqtt.ReportSubErrorsTo(a.gw)
	// The gateway service hears a device change before the broker does:
	// a sub-device's gateway gets thing.disable / thing.delete before the
	// broker logs the sub-device out.
	a.reg.AddObserver(a.gw)
	a.reg.AddObserver(a.mqtt)
	a.things = thing.New(thing.Options{Broker: a.mqtt, Registry: a.reg, Logger: log})
	a.reg.AddProductObserver(a.things)
	a.desired = thing.NewDesired(a.mqtt, a.reg, log)
	a.reg.AddDesiredObserver(a.desired)
	a.mqtt.AddSubscribeObserver(a.desired)
	a.configs = thing.NewConfigs(thing.ConfigOptions{Broker: a.mqtt, Registry: a.reg, BaseURL: a.publicHTTPSURL,
		Key: subkey(key, "corral: configuration file download URLs"), Logger: log})
	eps := endpoints(cfg, a.mqtt)
	a.prov.SetEndpoints(eps)
	a.wireShadows()
	var dist httpapi.Distribution
	var djobs httpapi.Jobs
	var imports httpapi.Imports
	if cfg.DistributionCentre {
		if err := a.newDistribution(ctx, cfg, box, key, hookPolicy, eps); err != nil {
			a.mqtt.Close()
			st.Close()
			return nil, err
		}
		dist, djobs, imports = a.dist, a.jobs, a.imports
	}
	a.api, err = httpapi.New(httpapi.Options{Distribution: dist, Jobs: djobs, Imports: imports, Shadows: a.shadows, Registry: a.reg, Audit: a.audit, Logger: log, Metrics: metrics, Publisher: a.mqtt, Provisioner: a.prov, Topology: a.gw, Things: a.things, Configs: a.configs, DynRegPlainHTTP: cfg.DynRegPlainHTTP,
		Ready: st.Ping, Version: Version, MaxBodyBytes: cfg.MaxBodyBytes, RateLimit: cfg.APIRateLimit})
	if err != nil {
		a.mqtt.Close()
		st.Close()
		return nil, err
	}
	a.api.Handle(thing.ConfigPath, a.configs) // device downloads, HTTPS only
	if a.dist != nil {
		h := a.dist.Handler(cfg.BootstrapPlainHTTP)
		a.api.Handle(distribution.BootstrapPath, h)
		a.api.Handle(distribution.BootstrapPath+"/", h)
	}
	return a, nil
}

func loadKEK(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.KEK != "" {
		k, err := credential.ParseKey(cfg.KEK)
		if err != nil {
			return nil, fmt.Errorf("kek: %w", err)
		}
		return k, nil
	}
	path := cfg.KEKFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, "kek")
	}
	k, created, err := credential.LoadOrCreateKeyFile(path)
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("generated a new key-encryption key; back it up, secrets cannot be read without it", "path", path)
	}
	return k, nil
}

func (a *App) bootstrap(ctx context.Context) error {
	k, err := a.reg.Bootstrap(ctx)
	if err != nil {
		return err
	}
	if k == nil {
		return nil
	}
	path := filepath.Join(a.cfg.DataDir, AdminKeyFile)
	if err := credential.WriteFileAtomic(path, []byte(k.Token()+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing admin key: %w", err)
	}
	a.log.Info("created the first admin API key; it is in this file (mode 0600)", "path", path, "keyId", k.ID)
	return nil
}

func (a *App) registerRegistryMetrics(m *prometheus.Registry) {
	var mu sync.Mutex
	var last registry.Stats
	var at time.Time
	stat := func(pick func(registry.Stats) int64) func() float64 {
		return func() float64 {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(at) > time.Second {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if s, err := a.reg.Stats(ctx); err == nil {
					last, at = s, time.Now()
				}
				cancel()
			}
			return float64(pick(last))
		}
	}
	for name, pick := range map[string]func(registry.Stats) int64{
		"accounts": func(s registry.Stats) int64 { return s.Accounts },
		"products": func(s registry.Stats) int64 { return s.Products },
		"devices":  func(s registry.Stats) int64 { return s.Devices },
		"api_keys": func(s registry.Stats) int64 { return s.APIKeys },
	} {
		m.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_registry_" + name, Help: "Number of " + strings.ReplaceAll(name, "_", " ") + " in the registry."}, stat(pick)))
	}
}

func (a *App) newBroker(cfg config.Config, metrics prometheus.Registerer) (*broker.Broker, error) {
	def := config.Default()
	addrs := map[string]*string{"mqtt_addr": &cfg.MQTTAddr, "mqtts_addr": &cfg.MQTTSAddr, "ws_addr": &cfg.WSAddr, "https_addr": &a.cfg.HTTPSAddr}
	defaults := map[string]string{"mqtt_addr": def.MQTTAddr, "mqtts_addr": def.MQTTSAddr, "ws_addr": def.WSAddr, "https_addr": def.HTTPSAddr}
	for key, addr := range addrs {
		// A default port already taken (say, by another broker on 1883)
		// turns that listener off with a warning rather than failing a
		// zero-configuration start; an address set on purpose must bind.
		if *addr != "" && *addr == defaults[key] && !portFree(*addr) {
			a.log.Warn("default listener address is in use; listener off (set --"+config.FlagName(key)+" to choose another)", "listener", key, "addr", *addr)
			*addr = ""
		}
	}
	var tlsConf *tls.Config
	if cfg.MQTTSAddr != "" || cfg.HTTPSAddr != "" {
		certs, err := a.serverCertificates(cfg)
		if err != nil {
			return nil, err
		}
		// MQTT over TLS asks for a client certificate (X.509 device
		// authentication) and admits devices without one; HTTPS asks for
		// none.
		opts := credential.DeviceTLSOptions{Certificates: certs, LegacyRSAKeyExchange: cfg.TLSLegacyRSAKx, ClientAuth: tls.RequestClientCert}
		if tlsConf, err = credential.DeviceTLSConfig(opts); err != nil {
			return nil, err
		}
		opts.ClientAuth = tls.NoClientCert
		if a.tls, err = credential.DeviceTLSConfig(opts); err != nil {
			return nil, err
		}
		if !cfg.TLSLegacyRSAKx {
			a.log.Info("static RSA key exchange is off (tls_legacy_rsa_kx=false); devices without elliptic curves, such as stock Link SDK builds, cannot connect over TLS")
		}
	}
	if cfg.MQTTSAddr == "" {
		tlsConf = nil
	}
	var sessions persist.Store
	if cfg.MQTTDurableSessions {
		sessions = a.store.MQTT()
	}
	return broker.New(broker.Options{Sessions: sessions, Registry: a.reg, Provisioner: a.prov, Auditor: a.connAudit, Logger: a.log, Metrics: metrics,
		TCPAddr: cfg.MQTTAddr, TLSAddr: cfg.MQTTSAddr, WSAddr: cfg.WSAddr, TLS: tlsConf,
		TCPProxy: a.proxy("mqtt", cfg.MQTTProxyProtocol), TLSProxy: a.proxy("mqtts", cfg.MQTTSProxyProtocol), WSProxy: a.proxy("ws", cfg.WSProxyProtocol), WSForwardedFor: forwardedFor(cfg), RegisterPlain: cfg.MQTTRegisterPlain,
		MaxQueued: int(cfg.MQTTMaxQueued), MaxQueuedBytes: int(cfg.MQTTMaxQueuedBytes), MaxInflight: uint16(cfg.MQTTMaxInflight),
		MaxPacketSize: uint32(cfg.MQTTMaxPacketSize), TopicAliasMaximum: topicAliasMaximum(cfg.MQTTTopicAliasMaximum), ParkIdle: cfg.MQTTParkIdle,
		WSReadTimeout: cfg.HTTPReadTimeout, WSWriteTimeout: cfg.HTTPWriteTimeout, WSIdleTimeout: cfg.HTTPIdleTimeout,
		ConnectTimeout: cfg.MQTTConnectTimeout, MaxPendingPerIP: int(cfg.MQTTMaxPendingPerIP),
		AuthFailuresPerIP: int(cfg.MQTTAuthFailuresPerIP), AuthFailuresPerDevice: int(cfg.MQTTAuthFailuresPerDevice),
		WSAllowedOrigins: strings.Split(cfg.WSAllowedOrigins, ",")})
}

// topicAliasMaximum is mqtt_topic_alias_maximum as broker.Options has it
// (negative: none).
func topicAliasMaximum(n int64) int {
	if n == 0 {
		return -1
	}
	return int(n)
}

// serverCertificates are the device-facing TLS listeners' certificates:
// the configured pair (and RSA pair), or corral's generated ECDSA and RSA
// chains.
func (a *App) serverCertificates(cfg config.Config) ([]tls.Certificate, error) {
	if cfg.TLSCertFile == "" {
		var hosts []string
		for _, h := range strings.Split(cfg.TLSHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		st, err := credential.EnsureServerTLS(filepath.Join(cfg.DataDir, "tls"), hosts)
		if err != nil {
			return nil, fmt.Errorf("preparing TLS certificates: %w", err)
		}
		a.log.Info("TLS listeners use corral's local CA; clients should trust caFile (both CAs), stock Link SDK devices rsaCAFile (RSA alone)",
			"caFile", st.CAPath, "rsaCAFile", st.RSACAPath, "generated", st.Created)
		return st.Certificates(), nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate: %w", err)
	}
	certs := []tls.Certificate{cert}
	if cfg.TLSRSACertFile != "" {
		rsaCert, err := tls.LoadX509KeyPair(cfg.TLSRSACertFile, cfg.TLSRSAKeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading tls_rsa_cert_file: %w", err)
		}
		if !credential.IsRSA(rsaCert) {
			return nil, fmt.Errorf("tls_rsa_cert_file: %w: the certificate's key is not RSA", config.ErrInvalid)
		}
		certs = append(certs, rsaCert)
	}
	if !slices.ContainsFunc(certs, credential.IsRSA) {
		a.log.Warn("no RSA server certificate: stock Link SDK devices (mbedtls without elliptic curves) cannot parse an ECDSA certificate and will fail the TLS handshake; set tls_rsa_cert_file and tls_rsa_key_file")
	}
	return certs, nil
}

// endpoints are what client-driven registration tells devices.
func endpoints(cfg config.Config, b *broker.Broker) map[string]string {
	e := map[string]string{}
	for _, x := range []struct{ key, public, scheme, listener string }{
		{"mqtt", cfg.PublicMQTTEndpoint, "tcp", "tcp"}, {"mqtts", cfg.PublicMQTTSEndpoint, "ssl", "tls"}} {
		switch {
		case x.public != "":
			e[x.key] = x.public
		case b.Addr(x.listener) != "":
			e[x.key] = x.scheme + "://" + b.Addr(x.listener)
		}
	}
	return e
}

func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// Distribution returns the distribution service (nil unless this corral
// is a distribution centre), for in-process use and tests.
func (a *App) Distribution() *distribution.Service { return a.dist }

// Broker returns the MQTT broker, for in-process use and tests.
func (a *App) Broker() *broker.Broker { return a.mqtt }

// Registry returns the registry service, for in-process use and tests.
func (a *App) Registry() *registry.Service { return a.reg }

// Start binds the listeners and serves in the background.
func (a *App) Start(ctx context.Context) error {
	a.connAudit.Start()
	if err := a.mqtt.Serve(); err != nil {
		return err
	}
	if err := a.gw.Start(); err != nil {
		return err
	}
	if a.jobs != nil {
		if err := a.notifier.Start(); err != nil {
			return err
		}
		if err := a.jobs.Start(ctx); err != nil {
			return err
		}
	}
	if err := a.things.Start(); err != nil {
		return err
	}
	if err := a.desired.Start(); err != nil {
		return err
	}
	if err := a.configs.Start(); err != nil {
		return err
	}
	if err := a.shadowMQTT.Start(); err != nil {
		return err
	}
	a.hooks.Start(4)
	if a.cfg.HTTPSAddr != "" && a.tls != nil {
		ln, err := netlisten.Listen(netlisten.Config{Addr: a.cfg.HTTPSAddr, Proxy: a.proxy("https", a.cfg.HTTPSProxyProtocol), TLS: a.tls})
		if err != nil {
			return fmt.Errorf("HTTPS: %w", err)
		}
		a.httpsLn = ln
		a.httpsSrv = a.httpServer(a.api)
		a.serve("https", func() error { return a.httpsSrv.Serve(a.httpsLn) })
		a.log.Info("listening", "listener", "https", "addr", ln.Addr().String())
	}
	if a.cfg.HTTPAddr != "" {
		ln, err := netlisten.Listen(netlisten.Config{Addr: a.cfg.HTTPAddr, Proxy: a.proxy("http", a.cfg.HTTPProxyProtocol)})
		if err != nil {
			return fmt.Errorf("HTTP: %w", err)
		}
		a.httpLn = ln
		a.httpSrv = a.httpServer(a.api)
		a.serve("http", func() error { return a.httpSrv.Serve(ln) })
		a.log.Info("listening", "listener", "http", "addr", ln.Addr().String())
	}
	return nil
}

// httpServer is every HTTP listener's server: each phase of a request is
// bounded, so that a client sending its headers or body slowly, reading
// its answer slowly or idling on a keep-alive connection cannot hold it.
func (a *App) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: min(headerTimeout, a.cfg.HTTPReadTimeout), ReadTimeout: a.cfg.HTTPReadTimeout,
		WriteTimeout: a.cfg.HTTPWriteTimeout, IdleTimeout: a.cfg.HTTPIdleTimeout, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
}

// headerTimeout bounds reading a request's headers.
const headerTimeout = 10 * time.Second

func (a *App) serve(name string, fn func() error) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			a.errs <- fmt.Errorf("%s listener: %w", name, err)
		}
	}()
}

// publicHTTPSURL is the HTTPS origin handed to devices for downloads:
// public_https_url, or the listener's port on localhost.
func (a *App) publicHTTPSURL() string {
	if a.cfg.PublicHTTPSURL != "" {
		return strings.TrimSuffix(a.cfg.PublicHTTPSURL, "/")
	}
	_, port, _ := net.SplitHostPort(a.HTTPSAddr())
	return "https://localhost:" + port
}

// subkey derives a key for one purpose from the key-encryption key, so
// that no purpose learns another's key.
func subkey(kek []byte, purpose string) []byte {
	m := hmac.New(sha256.New, kek)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// HTTPSAddr is the bound address of the HTTPS listener ("" when off).
func (a *App) HTTPSAddr() string {
	if a.httpsLn == nil {
		return ""
	}
	return a.httpsLn.Addr().String()
}

// HTTPAddr is the bound address of the HTTP listener ("" when off).
func (a *App) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// Run starts the server and blocks until ctx is done or a listener fails,
// then shuts down gracefully.
func (a *App) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		a.Shutdown(context.Background())
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-a.errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(runErr, a.Shutdown(sctx))
}

// Shutdown stops accepting work, finishes in-flight requests (until ctx
// ends) and closes the store.
func (a *App) Shutdown(ctx context.Context) error {
	var err error
	a.closing.Do(func() {
		a.log.Info("shutting down")
		if a.httpSrv != nil {
			err = errors.Join(err, a.httpSrv.Shutdown(ctx))
		}
		if a.httpsSrv != nil {
			err = errors.Join(err, a.httpsSrv.Shutdown(ctx))
		}
		a.hooks.Stop()
		if a.jobs != nil {
			a.jobs.Close() // open jobs resume at the next start
			a.notifier.Close()
		}
		err = errors.Join(err, a.mqtt.Close())
		a.shadowMQTT.Stop() // after the broker: the presence of the sessions it closed is written
		a.desired.Stop()    // after the broker: no session starts any more
		a.connAudit.Close()
		a.wg.Wait()
		err = errors.Join(err, a.store.Close())
		if a.geo != nil {
			err = errors.Join(err, a.geo.Close())
		}
		a.log.Info("stopped")
	})
	return err
}
