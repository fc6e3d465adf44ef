// Package config owns corral's configuration: defaults, then a YAML file,
// then CORRAL_* environment variables, then command-line flags, each layer
// overriding the one before; and the validation of the result.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of a corral server. Every field can be
// set in the YAML file (key in the yaml tag), in the environment
// (CORRAL_ + the key in upper case) and by a flag (the key with dashes).
type Config struct {
	DataDir  string `yaml:"data_dir" help:"directory for the database, keys and generated certificates"`
	HTTPAddr string `yaml:"http_addr" help:"REST API and plain-HTTP listener address (empty: off)"`

	HTTPSAddr string `yaml:"https_addr" help:"HTTPS listener address: the API and dynamic registration over TLS (empty: off)"`
	MQTTAddr  string `yaml:"mqtt_addr" help:"MQTT over TCP listener address (empty: off)"`
	MQTTSAddr string `yaml:"mqtts_addr" help:"MQTT over TLS listener address (empty: off)"`
	WSAddr    string `yaml:"ws_addr" help:"MQTT over WebSocket listener address, path /mqtt (empty: off)"`
	// Per-session broker limits: a queue grows only as messages wait in
	// it, so idle sessions cost nothing for them; in-flight messages cost
	// nothing until used.
	MQTTMaxQueued         int64         `yaml:"mqtt_max_queued" help:"messages queued for one session before QoS 0 ones are evicted and further ones dropped (counted in corral_mqtt_drops_total)"`
	MQTTMaxQueuedBytes    int64         `yaml:"mqtt_max_queued_bytes" help:"bytes of topics and payloads queued for one session, with the same policy as mqtt_max_queued"`
	MQTTDurableSessions   bool          `yaml:"mqtt_durable_sessions" help:"keep persistent MQTT sessions (subscriptions, queued and unacknowledged QoS 1/2 messages) and retained messages in the store, so they survive a restart or a crash; a QoS 1/2 PUBLISH reaching a persistent subscriber is acknowledged once stored. false: in memory only"`
	MQTTMaxInflight       int64         `yaml:"mqtt_max_inflight" help:"unacknowledged QoS 1/2 messages per client, both ways (the Receive Maximum advertised to MQTT 5 clients)"`
	MQTTMaxPacketSize     int64         `yaml:"mqtt_max_packet_size" help:"largest MQTT packet a client may send, in bytes, advertised to MQTT 5 clients; a larger one ends the connection (MQTT 5: DISCONNECT 0x95)"`
	MQTTTopicAliasMaximum int64         `yaml:"mqtt_topic_alias_maximum" help:"topic aliases an MQTT 5 client may set, advertised in CONNACK (0: none)"`
	MQTTParkIdle          time.Duration `yaml:"mqtt_park_idle" help:"an MQTT connection that sent nothing for this long gives up its goroutine until it does, and one whose packet came after half this long of silence as soon as it is read (Linux; WebSocket connections never do); 0: never"`
	// Hostile clients: a connection must send CONNECT in time, one address
	// holds only so many unauthenticated connections, and failed logins
	// back off per address and per device.
	MQTTConnectTimeout        time.Duration `yaml:"mqtt_connect_timeout" help:"how long a new MQTT connection (or WebSocket upgrade) may take to send CONNECT before it is closed"`
	MQTTMaxPendingPerIP       int64         `yaml:"mqtt_max_pending_per_ip" help:"connections one address may hold before their CONNECT is accepted; further ones are closed at accept (0: no limit)"`
	MQTTAuthFailuresPerIP     int64         `yaml:"mqtt_auth_failures_per_ip" help:"failed MQTT logins a minute from one address before its CONNECTs are answered 'server busy' with exponential back-off (1 s doubling to 5 min; 0: no limit)"`
	MQTTAuthFailuresPerDevice int64         `yaml:"mqtt_auth_failures_per_device" help:"failed MQTT logins a minute for one device or API key before CONNECTs for it from addresses that failed are answered 'server busy' (back-off 1 s doubling to 30 s; 0: no limit)"`
	WSAllowedOrigins          string        `yaml:"ws_allowed_origins" help:"comma-separated Origins (scheme://host[:port]) browsers may open MQTT over WebSocket from; others get 403 (empty: any)"`
	// PROXY protocol (v1 and v2) per listener, for corral behind HAProxy
	// or a cloud load balancer: connections from proxy_trusted_cidrs must
	// open with a header whose source address is then the client's.
	MQTTProxyProtocol  bool          `yaml:"mqtt_proxy_protocol" help:"expect a PROXY protocol header (v1 or v2) on the MQTT over TCP listener from proxy_trusted_cidrs"`
	MQTTSProxyProtocol bool          `yaml:"mqtts_proxy_protocol" help:"expect a PROXY protocol header on the MQTT over TLS listener (before the TLS handshake) from proxy_trusted_cidrs"`
	WSProxyProtocol    bool          `yaml:"ws_proxy_protocol" help:"expect a PROXY protocol header on the MQTT over WebSocket listener from proxy_trusted_cidrs"`
	HTTPProxyProtocol  bool          `yaml:"http_proxy_protocol" help:"expect a PROXY protocol header on the HTTP listener from proxy_trusted_cidrs"`
	HTTPSProxyProtocol bool          `yaml:"https_proxy_protocol" help:"expect a PROXY protocol header on the HTTPS listener (before the TLS handshake) from proxy_trusted_cidrs"`
	WSForwardedFor     bool          `yaml:"ws_forwarded_for" help:"on the MQTT over WebSocket listener, take the client's address from X-Forwarded-For when the request comes from proxy_trusted_cidrs (HTTP load balancers that cannot send PROXY headers)"`
	ProxyTrustedCIDRs  string        `yaml:"proxy_trusted_cidrs" help:"comma-separated CIDRs or addresses of the load balancers whose PROXY headers are believed; required when a *_proxy_protocol is on"`
	ProxyUntrusted     string        `yaml:"proxy_untrusted" help:"on a PROXY listener, what becomes of connections from outside proxy_trusted_cidrs: refuse (closed at accept) or direct (served with their own address; a PROXY header from them is never read as one)"`
	ProxyHeaderTimeout time.Duration `yaml:"proxy_header_timeout" help:"how long a trusted load balancer's connection may take to send its PROXY header before it is closed"`
	// TLS certificates of the device-facing TLS listeners (MQTT over TLS,
	// HTTPS); when empty a local CA and server certificate are generated
	// into <data-dir>/tls on first start, as an ECDSA and an RSA chain.
	TLSCertFile string `yaml:"tls_cert_file" help:"server certificate (PEM) for TLS listeners (default: generated)"`
	TLSKeyFile  string `yaml:"tls_key_file" help:"server private key (PEM) for TLS listeners (default: generated)"`
	// A second, RSA, pair beside an ECDSA tls_cert_file: stock Link SDK
	// devices (mbedtls without elliptic curves) cannot parse ECDSA.
	TLSRSACertFile string `yaml:"tls_rsa_cert_file" help:"RSA server certificate (PEM) served beside tls_cert_file to clients that cannot use it, e.g. Link SDK devices without elliptic curves"`
	TLSRSAKeyFile  string `yaml:"tls_rsa_key_file" help:"private key (PEM) of tls_rsa_cert_file"`
	TLSHosts       string `yaml:"tls_hosts" help:"extra comma-separated host names or IPs for the generated server certificate"`
	// Static RSA key exchange has no forward secrecy, but it is all that
	// stock Link SDK devices (mbedtls without elliptic curves) can do.
	TLSLegacyRSAKx bool `yaml:"tls_legacy_rsa_kx" help:"also offer static RSA key-exchange cipher suites (no forward secrecy) on the device-facing TLS listeners, for devices without elliptic curves such as stock Link SDK builds; false: ECDHE only"`

	KEK     string `yaml:"kek" help:"key-encryption key for secrets at rest: 64 hex digits or base64 of 32 bytes" secret:"true"`
	KEKFile string `yaml:"kek_file" help:"file holding the key-encryption key (default <data-dir>/kek, created 0600 if absent)"`

	// Registration.
	DynRegPlainHTTP       bool    `yaml:"dynreg_plain_http" help:"also serve /auth/register/device and /v1/register on the plain HTTP listener, where the DeviceSecret travels in clear (labs only)"`
	MQTTRegisterPlain     bool    `yaml:"mqtt_register_plain" help:"also answer MQTT dynamic registration (authType=register, regnwl) on the plain TCP and WebSocket listeners, where the DeviceSecret travels in clear (labs only)"`
	RegistrationRatePerIP float64 `yaml:"registration_rate_per_ip" help:"registrations per second allowed from one address, burst twice that (0: no limit)"`
	RegistrationRatePerPK float64 `yaml:"registration_rate_per_product" help:"registrations per second allowed per product, burst twice that (0: no limit)"`
	PublicMQTTEndpoint    string  `yaml:"public_mqtt_endpoint" help:"MQTT URL client-driven registration hands devices, e.g. tcp://iot.example.com:1883 (default: from the listener)"`
	PublicMQTTSEndpoint   string  `yaml:"public_mqtts_endpoint" help:"MQTT over TLS URL handed to devices (default: from the listener)"`
	PublicHTTPSURL        string  `yaml:"public_https_url" help:"HTTPS origin devices download files from, e.g. https://iot.example.com:8443 (default: https://localhost and the HTTPS listener's port)"`
	WebhookSecret         string  `yaml:"webhook_secret" help:"key that signs outbound webhook calls (default: <data-dir>/webhook.key, generated)" secret:"true"`
	// Webhooks (pre-registration hooks, event URLs) reach only public
	// addresses unless their range is listed here.
	WebhookAllowCIDRs string `yaml:"webhook_allow_cidrs" help:"comma-separated CIDRs webhooks may call although they are loopback, private, link-local or otherwise not public, e.g. 10.20.0.0/16 for on-premises functions (default: none)"`

	// Distribution (issue 12): this corral as one instance among others,
	// and the distribution centre's bootstrap endpoint.
	InstanceID                 string  `yaml:"instance_id" help:"this corral's id as an instance of a distribution (lower-case letters, digits and dashes)"`
	InstanceName               string  `yaml:"instance_name" help:"this corral's display name as an instance"`
	Region                     string  `yaml:"region" help:"this corral's region, e.g. cn-shanghai or ap-southeast-1; GET /auth/bootstrap/regionId/{id} answers it for its region"`
	DistributionCentre         bool    `yaml:"distribution_centre" help:"serve the bootstrap endpoint (/auth/bootstrap) and hold devices' provisioning records (/v1/.../provisioning)"`
	DistributionCentreInstance string  `yaml:"distribution_centre_instance" help:"instance id of the distribution centre when it is another corral (a system instance with apiUrl and credential): jobs run here write the device's provisioning record there (default: this corral's own records)"`
	DistributionFile           string  `yaml:"distribution_file" help:"YAML file listing other instances (instances: [{instanceId, name, region, mqtt, mqtts, backupIp, apiUrl, credential}]), written as system instances at start"`
	BootstrapDefaultInstance   string  `yaml:"bootstrap_default_instance" help:"instance id a device without a provisioning record bootstraps to (default: this corral)"`
	BootstrapPlainHTTP         bool    `yaml:"bootstrap_plain_http" help:"also serve /auth/bootstrap on the plain HTTP listener (the answer holds no secret, but a device reached in clear can be redirected)"`
	BootstrapRatePerIP         float64 `yaml:"bootstrap_rate_per_ip" help:"bootstrap requests per second allowed from one address, burst twice that (0: no limit)"`
	GeoIPDB                    string  `yaml:"geoip_db" help:"MaxMind-format GeoIP database (e.g. GeoLite2-Country.mmdb) proximity policies read countries and continents from (default: none; CIDR tables only)"`

	SQLiteSynchronous string `yaml:"sqlite_synchronous" help:"SQLite synchronous pragma: FULL (durable across power loss) or NORMAL"`

	LogLevel  string `yaml:"log_level" help:"debug, info, warn or error"`
	LogFormat string `yaml:"log_format" help:"json or text"`

	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" help:"how long graceful shutdown waits for in-flight work"`
	MaxBodyBytes    int64         `yaml:"max_body_bytes" help:"largest request body the API accepts"`
	// Timeouts of every HTTP listener (API, registration, the WebSocket
	// handshake), so that slow or idle clients cannot hold connections.
	HTTPReadTimeout  time.Duration `yaml:"http_read_timeout" help:"longest time to read a whole HTTP request, body included"`
	HTTPWriteTimeout time.Duration `yaml:"http_write_timeout" help:"longest time from reading an HTTP request to having written its answer; above 60s, the longest a sync service call waits for a device"`
	HTTPIdleTimeout  time.Duration `yaml:"http_idle_timeout" help:"how long an idle keep-alive HTTP connection is kept open"`
	APIRateLimit     float64       `yaml:"api_rate_limit" help:"API requests per second allowed per API key, burst twice that (0: no limit)"`

	// CPUProfile is a debugging aid, off by default: profiling costs CPU.
	CPUProfile string `yaml:"cpu_profile" help:"write a Go CPU profile of the server to this file, from start to graceful shutdown (debugging; default: none)"`
}

