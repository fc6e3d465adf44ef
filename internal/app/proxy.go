package app

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/netlisten"
)

// forwardedFor is whom the WebSocket listener believes X-Forwarded-For
// from (nil: nobody).
func forwardedFor(cfg config.Config) []netip.Prefix {
	if !cfg.WSForwardedFor {
		return nil
	}
	trusted, _ := netlisten.ParseCIDRs(cfg.ProxyTrustedCIDRs) // checked by proxyPolicies
	return trusted
}

// proxyPolicies makes the PROXY protocol policy of each listener from the
// configuration: policy(name, on) is nil where the listener has it off.
// Refusals are counted per listener and reason, and logged at debug.
func proxyPolicies(cfg config.Config, metrics prometheus.Registerer, log *slog.Logger) (func(listener string, on bool) *netlisten.Proxy, error) {
	trusted, err := netlisten.ParseCIDRs(cfg.ProxyTrustedCIDRs)
	if err != nil {
		return nil, fmt.Errorf("proxy_trusted_cidrs: %w", err)
	}
	untrusted, err := netlisten.ParseUntrusted(cfg.ProxyUntrusted)
	if err != nil {
		return nil, fmt.Errorf("proxy_untrusted: %w", err)
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_proxy_refused_total",
		Help: "Connections a PROXY protocol listener closed: from outside proxy_trusted_cidrs (untrusted) or without a valid header in time (header)."},
		[]string{"listener", "reason"})
	if metrics != nil {
		metrics.MustRegister(refused)
	}
	return func(listener string, on bool) *netlisten.Proxy {
		if !on {
			return nil
		}
		return &netlisten.Proxy{Trusted: trusted, Untrusted: untrusted, HeaderTimeout: cfg.ProxyHeaderTimeout,
			Refused: func(peer net.Addr, why netlisten.Refusal) {
				refused.WithLabelValues(listener, string(why)).Inc()
				log.Debug("PROXY protocol listener refused a connection", "listener", listener, "peer", peer.String(), "reason", string(why))
			}}
	}, nil
}
