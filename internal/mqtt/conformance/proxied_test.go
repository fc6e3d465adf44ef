package conformance_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/conformance"
	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// Mosquitto behind a proxy: repaired, every case of the suite passes with
// no gap declared (the gap cases can pass); broken, one defect at a time,
// the cases that check that behaviour fail (the cases can fail).

// refusedFilter is the filter the repaired proxy refuses.
const refusedFilter = "corral-refused/#"

// repaired fills Mosquitto's declared gaps in front of it: the codec's
// refusals answered with their DISCONNECT, keep alive at 1.5×, DISCONNECT
// 0x8E on takeover, its Receive Maximum enforced, SUBACK 0x8F for invalid
// filters and a refused filter, a maximum packet size advertised and
// enforced, reason strings on DISCONNECTs, the client's Receive Maximum
// kept by the resends of a resumed session.
func repaired() mode {
	const maxPacket = 4096
	return mode{
		strict: true, keepAlive: true, maxPacket: maxPacket,
		takenOver: &packet.Disconnect{ReasonCode: packet.SessionTakenOver, Properties: packet.Properties{ReasonString: "session taken over"}},
		toServer: func(c *conn, p packet.Packet) (packet.Packet, bool, packet.Packet) {
			c.mu.Lock()
			defer c.mu.Unlock()
			switch p := p.(type) {
			case *packet.Publish:
				if p.QoS == 2 && !c.held[p.PacketID] {
					c.held[p.PacketID] = true
					if c.rm > 0 && len(c.held) > int(c.rm) {
						return nil, true, &packet.Disconnect{ReasonCode: packet.ReceiveMaximumExceeded, Properties: packet.Properties{ReasonString: "receive maximum exceeded"}}
					}
				}
			case *packet.Pubrel:
				delete(c.held, p.PacketID)
			case *packet.Puback:
				c.releaseLocked(p.PacketID)
			case *packet.Pubcomp:
				c.releaseLocked(p.PacketID)
			case *packet.Subscribe:
				codes := make([]byte, len(p.Subscriptions))
				for i, s := range p.Subscriptions {
					switch {
					case packet.ValidTopicFilter(s.Filter) != nil:
						codes[i] = byte(packet.TopicFilterInvalid)
					case s.Filter == refusedFilter && c.v == packet.V5:
						codes[i] = byte(packet.NotAuthorized)
					case s.Filter == refusedFilter:
						codes[i] = 0x80
					default:
						continue
					}
					p.Subscriptions[i].Filter = "corral-proxy/void"
				}
				c.subs[p.PacketID] = codes
			}
			return p, false, nil
		},
		toClient: func(c *conn, p packet.Packet) packet.Packet {
			switch p := p.(type) {
			case *packet.Publish:
				c.mu.Lock()
				defer c.mu.Unlock()
				if c.crm > 0 && (len(c.pend) > 0 || (p.QoS > 0 && len(c.out) >= int(c.crm))) {
					c.pend = append(c.pend, p)
					return nil
				}
				if p.QoS > 0 {
					c.out[p.PacketID] = true
				}
			case *packet.Connack:
				if c.v == packet.V5 {
					p.Properties.MaximumPacketSize = maxPacket
				}
			case *packet.Disconnect:
				if p.Properties.ReasonString == "" {
					p.Properties.ReasonString = fmt.Sprintf("reason %#x", byte(p.ReasonCode))
				}
			case *packet.Suback:
				c.mu.Lock()
				codes := c.subs[p.PacketID]
				delete(c.subs, p.PacketID)
				c.mu.Unlock()
				for i, code := range codes {
					if code != 0 && i < len(p.ReasonCodes) {
						p.ReasonCodes[i] = packet.ReasonCode(code)
					}
				}
			}
			return p
		},
	}
}

// releaseLocked frees the client's quota of an acknowledged id and writes
// the PUBLISHes held for it. Requires c.mu.
func (c *conn) releaseLocked(id uint16) {
	delete(c.out, id)
	for len(c.pend) > 0 {
		p := c.pend[0].(*packet.Publish)
		if p.QoS > 0 && len(c.out) >= int(c.crm) {
			return
		}
		c.pend = c.pend[1:]
		if p.QoS > 0 {
			c.out[p.PacketID] = true
		}
		c.write(p)
	}
}

