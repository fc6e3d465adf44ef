// Package engine is corral's own MQTT 3.1.1 and 5.0 server (issue 13): the
// connections, sessions, in-flight windows, queues, wills, retained messages
// and topic aliases between the codec (internal/mqtt/packet) and the
// subscription index (internal/mqtt/subs).
//
// It knows nothing of products or devices: whoever embeds it decides who may
// connect, subscribe, publish and receive through Hooks, and talks to
// sessions through the in-process API (Publish, Subscribe, SubscribeClient,
// Kick, Connected). Messages travel through a Router, so that a cluster can
// route between nodes without touching the engine.
//
// Each connection costs one goroutine, the reader: it reads one packet at a
// time (no read buffer held between packets) under a read deadline of 1.5 ×
// the keep alive. Whatever a connection is sent goes through its session:
// control packets into a byte slice, messages into a queue bounded in
// messages and bytes; a short-lived writer goroutine flushes both and exits
// when they are empty, so an idle connection holds neither a buffer nor a
// second goroutine.
//
// Sessions live in memory only for now. Durability (issue 13 item 4) plugs
// in where the state changes, all in session.go and conn.go under
// session.mu: a delivery queued to a persistent session (enqueueLocked), a
// message moved into or out of the in-flight window (fillLocked, onAck), a
// QoS 2 id received or released (onPublish, onPubrel), subscriptions
// (Server.subscribe) and the session's creation and end (attach, detach,
// expire). A PUBLISH is routed before it is acknowledged (onPublish), so a
// store write made while routing is durable before the publisher's PUBACK,
// as internal/mqtt/persist requires.
//
// Lock order: the Router's (subs.Index) lock, then Server.mu, then
// session.mu; the engine never calls the Router holding either of its own. Hooks and in-process handlers are
// called with no engine lock held, except MayReceive, called by the router
// with no session lock held either.
package engine
