// Package retained is the retained-message store of corral's MQTT engine
// (issue 13): the last retained message of each topic, handed to a new
// subscription whose filter matches it (MQTT 5.0 3.3.1.3, 4.7; 3.1.1 3.3.1.3).
//
// Topics are kept in a radix tree of topic levels, as the subscription index
// (internal/mqtt/subs) keeps filters: a chain of levels with no branch is one
// node, so a device's retained topic below its DeviceName is one node whatever
// its depth. Matching a filter visits only what the filter can reach: a
// literal level descends into one child, '+' walks the children, '#' the
// whole subtree below it, and a filter starting with a wildcard never enters a
// '$' topic ([MQTT-4.7.2-1]). Memory is what a message needs: a 48-byte
// node, a 48-byte entry with its expiry and payload format, its topic and
// payload in one allocation; the node's label is a slice of that same topic
// (labels of nodes without a message are interned), the publisher's other
// properties are behind a pointer that is nil when it set none.
//
// Messages with a Message Expiry Interval are also in a heap by deadline, so
// that Expire drops the expired ones without a walk; Match skips expired
// messages between two Expire calls. The store is pure: no I/O, no goroutine,
// and no clock but for a message whose arrival time the caller left zero
// (the caller passes now).
package retained
