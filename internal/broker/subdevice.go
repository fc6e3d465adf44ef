package broker

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/corral-iot/corral/internal/mqtt/engine"
	"github.com/corral-iot/corral/internal/registry"
)

// Sub-device sessions: a gateway logs its sub-devices in over its own
// connection (combine.login); while logged in, the gateway may publish and
// subscribe on the sub-device's topics, and the sub-device is online with
// presence events like a direct device. All of a gateway's sub-devices go
// offline when the gateway does.

// ErrGatewayOffline means the gateway has no live session.
var ErrGatewayOffline = errors.New("gateway is not connected")

// LoginSub logs a sub-device in through its gateway's live session.
func (b *Broker) LoginSub(gwPk, gwDn string, sub registry.Device) error {
	h := b.hook
	gwKey, subKey := deviceKey(gwPk, gwDn), deviceKey(sub.ProductKey, sub.DeviceName)
	h.mu.Lock()
	gwSess := h.devices[gwKey]
	if gwSess == nil {
		h.mu.Unlock()
		return ErrGatewayOffline
	}
	prevGw, again := h.subOf[subKey]
	if h.subs[gwKey] == nil {
		h.subs[gwKey] = map[string]*session{}
	}
	s := &session{id: identity{accountID: sub.AccountID, productKey: sub.ProductKey, deviceName: sub.DeviceName, thingName: sub.ThingName,
		clientID: sub.ProductKey + "." + sub.DeviceName}, listener: onGateway, addr: gwSess.addr, gw: gwSess}
	old := h.subs[prevGw][subKey]
	if old != nil && h.subThings[old.id.thing()] == subKey {
		delete(h.subThings, old.id.thing())
	}
	h.subs[gwKey][subKey] = s
	h.subOf[subKey] = gwKey
	h.subThings[s.id.thing()] = subKey
	if again && prevGw != gwKey {
		delete(h.subs[prevGw], subKey)
	}
	// A direct session of the same device is replaced by the gateway's.
	direct := h.devices[subKey]
	h.mu.Unlock()
	h.rightsChanged()
	if direct != nil {
		b.Kick(sub.ProductKey, sub.DeviceName, "DUPLICATE_CLIENTID")
	}
	if old != nil && old.gw != gwSess {
		// It moved from another gateway connection: its downlinks leave
		// that one.
		b.dropSubFilters(old)
	}
	if gwSess.id.gateway {
		// A stock gateway (gw=1) has no SUBSCRIBE for its sub-devices'
		// downlinks: corral adds them (again: idempotent).
		b.subscribeClient(gwSess, downlinkFilters(sub.ProductKey, sub.DeviceName, gwSess.id.rrpcExt))
	}
	if again && prevGw == gwKey {
		return nil // already logged in here
	}
	now := b.o.Now()
	b.pres.record(registry.Presence{ProductKey: sub.ProductKey, DeviceName: sub.DeviceName, Online: true, At: now})
	b.publishPresence(s, "connected", "", now)
	b.m.subSessions.Inc()
	return nil
}

// LogoutSub logs a sub-device out of its gateway; false if it was not logged in there.
func (b *Broker) LogoutSub(gwPk, gwDn, subPk, subDn, reason string) bool {
	h := b.hook
	gwKey, subKey := deviceKey(gwPk, gwDn), deviceKey(subPk, subDn)
	h.mu.Lock()
	s := h.subs[gwKey][subKey]
	if s != nil {
		delete(h.subs[gwKey], subKey)
		delete(h.subOf, subKey)
		h.dropSubThing(s, subKey)
	}
	h.mu.Unlock()
	if s == nil {
		return false
	}
	h.rightsChanged()
	b.dropSubFilters(s)
	b.subOffline(s, reason)
	return true
}

// dropSubFilters removes a logged-out sub-device's downlinks from the
// gateway connection it was logged in through (both RRPC forms: removing
// a filter the session lacks is a no-op).
func (b *Broker) dropSubFilters(s *session) {
	if s.gw != nil {
		b.unsubscribeClient(s.gw, downlinkFilters(s.id.productKey, s.id.deviceName, true))
	}
}

func (b *Broker) subOffline(s *session, reason string) {
	now := b.o.Now()
	b.pres.record(registry.Presence{ProductKey: s.id.productKey, DeviceName: s.id.deviceName, Online: false, At: now})
	b.publishPresence(s, "disconnected", reason, now)
	b.m.subSessions.Dec()
}

// SubLoggedIn reports whether a sub-device is logged in through a gateway.
func (b *Broker) SubLoggedIn(gwPk, gwDn, subPk, subDn string) bool {
	h := b.hook
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.subOf[deviceKey(subPk, subDn)] == deviceKey(gwPk, gwDn)
}

// logoutAllSubs ends every sub-device session of a gateway that went away.
func (h *hook) logoutAllSubs(gwKey, reason string) {
	h.mu.Lock()
	subs := h.subs[gwKey]
	delete(h.subs, gwKey)
	for k, s := range subs {
		delete(h.subOf, k)
		h.dropSubThing(s, k)
	}
	h.mu.Unlock()
	if len(subs) > 0 {
		h.rightsChanged()
	}
	for _, s := range subs {
		h.b.dropSubFilters(s)
		h.b.subOffline(s, reason)
	}
}

