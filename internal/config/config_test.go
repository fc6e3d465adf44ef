package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestLayering(t *testing.T) {
	file := filepath.Join(t.TempDir(), "corral.yaml")
	os.WriteFile(file, []byte("data_dir: /from-file\nhttp_addr: \":7000\"\nlog_level: debug\nshutdown_timeout: 3s\n"), 0o600)
	env := map[string]string{"CORRAL_CONFIG": file, "CORRAL_HTTP_ADDR": ":7100", "CORRAL_LOG_FORMAT": "text"}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DataDir = "/from-file" // file over default
	want.HTTPAddr = ":7100"     // env over file
	want.LogFormat = "text"     // env over default
	want.LogLevel = "warn"      // flag over file
	want.ShutdownTimeout = 3 * time.Second
	if c != want {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestDefaultsWithNothingSet(t *testing.T) {
	c, err := Load(nil, func(string) string { return "" })
	if err != nil || c != Default() {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file string
		env        map[string]string
		wantKey    string
	}{
		{"unknown file key", "nope: 1\n", nil, "config file"},
		{"bad yaml", "data_dir: [\n", nil, "config file"},
		{"bad addr", "", map[string]string{"CORRAL_HTTP_ADDR": "8080"}, "http_addr"},
		{"bad level", "", map[string]string{"CORRAL_LOG_LEVEL": "loud"}, "log_level"},
		{"bad duration", "", map[string]string{"CORRAL_SHUTDOWN_TIMEOUT": "soon"}, "CORRAL_SHUTDOWN_TIMEOUT"},
		{"bad sync", "", map[string]string{"CORRAL_SQLITE_SYNCHRONOUS": "maybe"}, "sqlite_synchronous"},
		{"queue too small", "", map[string]string{"CORRAL_MQTT_MAX_QUEUED": "2"}, "mqtt_max_queued"},
		{"queue not a number", "", map[string]string{"CORRAL_MQTT_MAX_QUEUED": "lots"}, "CORRAL_MQTT_MAX_QUEUED"},
		{"inflight too large", "", map[string]string{"CORRAL_MQTT_MAX_INFLIGHT": "70000"}, "mqtt_max_inflight"},
		{"queue bytes too small", "", map[string]string{"CORRAL_MQTT_MAX_QUEUED_BYTES": "100"}, "mqtt_max_queued_bytes"},
		{"packet size too small", "", map[string]string{"CORRAL_MQTT_MAX_PACKET_SIZE": "10"}, "mqtt_max_packet_size"},
		{"packet size above MQTT's", "", map[string]string{"CORRAL_MQTT_MAX_PACKET_SIZE": "300000000"}, "mqtt_max_packet_size"},
		{"topic aliases too many", "", map[string]string{"CORRAL_MQTT_TOPIC_ALIAS_MAXIMUM": "70000"}, "mqtt_topic_alias_maximum"},
		{"topic aliases negative", "", map[string]string{"CORRAL_MQTT_TOPIC_ALIAS_MAXIMUM": "-1"}, "mqtt_topic_alias_maximum"},
		{"park idle negative", "", map[string]string{"CORRAL_MQTT_PARK_IDLE": "-1s"}, "mqtt_park_idle"},
		{"bad webhook range", "", map[string]string{"CORRAL_WEBHOOK_ALLOW_CIDRS": "10.0.0.0/8,intranet"}, "webhook_allow_cidrs"},
		{"read timeout off", "", map[string]string{"CORRAL_HTTP_READ_TIMEOUT": "0s"}, "http_read_timeout"},
		{"write timeout under sync calls", "", map[string]string{"CORRAL_HTTP_WRITE_TIMEOUT": "60s"}, "http_write_timeout"},
		{"idle timeout negative", "", map[string]string{"CORRAL_HTTP_IDLE_TIMEOUT": "-1s"}, "http_idle_timeout"},
		{"RSA cert without key", "", map[string]string{"CORRAL_TLS_CERT_FILE": "a.pem", "CORRAL_TLS_KEY_FILE": "a.key", "CORRAL_TLS_RSA_CERT_FILE": "r.pem"}, "tls_rsa_cert_file"},
		{"RSA pair without tls_cert_file", "", map[string]string{"CORRAL_TLS_RSA_CERT_FILE": "r.pem", "CORRAL_TLS_RSA_KEY_FILE": "r.key"}, "tls_rsa_cert_file"},
		{"PROXY without trusted ranges", "", map[string]string{"CORRAL_MQTTS_PROXY_PROTOCOL": "true"}, "mqtts_proxy_protocol"},
		{"X-Forwarded-For without trusted ranges", "", map[string]string{"CORRAL_WS_FORWARDED_FOR": "true"}, "ws_forwarded_for"},
		{"PROXY trusted range not a CIDR", "", map[string]string{"CORRAL_PROXY_TRUSTED_CIDRS": "10.0.0.0/8,lb.internal"}, "proxy_trusted_cidrs"},
		{"PROXY untrusted policy unknown", "", map[string]string{"CORRAL_PROXY_UNTRUSTED": "ignore"}, "proxy_untrusted"},
		{"PROXY header timeout off", "", map[string]string{"CORRAL_PROXY_HEADER_TIMEOUT": "0s"}, "proxy_header_timeout"},
		{"legacy RSA kx not a bool", "", map[string]string{"CORRAL_TLS_LEGACY_RSA_KX": "sometimes"}, "CORRAL_TLS_LEGACY_RSA_KX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tt.env {
				env[k] = v
			}
			if tt.file != "" {
				p := filepath.Join(dir, tt.name+".yaml")
				os.WriteFile(p, []byte(tt.file), 0o600)
				env["CORRAL_CONFIG"] = p
			}
			_, err := Load(nil, func(k string) string { return env[k] })
			if !errors.Is(err, ErrInvalid) || !contains(err.Error(), tt.wantKey) {
				t.Fatalf("err = %v, want ErrInvalid naming %s", err, tt.wantKey)
			}
		})
	}
}