// Default returns the configuration `corral serve` runs with when nothing is set.
func Default() Config {
	return Config{
		DataDir:                   "./corral-data",
		HTTPAddr:                  ":8080",
		HTTPSAddr:                 ":8443",
		MQTTAddr:                  ":1883",
		MQTTSAddr:                 ":8883",
		WSAddr:                    ":8083",
		MQTTMaxQueued:             1000,
		MQTTMaxQueuedBytes:        16 << 20,
		MQTTDurableSessions:       true,
		MQTTMaxInflight:           1024,
		MQTTMaxPacketSize:         256 << 10,
		MQTTTopicAliasMaximum:     64,
		MQTTParkIdle:              time.Second,
		MQTTConnectTimeout:        10 * time.Second,
		MQTTMaxPendingPerIP:       64,
		MQTTAuthFailuresPerIP:     20,
		MQTTAuthFailuresPerDevice: 100,
		SQLiteSynchronous:         "FULL",
		LogLevel:                  "info",
		LogFormat:                 "json",
		ShutdownTimeout:           15 * time.Second,
		MaxBodyBytes:              4 << 20,
		HTTPReadTimeout:           30 * time.Second,
		HTTPWriteTimeout:          90 * time.Second,
		HTTPIdleTimeout:           120 * time.Second,
		APIRateLimit:              500,
		RegistrationRatePerIP:     100,
		RegistrationRatePerPK:     10000,
		TLSLegacyRSAKx:            true,
		InstanceID:                "corral",
		Region:                    "local",
		DistributionCentre:        true,
		BootstrapRatePerIP:        20,
		ProxyUntrusted:            "refuse",
		ProxyHeaderTimeout:        5 * time.Second,
	}
}

