// Package subs is the subscription index of corral's MQTT engine (issue 13):
// which sessions receive a message published on a topic.
//
// It is a trie keyed by topic levels with dedicated children for '+' and '#'
// (as nats-server's sublist), whose chains of literal levels are one node
// (a radix tree: a device's own filters are mostly such chains, and nodes are
// most of the memory), guarded by one RWMutex: matching is read-only and runs
// on every PUBLISH, subscribing is rare next to it. A result is
// written into a caller-owned *Matches, reused between messages, so the hot
// path allocates nothing once the buffers have grown.
//
// It applies the MQTT 5 delivery rules that depend only on subscriptions:
// one copy per client for overlapping subscriptions at the highest granted
// QoS carrying every matching subscription identifier (3.3.4), No Local,
// '$' topics unseen by filters starting with a wildcard (4.7.2), and one
// member per shared subscription group ($share/{group}/{filter}, 4.8.2),
// chosen round-robin among the members the engine accepts. It knows
// nothing of sessions, rights or retained messages.
package subs