func TestSecretKEKNotInErrors(t *testing.T) {
	env := map[string]string{"CORRAL_KEK": "supersecretvalue", "CORRAL_LOG_LEVEL": "loud"}
	_, err := Load(nil, func(k string) string { return env[k] })
	if err == nil || contains(err.Error(), "supersecretvalue") {
		t.Fatalf("err = %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestRegistrationOverTLSByDefault: the DeviceSecret never travels in
// clear unless a lab setting says so, in any of the three spellings.
func TestRegistrationOverTLSByDefault(t *testing.T) {
	if d := Default(); d.DynRegPlainHTTP || d.MQTTRegisterPlain {
		t.Fatalf("plain registration on by default: %+v", d)
	}
	env := map[string]string{"CORRAL_DYNREG_PLAIN_HTTP": "true"}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--mqtt-register-plain"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs, func(k string) string { return env[k] })
	if err != nil || !c.DynRegPlainHTTP || !c.MQTTRegisterPlain {
		t.Fatalf("lab settings: %v %+v", err, c)
	}
}

// TestLegacyRSAKxLayers: static RSA key exchange is on by default (stock
// Link SDK devices need it) and each layer can turn it off or on again.
func TestLegacyRSAKxLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "corral.yaml")
	os.WriteFile(file, []byte("tls_legacy_rsa_kx: false\n"), 0o600)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		flags []string
		want  bool
	}{
		{"default", nil, nil, true},
		{"yaml off", map[string]string{"CORRAL_CONFIG": file}, nil, false},
		{"env over yaml", map[string]string{"CORRAL_CONFIG": file, "CORRAL_TLS_LEGACY_RSA_KX": "true"}, nil, true},
		{"env off", map[string]string{"CORRAL_TLS_LEGACY_RSA_KX": "false"}, nil, false},
		{"flag over env", map[string]string{"CORRAL_TLS_LEGACY_RSA_KX": "true"}, []string{"--tls-legacy-rsa-kx=false"}, false},
		{"flag on over yaml", map[string]string{"CORRAL_CONFIG": file}, []string{"--tls-legacy-rsa-kx"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			BindFlags(fs)
			if err := fs.Parse(tc.flags); err != nil {
				t.Fatal(err)
			}
			c, err := Load(fs, func(k string) string { return tc.env[k] })
			if err != nil || c.TLSLegacyRSAKx != tc.want {
				t.Fatalf("tls_legacy_rsa_kx = %v (%v), want %v", c.TLSLegacyRSAKx, err, tc.want)
			}
		})
	}
}

// TestProxyProtocolLayers: the PROXY settings are off by default and set
// per listener through every layer.
func TestProxyProtocolLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "corral.yaml")
	os.WriteFile(file, []byte("proxy_trusted_cidrs: 10.0.0.0/8\nmqtt_proxy_protocol: true\n"), 0o600)
	d := Default()
	if d.MQTTProxyProtocol || d.MQTTSProxyProtocol || d.WSProxyProtocol || d.HTTPProxyProtocol || d.HTTPSProxyProtocol || d.ProxyUntrusted != "refuse" {
		t.Fatalf("PROXY defaults: %+v", d)
	}
	env := map[string]string{"CORRAL_CONFIG": file, "CORRAL_HTTPS_PROXY_PROTOCOL": "true", "CORRAL_PROXY_UNTRUSTED": "direct"}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--ws-proxy-protocol", "--proxy-header-timeout=2s"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !c.MQTTProxyProtocol || c.MQTTSProxyProtocol || !c.WSProxyProtocol || c.HTTPProxyProtocol || !c.HTTPSProxyProtocol ||
		c.ProxyTrustedCIDRs != "10.0.0.0/8" || c.ProxyUntrusted != "direct" || c.ProxyHeaderTimeout != 2*time.Second {
		t.Fatalf("PROXY settings: %+v", c)
	}
}