// MaxSyncWait is the longest a synchronous API call (a sync service call
// or property set) waits for a device; HTTP answers must be allowed to be
// written after it.
const MaxSyncWait = 60 * time.Second

// ErrInvalid means the configuration breaks a rule; the message names the key.
var ErrInvalid = errors.New("invalid configuration")

// FlagName is the flag spelling of a YAML key.
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// EnvName is the environment spelling of a YAML key.
func EnvName(key string) string { return "CORRAL_" + strings.ToUpper(key) }

type field struct {
	key, help string
	v         reflect.Value
}

func fields(c *Config) []field {
	rv := reflect.ValueOf(c).Elem()
	rt := rv.Type()
	out := make([]field, 0, rt.NumField())
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		out = append(out, field{key: f.Tag.Get("yaml"), help: f.Tag.Get("help"), v: rv.Field(i)})
	}
	return out
}

// BindFlags adds a flag for every key, plus --config, to fs.
func BindFlags(fs *pflag.FlagSet) {
	def := Default()
	fs.String("config", "", "YAML configuration file (also CORRAL_CONFIG)")
	for _, f := range fields(&def) {
		name := FlagName(f.key)
		help := f.help + " (" + EnvName(f.key) + ")"
		switch f.v.Kind() {
		case reflect.String:
			fs.String(name, f.v.String(), help)
		case reflect.Int64:
			if f.v.Type() == reflect.TypeOf(time.Duration(0)) {
				fs.Duration(name, time.Duration(f.v.Int()), help)
			} else {
				fs.Int64(name, f.v.Int(), help)
			}
		case reflect.Bool:
			fs.Bool(name, f.v.Bool(), help)
		case reflect.Float64:
			fs.Float64(name, f.v.Float(), help)
		}
	}
}