// broken are the defects, each with the cases that must catch it.
var broken = map[string]struct {
	m     mode
	cases []string
}{
	// mochi: PUBACK echoes the PUBLISH's user properties with reason 0x01.
	"acks_echo": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		switch p := p.(type) {
		case *packet.Puback:
			p.Properties.User = append(p.Properties.User, packet.UserProperty{Key: "echo", Value: "1"})
			p.ReasonCode = 0x01
		case *packet.Pubrec:
			p.Properties.User = append(p.Properties.User, packet.UserProperty{Key: "echo", Value: "1"})
		}
		return p
	}}, []string{"v5/properties/user_properties_not_echoed_on_acks", "v5/publish/puback_reason_codes_valid"}},
	"no_dup": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok {
			p.Dup = false
		}
		return p
	}}, []string{"v3/session/redelivery_on_reconnect_dup_in_order", "v5/session/redelivery_on_reconnect_dup_in_order"}},
	// mochi: 86400 s of expiry on every message without one.
	"expiry_added": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok && p.Properties.MessageExpiry == nil {
			p.Properties.MessageExpiry = ptr(uint32(86400))
		}
		return p
	}}, []string{"v5/expiry/none_added"}},
	"retain_always": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok {
			p.Retain = true
		}
		return p
	}}, []string{"v3/retained/live_delivery_retain_0", "v3/paho/qos1_roundtrip_retained", "v5/retained/retain_as_published"}},
	// mochi: a DISCONNECT packet written to 3.1.1 clients.
	"v3_disconnect": {mode{v3Disconnect: true}, []string{"v3/session/takeover_closes_old_without_disconnect", "v3/malformed/publish_qos_3"}},
	// mochi: client Receive Maximum 2, six messages, four arrive.
	"four_arrive": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if _, ok := p.(*packet.Publish); ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n++; c.n > 4 {
				return nil
			}
		}
		return p
	}}, []string{"v5/flow_control/client_receive_maximum", "v3/session/offline_queueing", "v5/no_silent_loss/queue_overflow_drops_qos0_first", "v3/paho/persistent_session_offline_queue"}},
	// mochi: a refused QoS 2 PUBLISH answered with PUBACK.
	"qos2_refusal_puback": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if r, ok := p.(*packet.Pubrec); ok && r.ReasonCode >= 0x80 {
			return &packet.Puback{Ack: r.Ack}
		}
		return p
	}}, []string{"v5/publish/qos2_refusal_pubrec_0x87"}},
	// mochi: a DUP resend before PUBREL answered PUBREC 0x91.
	"dup_pubrec_0x91": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if r, ok := p.(*packet.Pubrec); ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.recs[r.PacketID]++; c.recs[r.PacketID] > 1 {
				r.ReasonCode = packet.PacketIdentifierInUse
			}
		}
		return p
	}}, []string{"v5/publish/qos2_dup_before_pubrel_pubrec_0x00"}},
	"delivered_twice": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok && p.QoS > 0 {
			c.write(p)
		}
		return p
	}}, []string{"v5/shared/one_member_per_message", "v3/pubsub/qos1", "v3/publish/qos2_dup_before_pubrel_delivered_once"}},
	"disconnect_expiry_ignored": {mode{toServer: func(c *conn, p packet.Packet) (packet.Packet, bool, packet.Packet) {
		if d, ok := p.(*packet.Disconnect); ok {
			d.Properties.SessionExpiry = nil
		}
		return p, false, nil
	}}, []string{"v5/session/expiry_set_on_disconnect"}},
	"will_lost": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok && strings.HasSuffix(p.Topic, "/will") {
			return nil
		}
		return p
	}}, []string{"v3/keepalive/closed_and_will_published", "v5/will/message_with_properties", "v5/will/delay",
		"v5/session/expiry_while_running_publishes_delayed_will"}},
	// corral: the assigned client id does not name the session.
	"session_lost": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Connack); ok {
			p.SessionPresent = false
		}
		return p
	}}, []string{"v3/session/present_flag", "v5/connect/assigned_client_id_names_session"}},
	"properties_dropped": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok {
			p.Properties = packet.Properties{TopicAlias: p.Properties.TopicAlias, MessageExpiry: p.Properties.MessageExpiry}
		}
		return p
	}}, []string{"v5/properties/payload_format_content_type", "v5/properties/request_response", "v5/properties/user_properties_in_order", "v5/subscribe/subscription_identifiers"}},
	// mochi: aliases up to 65535 accepted whatever the maximum.
	"aliases_unbounded": {mode{toServer: func(c *conn, p packet.Packet) (packet.Packet, bool, packet.Packet) {
		if p, ok := p.(*packet.Publish); ok && p.Properties.TopicAlias > 10 && p.Topic != "" {
			p.Properties.TopicAlias = 0
		}
		return p, false, nil
	}}, []string{"v5/topic_alias/above_maximum_disconnect_0x94"}},
	// mochi: an unknown alias answered PUBACK 0x87, the connection kept.
	"alias_unknown_puback": {mode{toServer: func(c *conn, p packet.Packet) (packet.Packet, bool, packet.Packet) {
		if pub, ok := p.(*packet.Publish); ok && pub.Topic == "" {
			if pub.QoS > 0 {
				c.write(&packet.Puback{Ack: packet.Ack{PacketID: pub.PacketID, ReasonCode: packet.NotAuthorized}})
			}
			return nil, false, nil
		}
		return p, false, nil
	}}, []string{"v5/topic_alias/unknown_alias_disconnect"}},
	"alias_above_client_maximum": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok && c.v == packet.V5 {
			p.Properties.TopicAlias = 3
		}
		return p
	}}, []string{"v5/topic_alias/server_to_client"}},
	"expiry_not_counted": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok && p.Properties.MessageExpiry != nil {
			p.Properties.MessageExpiry = ptr(uint32(30))
		}
		return p
	}}, []string{"v5/expiry/counts_down_and_expires"}},
	// Mosquitto as it is: a resumed session's whole window resent.
	"resend_past_receive_maximum": {mode{}, []string{"v5/flow_control/resend_within_new_receive_maximum"}},
	"auth_method_accepted": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Connack); ok && p.ReasonCode == packet.BadAuthenticationMethod {
			p.ReasonCode = packet.Success
		}
		return p
	}}, []string{"v5/auth/unsupported_method_connack_0x8c"}},
	"auth_ignored": {mode{toServer: func(c *conn, p packet.Packet) (packet.Packet, bool, packet.Packet) {
		if _, ok := p.(*packet.Auth); ok {
			return nil, false, nil
		}
		return p, false, nil
	}}, []string{"v5/auth/auth_packet_without_method_protocol_error"}},
	"qos0_lost": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok && p.QoS == 0 {
			return nil
		}
		return p
	}}, []string{"v5/flow_control/order_per_qos_with_window_full"}},
	"resends_lost": {mode{toClient: func(c *conn, p packet.Packet) packet.Packet {
		if p, ok := p.(*packet.Publish); ok && p.Dup {
			return nil
		}
		return p
	}}, []string{"v5/session/takeover_keeps_inflight_and_queued", "v3/session/takeover_keeps_inflight_and_queued"}},
	"malformed_accepted": {mode{swallowBad: true}, []string{"v3/malformed/publish_qos_3", "v5/malformed/publish_topic_alias_0", "v5/malformed/remaining_length_5_bytes"}},
}

