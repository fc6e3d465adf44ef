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
// A busy connection has one goroutine, the reader: it reads one packet at a
// time (no read buffer held between packets) under a read deadline of 1.5 ×
// the keep alive. With Options.ParkIdle (Linux, park*.go), a reader that
// waited that long for a packet's first byte returns and the connection is
// parked: its socket, found under TLS, PROXY and other wrappers through
// NetConn, waits in one epoll instance of the server, and its poller
// goroutine starts a new reader when the socket is readable or hung up; a
// timer does at the keep-alive deadline, so that the read times out as it
// would have, and every close by the engine (closeNC) takes the socket out
// of the epoll set and resumes the reader first, so that it ends as an
// unparked one does. A timeout in the middle of a packet never parks.
// Whatever a connection is sent goes through its session: control packets
// into a byte slice, messages into a queue bounded in messages and bytes; a
// short-lived writer goroutine flushes both and exits when they are empty,
// so an idle parked connection holds no buffer and no goroutine.
//
// Sessions. A takeover ends the connection the session had (MQTT 5:
// DISCONNECT 0x8E); when that connection's own CONNECT is still being
// served, its end is reported (SessionEnded) only after its SessionStarted,
// so hooks see every connection start, then end, once. An offline session
// with an expiry has a timer (the runtime's heap, no sweep) that ends it
// then: its will goes if still delayed (a will delay longer than the
// expiry ends at the expiry), its queue, subscriptions and stored records
// go, and a reconnection gets session present 0. Rights: MayReceive is
// asked when a message is routed; a new connection resuming a session has
// its queue and in-flight window checked again for its own client before
// anything is written (refusals dropped as DropNotAuthorized), since the
// embedder authenticates it with the rights it has now; while a connection
// lives, the embedder Kicks it when its rights change. Order: the queue is
// written in order, a QoS 0 message behind a QoS 1 or 2 one waits for the
// Receive Maximum window too (never reordered within a QoS, MQTT 5 4.6);
// a resumed session's in-flight window is resent (same ids, DUP) within
// the new connection's Receive Maximum, the rest as acks return quota.
// Enhanced authentication is not supported: a CONNECT with an
// Authentication Method is answered CONNACK 0x8C, an AUTH packet is a
// protocol error.
//
// Durable sessions (issue 13 item 4, durable.go). Without Options.Store
// sessions live in memory only. With a store (internal/mqtt/persist), a
// persistent session (3.1.1 clean session 0, MQTT 5 session expiry > 0) is
// stored: its record (expiry, will, when it disconnected) is written on
// connect and disconnect (syncSession, ordered per client id), its
// subscriptions as they change, and its QoS 1 and 2 deliveries as follows.
// A message that may need storing (QoS 1 or 2, retained, or a QoS 2 id of a
// stored publisher) carries an open batch while it is routed; every stored
// session it reaches numbers its copy (Seq, from one counter continuing
// from the highest loaded, so never reused by a later session of the same
// client id) and adds it to the batch under its own lock
// (enqueueStoredLocked);
// after routing, the publisher's own goroutine writes the batch — copies,
// the publisher's QoS 2 id, the retained change — as one Write, and only
// then queues PUBACK or PUBREC (a failed write: PUBACK 0x80 under MQTT 5,
// the connection closed under 3.1.1). So a PUBACK means the message is
// durable for every persistent subscriber it reached; publishers wait for
// their own writes only, and concurrent ones share the adapter's group
// commits. A connection has one such write outstanding at a time (its
// reader waits for it before reading the next packet): no pipelining. The copies are queued in memory at once, so a subscriber online
// may get a message before it is durable. Transitions (sent with a packet
// id, PUBREC received, done: acked, expired or too large) and released
// QoS 2 ids go to a flusher goroutine that writes whatever is pending as
// one batch, each after the batch that stored its message, off every
// client's path; Close writes what is pending. Non-persistent sessions and
// QoS 0 write nothing.
//
// Open restores a store's state before Serve: sessions expired meanwhile
// are deleted (ExpireSessions) and their wills published; the others come
// back offline with their subscriptions, queues, in-flight windows (resent
// in order on reconnect: PUBLISH with DUP, PUBREL for those PUBRECed) and
// QoS 2 ids; a session connected when the process stopped is disconnected
// now, its expiry and will delay counted from now; retained messages are
// loaded. A restored session's Client carries only ID and Version (no
// ConnInfo, Value nil) until its client reconnects: hooks see that Client
// in MayReceive and for a will.
//
// Lock order: the Router's (subs.Index) lock, then Server.mu, then
// session.mu; the engine never calls the Router holding either of its own. Hooks and in-process handlers are
// called with no engine lock held, except MayReceive, called by the router
// with no session lock held either.
package engine