// Load builds the configuration from defaults, the file named by --config
// or CORRAL_CONFIG, the environment (getenv) and the flags that were set.
func Load(fs *pflag.FlagSet, getenv func(string) string) (Config, error) {
	c := Default()
	path := getenv("CORRAL_CONFIG")
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			path = f.Value.String()
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("reading config file: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config file %s: %w: %v", path, ErrInvalid, err)
		}
	}
	for _, f := range fields(&c) {
		if v, ok := lookup(getenv, EnvName(f.key)); ok {
			if err := set(f.v, v); err != nil {
				return c, fmt.Errorf("%s: %w: %v", EnvName(f.key), ErrInvalid, err)
			}
		}
		if fs != nil {
			if fl := fs.Lookup(FlagName(f.key)); fl != nil && fl.Changed {
				if err := set(f.v, fl.Value.String()); err != nil {
					return c, fmt.Errorf("--%s: %w: %v", FlagName(f.key), ErrInvalid, err)
				}
			}
		}
	}
	// Surrounding whitespace is never part of a value (a secret read from
	// a file often ends in a newline), and a value of only line breaks
	// does not survive being written back as YAML.
	for _, f := range fields(&c) {
		if f.v.Kind() == reflect.String {
			f.v.SetString(strings.TrimSpace(f.v.String()))
		}
	}
	return c, c.Validate()
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func set(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int64:
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			d, err := time.ParseDuration(s)
			if err != nil {
				return err
			}
			v.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	}
	return nil
}

