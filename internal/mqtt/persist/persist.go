// Package persist is the durable store port of corral's MQTT engine (issue
// 13): what a persistent session (its subscriptions, its queued and
// in-flight QoS 1/2 messages, the QoS 2 packet ids it has received and not
// yet seen released) and the retained messages are, and the interface an
// adapter implements so that they survive a restart and a kill -9.
//
// The port is engine-agnostic and knows nothing of products or devices. A
// message is kept as the PUBLISH it is, encoded as MQTT 5 wire bytes by
// internal/mqtt/packet (Append with packet.V5), so that the store never
// tracks properties one by one; the engine re-encodes for a 3.1.1 session
// when it delivers. The engine owns the order: it numbers each client's
// messages with Seq, one more than the last it gave that client (after a
// start-up it continues from the highest Seq Load returned), and an adapter
// keeps and returns that order.
//
// Durability is the contract of every write: when a method returns nil, what
// it wrote survives a crash of the process (and, with an adapter that
// fsyncs, of the machine). The engine PUBACKs (or PUBRECs) a publisher only
// after the Write carrying the message for every persistent subscriber has
// returned. Adapters may share one flush among concurrent callers (group
// commit); they must not answer before it.
//
// Other adapters. PostgreSQL implements the port with the SQLite adapter's
// tables (sessions; subscriptions, messages keyed by client id and Seq, and
// inbound ids referencing their session with ON DELETE CASCADE; retained by
// topic) and Write as one transaction: a multi-row INSERT for the fan-out,
// UPDATE / DELETE by (client, seq) for transitions, foreign-key and unique
// violations (SQLSTATE 23503, 23505) mapped to ErrNoSession and
// ErrDuplicate; with synchronous_commit on, COMMIT returns after the WAL
// flush, and concurrent commits share flushes (commit_delay widens the
// groups). NATS JetStream implements it with one stream (replicated, so
// that the publish acknowledgement from its quorum is the durability
// point), since an atomic batch publish (nats-server 2.12+, allow_atomic;
// up to 1,000 messages) is all or nothing within one stream: every record
// is the latest message on its own subject (max messages per subject 1) —
// "s.{client}" a session, "f.{client}.{filter}" a subscription,
// "q.{client}.{seq}" a queued message (the Seq in it gives the order, and
// an expected-last-subject-sequence of 0 refuses a duplicate; a
// transition republishes it, or a smaller record on "t.{client}.{seq}"
// beside it), "i.{client}.{id}" an inbound id, "r.{topic}" a retained
// message — client ids, filters and topics encoded into single subject
// tokens (they may hold '.', '*', '>'); a deletion is a purge of the
// subject (a rollup tombstone inside a batch), DeleteSession the purge of
// the client's subjects. Write is one atomic batch (a fan-out to more
// subscribers than a batch holds is split, and is then no longer atomic);
// Load reads the last message of every subject once at start-up.
package persist

import (
	"context"
	"errors"
	"time"
)

// NeverExpires is the session expiry interval of a session that never
// expires (MQTT 5.0 3.1.2.11.2: 0xFFFFFFFF).
const NeverExpires = 0xFFFFFFFF

// ErrNoSession is returned (wrapped) when a write names a client whose
// session is not stored.
var ErrNoSession = errors.New("no such session")

// ErrDuplicate is returned (wrapped) when Write enqueues a (ClientID, Seq)
// already stored, or the same one twice in a batch.
var ErrDuplicate = errors.New("message sequence number already stored")

// ErrInvalid is returned (wrapped) for a record that cannot be stored (an
// empty client id or topic, an unknown state, no PUBLISH bytes).
var ErrInvalid = errors.New("invalid record")

