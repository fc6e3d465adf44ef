// Package packet owns the MQTT wire format of corral's own MQTT engine: the
// types of every control packet of MQTT 3.1.1 (protocol level 4) and MQTT 5.0
// (level 5), MQTT 5 properties, decoding with the specifications' validation,
// encoding, and the topic name and filter rules.
//
// It knows nothing of sessions, subscriptions or rights: a decoded packet is
// well-formed by the specifications, and whatever the engine must decide
// (topic aliases, receive maximum, rights, which filter a client may use) is
// left to it. Every refusal is an *Error carrying the MQTT 5 reason code the
// engine answers with (DISCONNECT, CONNACK, or closing a 3.1.1 connection).
//
// Decoding reads the fixed header first, then exactly the remaining length,
// so a connection holds no read buffer between packets; binary fields
// (payloads, correlation and authentication data) alias the decoded bytes.
// Encoding appends to a caller's slice and allocates nothing else.
package packet