// Validate checks every key and names the first that is wrong.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", key, ErrInvalid, fmt.Sprintf(format, args...))
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	for _, a := range []struct{ key, v string }{{"http_addr", c.HTTPAddr}, {"https_addr", c.HTTPSAddr}, {"mqtt_addr", c.MQTTAddr}, {"mqtts_addr", c.MQTTSAddr}, {"ws_addr", c.WSAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return bad(a.key, "%q is not host:port", a.v)
		}
	}
	if c.MQTTMaxQueued < 16 || c.MQTTMaxQueued > 1<<20 {
		return bad("mqtt_max_queued", "must be between 16 and 1048576")
	}
	if c.MQTTMaxInflight < 1 || c.MQTTMaxInflight > 65535 {
		return bad("mqtt_max_inflight", "must be between 1 and 65535")
	}
	if c.MQTTMaxQueuedBytes < 1<<10 || c.MQTTMaxQueuedBytes > 1<<30 {
		return bad("mqtt_max_queued_bytes", "must be between 1024 and 1073741824")
	}
	if c.MQTTMaxPacketSize < 1<<10 || c.MQTTMaxPacketSize > 268_435_460 {
		return bad("mqtt_max_packet_size", "must be between 1024 and 268435460 (MQTT's largest packet)")
	}
	if c.MQTTTopicAliasMaximum < 0 || c.MQTTTopicAliasMaximum > 65535 {
		return bad("mqtt_topic_alias_maximum", "must be between 0 and 65535")
	}
	if c.MQTTParkIdle < 0 {
		return bad("mqtt_park_idle", "must not be negative")
	}
	if c.MQTTConnectTimeout <= 0 {
		return bad("mqtt_connect_timeout", "must be positive")
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"mqtt_max_pending_per_ip", c.MQTTMaxPendingPerIP}, {"mqtt_auth_failures_per_ip", c.MQTTAuthFailuresPerIP}, {"mqtt_auth_failures_per_device", c.MQTTAuthFailuresPerDevice}} {
		if n.v < 0 {
			return bad(n.key, "must not be negative")
		}
	}
	for _, o := range strings.Split(c.WSAllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return bad("ws_allowed_origins", "%q is not an origin (scheme://host[:port])", o)
		}
	}
	if err := c.validateProxy(); err != nil {
		return err
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return bad("tls_cert_file", "set both tls_cert_file and tls_key_file, or neither")
	}
	if (c.TLSRSACertFile == "") != (c.TLSRSAKeyFile == "") {
		return bad("tls_rsa_cert_file", "set both tls_rsa_cert_file and tls_rsa_key_file, or neither")
	}
	if c.TLSRSACertFile != "" && c.TLSCertFile == "" {
		return bad("tls_rsa_cert_file", "goes beside tls_cert_file; the generated certificates already include an RSA one")
	}
	switch strings.ToUpper(c.SQLiteSynchronous) {
	case "FULL", "NORMAL", "EXTRA":
	default:
		return bad("sqlite_synchronous", "must be FULL, NORMAL or EXTRA")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "must be debug, info, warn or error")
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		return bad("log_format", "must be json or text")
	}
	if c.ShutdownTimeout <= 0 {
		return bad("shutdown_timeout", "must be positive")
	}
	if c.RegistrationRatePerIP < 0 || c.RegistrationRatePerPK < 0 {
		return bad("registration_rate_per_ip", "rates must not be negative")
	}
	if c.BootstrapRatePerIP < 0 {
		return bad("bootstrap_rate_per_ip", "must not be negative")
	}
	if c.InstanceID == "" || c.Region == "" {
		return bad("instance_id", "instance_id and region must not be empty")
	}
	if c.APIRateLimit < 0 {
		return bad("api_rate_limit", "must not be negative")
	}
	for _, part := range strings.Split(c.WebhookAllowCIDRs, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if _, err := netip.ParsePrefix(part); err != nil {
			if _, err := netip.ParseAddr(part); err != nil {
				return bad("webhook_allow_cidrs", "%q is not a CIDR (like 10.20.0.0/16) or an address", part)
			}
		}
	}
	if c.HTTPReadTimeout <= 0 {
		return bad("http_read_timeout", "must be positive")
	}
	if c.HTTPWriteTimeout <= MaxSyncWait {
		return bad("http_write_timeout", "must be more than %s: a sync service call waits that long for a device before its answer is written", MaxSyncWait)
	}
	if c.HTTPIdleTimeout <= 0 {
		return bad("http_idle_timeout", "must be positive")
	}
	if c.MaxBodyBytes < 1024 {
		return bad("max_body_bytes", "must be at least 1024")
	}
	return nil
}