// Session is a persistent session's own record.
type Session struct {
	ClientID string
	// Version is the protocol level the client connected with: 4 (3.1.1)
	// or 5.
	Version byte
	// ExpiryInterval is the session expiry interval in seconds, counted
	// from DisconnectedAt; NeverExpires for never. (A session with
	// interval 0 ends with its connection and is never stored.)
	ExpiryInterval uint32
	// Will is the will message as the engine encoded it, nil for none; a
	// will with a delay is published when the delay or the session ends.
	Will []byte
	// Created is when the session started.
	Created time.Time
	// DisconnectedAt is when the client last disconnected; zero while it is
	// connected (a session never expires while connected).
	DisconnectedAt time.Time
}

// ExpiresAt is when the session expires; the zero time for never (it is
// connected, or its interval is NeverExpires).
func (s Session) ExpiresAt() time.Time {
	if s.DisconnectedAt.IsZero() || s.ExpiryInterval == NeverExpires {
		return time.Time{}
	}
	return s.DisconnectedAt.Add(time.Duration(s.ExpiryInterval) * time.Second)
}

// Subscription is one filter of a session with its options (MQTT 5.0
// 3.8.3.1). Filter is the whole filter as subscribed, $share/{group}/
// included; a client has one subscription per filter.
type Subscription struct {
	ClientID          string
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubscriptionID    uint32 // 0: none
}

// State is where a queued message stands in its delivery to a client.
type State uint8

const (
	// Queued: not sent yet (no packet id).
	Queued State = iota
	// Sent: sent with PacketID, awaiting PUBACK (QoS 1) or PUBREC (QoS 2);
	// resent with DUP on reconnect.
	Sent
	// Received: QoS 2, PUBREC received and PUBREL sent, awaiting PUBCOMP;
	// on reconnect the PUBREL is resent, not the PUBLISH.
	Received
	// Done is the state of a message whose delivery is over: a Transition
	// to Done deletes it.
	Done
)

func (s State) String() string {
	switch s {
	case Queued:
		return "queued"
	case Sent:
		return "sent"
	case Received:
		return "received"
	case Done:
		return "done"
	}
	return "unknown"
}

// Message is one message in a client's queue.
type Message struct {
	ClientID string
	// Seq orders the client's queue: the engine gives each message one more
	// than the last it gave that client. At most 2^63-1 (SQL integers are
	// signed), which a client reaches after 2^63 messages.
	Seq      uint64
	State    State  // Queued, Sent or Received
	PacketID uint16 // when Sent or Received
	// Expiry is when the message expires (its Message Expiry Interval
	// counted from its arrival); zero for never. The store keeps expired
	// messages until told otherwise: the engine drops them at delivery.
	Expiry time.Time
	// Publish is the PUBLISH as MQTT 5 wire bytes (packet.Publish.Append
	// with packet.V5). The store keeps a copy.
	Publish []byte
}

// Transition moves a queued message to another state (an ack, or the
// engine sending it); to Done deletes it. A transition of a message that is
// not stored does nothing (acks are idempotent: a resent PUBACK, or one
// racing a session's deletion, is harmless).
type Transition struct {
	ClientID string
	Seq      uint64
	State    State
	PacketID uint16 // for Sent and Received
}

// Inbound names a QoS 2 packet id a client published, that the engine has
// answered with PUBREC and not yet seen released by PUBREL (MQTT 5.0
// 4.3.3: a resent PUBLISH with that id is not delivered again).
type Inbound struct {
	ClientID string
	PacketID uint16
}

// Batch is what one Write stores, all or nothing.
type Batch struct {
	// Enqueue appends messages to their clients' queues: one PUBLISH to N
	// persistent subscribers is N messages in one batch.
	Enqueue []Message
	// Transitions change or delete queued messages.
	Transitions []Transition
	// AddInbound records received QoS 2 packet ids (already recorded: no
	// change); RemoveInbound forgets released ones (not recorded: no
	// change). A QoS 2 PUBLISH's copies to subscribers and its inbound id go
	// in one batch, so that a crash between them cannot deliver it twice.
	AddInbound    []Inbound
	RemoveInbound []Inbound
	// SetRetained and ClearRetained change retained messages as
	// RetainedStore does, so that a retained PUBLISH is one Write with its
	// copies to subscribers (set first, then cleared).
	SetRetained   []Retained
	ClearRetained []string
}