// logoutSubsOfOtherSessions ends the sub-device sessions a gateway logged
// in through another connection than cl (one cl took over): they go
// offline, and their downlinks, which a persistent session carried over
// to cl, leave it.
func (h *hook) logoutSubsOfOtherSessions(gwKey string, cl *session) {
	var gone []*session
	h.mu.Lock()
	for k, s := range h.subs[gwKey] {
		if s.gw == cl {
			continue
		}
		delete(h.subs[gwKey], k)
		delete(h.subOf, k)
		h.dropSubThing(s, k)
		gone = append(gone, s)
	}
	h.mu.Unlock()
	if len(gone) > 0 {
		h.rightsChanged()
	}
	for _, s := range gone {
		h.b.unsubscribeClient(cl, downlinkFilters(s.id.productKey, s.id.deviceName, true))
		h.b.subOffline(s, "GATEWAY_DISCONNECTED")
	}
}

// dropSubThing forgets a sub-device session's thing name; h.mu held.
func (h *hook) dropSubThing(s *session, subKey string) {
	if h.subThings[s.id.thing()] == subKey {
		delete(h.subThings, s.id.thing())
	}
}

// gatewayMay reports whether a gateway may use a topic of one of its
// logged-in sub-devices: any device topic family naming it but
// /ext/session/ (the services take the device a session topic names for
// the gateway acting, and a sub-device logs nothing in), or
// $aws/things/{subThing}/…. A filter with "+" for the ProductKey or
// DeviceName is allowed when it names some logged-in sub-device; each
// delivery is checked with its concrete topic.
func (h *hook) gatewayMay(gwPk, gwDn, topic string) bool {
	gwKey := deviceKey(gwPk, gwDn)
	if name, wild, ok := thingOfTopic(topic); ok {
		if wild {
			return false
		}
		h.mu.RLock()
		sub := h.subThings[name]
		gw := h.subOf[sub]
		h.mu.RUnlock()
		return sub != "" && gw == gwKey
	}
	t, ok := parseDeviceTopic(topic)
	if !ok || t.session {
		return false
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if !t.wild() {
		return h.subOf[deviceKey(t.pk, t.dn)] == gwKey
	}
	for _, s := range h.subs[gwKey] {
		if t.names(s.id.productKey, s.id.deviceName) {
			return true
		}
	}
	return false
}

// Online reports whether a device can be reached now: its own session, or
// a sub-device session through its gateway.
func (b *Broker) Online(pk, dn string) bool {
	h := b.hook
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.devices[deviceKey(pk, dn)] != nil || h.subOf[deviceKey(pk, dn)] != ""
}

// DeviceAddr is the source address of a device's own live session (a
// distribution job's proximity choice); false when it has none.
func (b *Broker) DeviceAddr(pk, dn string) (netip.Addr, bool) {
	s := b.hook.deviceSession(pk, dn)
	if s == nil {
		return netip.Addr{}, false
	}
	if a, ok := s.addr.(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap(), true
	}
	ap, err := netip.ParseAddrPort(s.remote())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// MayReceiveCredentials reports whether a device's live session may be
// sent a credential (a sub-device's DeviceSecret): it came in on the TLS
// listener, or RegisterPlain allows the plain ones.
func (b *Broker) MayReceiveCredentials(pk, dn string) bool {
	s := b.hook.deviceSession(pk, dn)
	return s != nil && (s.listener == onTLS || b.o.RegisterPlain)
}

// UsesExtRRPC reports whether synchronous services reach a device in the
// v4 form (/ext/rrpc/{rrpcId}/sys/…): its live session asked for it with
// ext=3 in the clientId, or, for a sub-device, the gateway session it is
// logged in through did. False when it has no live session.
func (b *Broker) UsesExtRRPC(pk, dn string) bool {
	h := b.hook
	h.mu.RLock()
	defer h.mu.RUnlock()
	key := deviceKey(pk, dn)
	if s := h.devices[key]; s != nil {
		return s.id.rrpcExt
	}
	gw := h.subOf[key]
	if gw == "" {
		return false
	}
	s := h.devices[gw]
	return s != nil && s.id.rrpcExt
}

// SendToGateway writes a message (QoS 0) straight to a gateway's live
// session, whatever it subscribed and whether or not the sub-device the
// topic names is logged in through it: the lifecycle downlinks of a
// sub-device (thing.disable, enable, delete on the sub-device's own
// /sys/… topics) reach its gateway when the sub-device is disabled, hence
// logged out, or being deleted. ErrGatewayOffline without a live session.
func (b *Broker) SendToGateway(gwPk, gwDn, topic string, payload []byte) error {
	s := b.hook.deviceSession(gwPk, gwDn)
	if s == nil {
		return ErrGatewayOffline
	}
	if err := b.eng.PublishTo(s.id.clientID, engine.Message{Topic: topic, Payload: payload}); err != nil {
		if errors.Is(err, engine.ErrNoSession) {
			return ErrGatewayOffline
		}
		return fmt.Errorf("writing %s to gateway %s/%s: %w", topic, gwPk, gwDn, err)
	}
	return nil
}
