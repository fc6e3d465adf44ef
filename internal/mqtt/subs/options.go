package subs

// Options are a subscription's options (MQTT 5 3.8.3.1) and its subscription
// identifier. 3.1.1 subscriptions carry only QoS. Eight bytes: one is stored
// per subscription.
type Options struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	// SubscriptionID is the MQTT 5 Subscription Identifier, 1 to
	// 268,435,455; 0 means none.
	SubscriptionID uint32
}

// entry is one client's subscription at a node (or in a shared group).
type entry struct {
	client string // interned: one copy per client across all its entries
	opts   Options
}