func (c Config) validateProxy() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", key, ErrInvalid, fmt.Sprintf(format, args...))
	}
	trusted := 0
	for _, part := range strings.Split(c.ProxyTrustedCIDRs, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if _, err := netip.ParsePrefix(part); err != nil {
			if _, err := netip.ParseAddr(part); err != nil {
				return bad("proxy_trusted_cidrs", "%q is not a CIDR (like 10.0.0.0/8) or an address", part)
			}
		}
		trusted++
	}
	switch c.ProxyUntrusted {
	case "refuse", "direct":
	default:
		return bad("proxy_untrusted", "must be refuse or direct")
	}
	if c.ProxyHeaderTimeout <= 0 {
		return bad("proxy_header_timeout", "must be positive")
	}
	for _, l := range []struct {
		key string
		on  bool
	}{{"mqtt_proxy_protocol", c.MQTTProxyProtocol}, {"mqtts_proxy_protocol", c.MQTTSProxyProtocol}, {"ws_proxy_protocol", c.WSProxyProtocol},
		{"http_proxy_protocol", c.HTTPProxyProtocol}, {"https_proxy_protocol", c.HTTPSProxyProtocol}, {"ws_forwarded_for", c.WSForwardedFor}} {
		if l.on && trusted == 0 {
			return bad(l.key, "needs proxy_trusted_cidrs: the load balancers whose headers are believed")
		}
	}
	return nil
}
