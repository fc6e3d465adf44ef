package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenAddress means a webhook URL or the address it resolved to is
// one corral does not call: loopback, link-local, private, multicast,
// unspecified or otherwise not on the public Internet, unless the operator
// opened its range.
var ErrForbiddenAddress = errors.New("webhook destination address is not allowed")

// ErrBadURL means a webhook URL is not an absolute http(s) URL.
var ErrBadURL = errors.New("webhook URL must be an absolute http or https URL")

// forbidden are the ranges a user function may not point corral at by
// default: everything that reaches the server itself, its cloud metadata
// service or its private network rather than the public Internet.
var forbidden = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"; 0.0.0.0 reaches the host itself
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // carrier-grade NAT, often a provider's internal network
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, and broadcast
		"::/96",           // unspecified, loopback, IPv4-compatible
		"::ffff:0:0:0/96", // IPv4-translated
		"64:ff9b:1::/48",  // local-use NAT64
		"100::/64",        // discard
		"2001::/32",       // Teredo: tunnels to anything
		"2001:db8::/32",   // documentation
		"fc00::/7",        // unique local (AWS metadata's fd00:ec2::254 among them)
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Policy decides which addresses webhooks may reach: every public address,
// plus the ranges in Allow (for functions on the operator's own network).
type Policy struct {
	Allow []netip.Prefix
}

// ParseCIDRs parses a comma-separated list of CIDRs (a bare address is a
// single-address range).
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8) or an address", part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// CheckAddr reports whether a is an address webhooks may call.
func (p Policy) CheckAddr(a netip.Addr) error {
	if !a.IsValid() {
		return ErrForbiddenAddress
	}
	a = a.WithZone("")
	if p.allowed(a) || p.allowed(a.Unmap()) {
		return nil
	}
	for _, c := range reached(a) {
		if p.allowed(c) {
			continue
		}
		for _, pre := range forbidden {
			if pre.Contains(c) {
				return fmt.Errorf("%w: %s is in %s (webhook_allow_cidrs opens ranges)", ErrForbiddenAddress, a, pre)
			}
		}
	}
	return nil
}

func (p Policy) allowed(a netip.Addr) bool {
	for _, pre := range p.Allow {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// reached are the addresses a connection to a reaches: a itself (an
// IPv4-mapped address as IPv4), and the IPv4 address a NAT64 or 6to4
// address carries.
func reached(a netip.Addr) []netip.Addr {
	a = a.Unmap()
	out := []netip.Addr{a}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		out = append(out, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case sixToFour.Contains(a):
		out = append(out, netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	}
	return out
}

// CheckURL checks a webhook URL when it is configured: an absolute http
// or https URL whose host, if it is a literal address, is allowed. A host
// name is checked only when called, against what it resolves to then.
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return ErrBadURL
	}
	host := u.Hostname()
	if host == "" {
		return ErrBadURL
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return p.CheckAddr(a)
	}
	if a, ok := legacyIPv4(host); ok {
		return p.CheckAddr(a)
	}
	return nil
}

// legacyIPv4 parses the spellings of an IPv4 address that some resolvers
// (inet_aton) accept and netip does not: one to four parts, each decimal,
// octal (leading 0) or hex (0x), the last filling the remaining bytes
// (2130706433, 0177.1, 0x7f.0.0.1). The dial-time check catches them
// anyway; refusing them here gives the error when the URL is set.
func legacyIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var n uint64
	for i, s := range parts {
		if s == "" || strings.ContainsAny(s, "_+-") {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		last := i == len(parts)-1
		if !last && v > 255 || last && v >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		if last {
			n |= v
		} else {
			n |= v << (8 * (3 - i))
		}
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// control is a net.Dialer Control function: it runs after name resolution
// on the address a connection is about to be made to, so that a name that
// resolves to a forbidden address (or is rebound to one between the
// configuration check and the call) is refused.
func (p Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check %q", ErrForbiddenAddress, address)
	}
	return p.CheckAddr(ap.Addr())
}

// HTTPClient returns the client webhooks are called with: connections only
// to addresses the policy allows (checked as each is dialled), no proxy
// from the environment (it would dial in corral's place), and no redirects
// followed (a 3xx is a failed call: a redirect would point the call
// anywhere after the address was checked, and re-send the signed body).
func (p Policy) HTTPClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