// proxiedTarget is Mosquitto behind a proxy, with no gap declared.
func proxiedTarget(t *testing.T, m mode) conformance.Target {
	tg := mosquitto()
	tg.Name = "proxied mosquitto"
	tg.Addr = startProxy(t, mosquittoAddr, m).addr()
	tg.Gaps = nil
	return tg
}

// TestRepairedMosquitto runs the whole suite, no gap declared, against
// Mosquitto with its gaps filled by the proxy: every case can pass.
func TestRepairedMosquitto(t *testing.T) {
	needMosquitto(t)
	t.Parallel()
	tg := proxiedTarget(t, repaired())
	tg.Features.RefusedFilter = refusedFilter
	tg.Features.MaxPacketSize = 4096
	conformance.Run(t, tg)
}

// TestProxied is run by TestCasesCanFail in a child process, in the mode
// named by CONFORMANCE_PROXY (a key of broken).
func TestProxied(t *testing.T) {
	name := os.Getenv("CONFORMANCE_PROXY")
	if name == "" {
		t.Skip("run by TestCasesCanFail")
	}
	m := broken[name].m
	conformance.Run(t, proxiedTarget(t, m))
}

// TestTransparentProxy runs the suite against Mosquitto behind a proxy
// that changes nothing, with Mosquitto's gaps: the proxy itself breaks no
// case, so a case failing behind a broken mode fails for its defect.
func TestTransparentProxy(t *testing.T) {
	needMosquitto(t)
	t.Parallel()
	tg := mosquitto()
	tg.Name = "mosquitto behind a transparent proxy"
	tg.Addr = startProxy(t, mosquittoAddr, mode{}).addr()
	conformance.Run(t, tg)
}

// TestCasesCanFail runs cases against Mosquitto behind a broken proxy, each
// in a child process (a failing case would fail this test's own run):
// every case listed for a defect must fail.
func TestCasesCanFail(t *testing.T) {
	needMosquitto(t)
	if testing.Short() {
		t.Skip("runs child processes")
	}
	t.Parallel()
	type child struct {
		mode, name, out string
		err             error
		took            time.Duration
	}
	var children []*child
	for mode, b := range broken {
		for _, name := range b.cases {
			children = append(children, &child{mode: mode, name: name})
		}
	}
	// Most children fail by waiting out the suite's timeout: run them
	// side by side (subtests would run only GOMAXPROCS at once).
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, ch := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			pat := []string{"^TestProxied$"}
			for _, el := range strings.Split(ch.name, "/") {
				pat = append(pat, "^"+regexp.QuoteMeta(el)+"$")
			}
			cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(pat, "/"), "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "CONFORMANCE_PROXY="+ch.mode)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			ch.out, ch.err, ch.took = string(out), err, time.Since(start)
		}()
	}
	wg.Wait()
	for _, ch := range children {
		t.Run(ch.mode+"/"+ch.name, func(t *testing.T) {
			t.Logf("failed in %v", ch.took.Round(time.Millisecond))
			if ch.err == nil || !strings.Contains(ch.out, "--- FAIL: TestProxied/"+ch.name+" ") {
				t.Errorf("behind a %s broker, %s did not fail:\n%s", ch.mode, ch.name, ch.out)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