// Empty says whether the batch writes nothing.
func (b Batch) Empty() bool {
	return len(b.Enqueue) == 0 && len(b.Transitions) == 0 && len(b.AddInbound) == 0 && len(b.RemoveInbound) == 0 &&
		len(b.SetRetained) == 0 && len(b.ClearRetained) == 0
}

// Loaded is one stored session with everything it holds, as Load streams
// it.
type Loaded struct {
	Session       Session
	Subscriptions []Subscription // by Filter
	Messages      []Message      // by Seq
	Inbound       []uint16       // ascending
}

// Retained is a retained message (MQTT 5.0 3.3.1.3).
type Retained struct {
	Topic string
	// Publish is the PUBLISH as MQTT 5 wire bytes, as in Message.
	Publish []byte
	Stored  time.Time
	// Expiry is when the message expires; zero for never.
	Expiry time.Time
}

// Sessions stores sessions and their subscriptions.
//
// Methods are safe for concurrent use; a write is durable when it returns
// nil, and changes nothing when it returns an error.
type Sessions interface {
	// PutSession creates the session or replaces its record (its
	// subscriptions and queue stay): on connect, disconnect, or a changed
	// will or expiry interval.
	PutSession(ctx context.Context, s Session) error
	// DeleteSession removes the session and everything it holds
	// (subscriptions, messages, inbound ids). Deleting a session that is not
	// stored is not an error.
	DeleteSession(ctx context.Context, clientID string) error
	// Subscribe adds the subscriptions of one client, replacing the options
	// of a filter already stored; ErrNoSession if its session is not.
	Subscribe(ctx context.Context, clientID string, subs []Subscription) error
	// Unsubscribe removes filters of one client; filters not stored are
	// ignored.
	Unsubscribe(ctx context.Context, clientID string, filters []string) error
	// ExpireSessions deletes, as DeleteSession does, every session whose
	// ExpiresAt is not after now and returns their records, by client id
	// (so that the engine publishes their wills).
	ExpireSessions(ctx context.Context, now time.Time) ([]Session, error)
	// Load calls fn with every stored session, by client id, until fn
	// returns an error (which Load returns). It reads what was durable when
	// it began; call it at start-up, before the engine writes.
	Load(ctx context.Context, fn func(Loaded) error) error
}

// Queues is the hot path: messages for persistent sessions and their acks.
type Queues interface {
	// Write stores the batch in one atomic, durable step: when it returns
	// nil all of it survives a crash; when it returns an error nothing of
	// it was stored (ErrNoSession for a message or inbound id of a client
	// without a stored session, ErrDuplicate for a Seq already stored,
	// ErrInvalid for a malformed record; a batch breaking several rules
	// gets the error of one of them). Concurrent Writes may share one
	// flush.
	Write(ctx context.Context, b Batch) error
}

// RetainedStore stores retained messages durably. Matching them against
// new subscriptions is internal/mqtt/retained's, in memory: the engine fills
// it from LoadRetained at start-up and changes both on a retained PUBLISH
// (this store first, in the PUBLISH's Batch).
type RetainedStore interface {
	// SetRetained stores r, replacing the message retained on its topic.
	SetRetained(ctx context.Context, r Retained) error
	// ClearRetained removes the message retained on topic (an empty
	// retained PUBLISH); none stored is not an error.
	ClearRetained(ctx context.Context, topic string) error
	// ExpireRetained removes every retained message whose Expiry is set and
	// not after now, and says how many.
	ExpireRetained(ctx context.Context, now time.Time) (int, error)
	// LoadRetained calls fn with every retained message, by topic, until fn
	// returns an error (which LoadRetained returns).
	LoadRetained(ctx context.Context, fn func(Retained) error) error
}

// Store is everything an adapter implements.
type Store interface {
	Sessions
	Queues
	RetainedStore
}
