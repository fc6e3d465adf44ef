package broker

import "github.com/corral-iot/corral/internal/mqtt/subs"

// Server-side subscription (clientId flag _ss=1): a stock Link SDK device
// registers local handlers for its downlinks and sends no SUBSCRIBE for
// them, so corral subscribes its session itself when it starts, and a
// gateway's session for each sub-device it logs in. These few functions
// are the whole of it over the engine's SubscribeClient.

// sysDownlinks are the /sys/{pk}/{dn}/… downlinks a stock device has
// handlers for (the protocol spec's table, "Topic directions").
var sysDownlinks = []string{
	"thing/service/property/set", "thing/service/+",
	"thing/event/+/post_reply", "thing/event/property/batch/post_reply",
	"thing/event/property/pack/post_reply", "thing/event/property/history/post_reply",
	"thing/deviceinfo/update_reply", "thing/deviceinfo/delete_reply",
	"thing/dynamicTsl/get_reply", "thing/dsltemplate/get_reply",
	"thing/property/desired/get_reply", "thing/property/desired/delete_reply",
	"thing/model/down_raw", "thing/model/up_raw_reply",
	"thing/config/push", "thing/config/get_reply",
	"rrpc/request/+",
	"thing/topo/add_reply", "thing/topo/delete_reply", "thing/topo/get_reply",
	"thing/topo/change", "thing/topo/add/notify", "thing/gateway/permit",
	"thing/sub/register_reply", "thing/sub/unregister_reply",
	"thing/proxy/provisioning/product_register_reply", "thing/list/found_reply",
	"thing/disable", "thing/enable", "thing/delete",
	"thing/ota/firmware/get_reply", "thing/bootstrap/notify", "thing/bootstrap/config/push",
}

// sessionReplies are corral's answers on /ext/session/{pk}/{dn}/….
var sessionReplies = []string{"combine/login_reply", "combine/logout_reply", "combine/batch_login_reply", "combine/batch_logout_reply"}

// downlinkFilters is the set a stock device would have subscribed to:
// the spec's downlink table with its own ProductKey and DeviceName, the
// v4 RRPC forms only when it asked for them (ext=3).
func downlinkFilters(pk, dn string, rrpcExt bool) []string {
	dev := pk + "/" + dn
	fs := make([]string, 0, len(sysDownlinks)+len(sessionReplies)+6)
	for _, s := range sysDownlinks {
		fs = append(fs, "/sys/"+dev+"/"+s)
	}
	for _, s := range sessionReplies {
		fs = append(fs, "/ext/session/"+dev+"/"+s)
	}
	fs = append(fs, "/ext/ntp/"+dev+"/response", "/ext/error/"+dev, "/shadow/get/"+dev, "/ota/device/upgrade/"+dev)
	if rrpcExt {
		fs = append(fs, "/ext/rrpc/+/sys/"+dev+"/thing/service/+", "/ext/rrpc/+/sys/"+dev+"/thing/model/down_raw")
	}
	return fs
}

// serverSubQoS is the QoS the Link SDKs subscribe their system topics
// with.
const serverSubQoS = 0

// subscribeClient adds subscriptions to a client's session as a SUBSCRIBE
// of its own would, retained messages included; each delivery is checked
// by MayReceive as usual. Subscribing a filter the session already holds
// replaces it, so a persistent session that reconnects does not pile up
// duplicates. No Local: a device never gets back what it published itself
// (v4 RRPC replies share the request's topic).
func (b *Broker) subscribeClient(s *session, filters []string) {
	list := make([]subs.Subscription, len(filters))
	for i, f := range filters {
		list[i] = subs.Subscription{Filter: f, Options: subs.Options{QoS: serverSubQoS, NoLocal: true}}
	}
	if err := b.eng.SubscribeClient(s.id.clientID, list); err != nil {
		b.log.Debug("server-side subscriptions not added", "clientId", s.id.clientID, "err", err)
	}
}

// unsubscribeClient removes subscriptions from a client's session (one
// that has ended has none left to remove).
func (b *Broker) unsubscribeClient(s *session, filters []string) {
	_ = b.eng.UnsubscribeClient(s.id.clientID, filters)
}
