package engine

import (
	"log/slog"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/retained"
)

// Options configure a Server. Zero values take the defaults below.
type Options struct {
	Hooks  Hooks        // nil: AllowAll
	Router Router       // nil: a LocalRouter over a new subs.Index
	Logger *slog.Logger // nil: slog.Default()
	// Retained stores retained messages; nil: a retained.Store.
	Retained RetainedStore
	// Store, when set, keeps persistent sessions and retained messages
	// durable (internal/mqtt/persist): a QoS 1 or 2 PUBLISH that reaches a
	// persistent session is stored before the publisher's PUBACK or
	// PUBREC. Create the server with Open to restore what it holds (see
	// the package doc: a restored session's Client has no Value until its
	// client reconnects). Nil: memory only.
	Store persist.Store

	// MaxPacketSize bounds a packet from a client (DISCONNECT 0x95 past
	// it) and is advertised in CONNACK. Default 1 MiB.
	MaxPacketSize int
	// ReceiveMaximum is the number of QoS 2 messages a client may have
	// unreleased (advertised in CONNACK; DISCONNECT 0x93 past it).
	// Default 64.
	ReceiveMaximum uint16
	// MaxInflight bounds the outbound window of a session below the
	// client's Receive Maximum. Default 64.
	MaxInflight int
	// TopicAliasMaximum is advertised to MQTT 5 clients. Default 64;
	// negative: no aliases.
	TopicAliasMaximum int
	// QueueMessages and QueueBytes bound a session's queue of messages not
	// yet written (defaults 1,000 and 16 MiB).
	QueueMessages int
	QueueBytes    int
	// QueueQoS0Offline queues QoS 0 messages for offline persistent
	// sessions too.
	QueueQoS0Offline bool
	// MaxKeepAlive, when > 0, caps keep alives (seconds): an MQTT 5 client
	// asking for more, or for none (0), is told Server Keep Alive =
	// MaxKeepAlive in CONNACK and held to it; a 3.1.1 client asking for
	// more is refused (CONNACK 0x02, as Mosquitto's max_keepalive does:
	// 3.1.1 has no way to tell it).
	MaxKeepAlive uint16
	// MaxSessionExpiry caps MQTT 5 session expiry intervals (seconds) and
	// bounds 3.1.1 persistent sessions; 0: no cap, 3.1.1 sessions never
	// expire.
	MaxSessionExpiry uint32
	// ConnectTimeout bounds the wait for CONNECT. Default 10 s.
	ConnectTimeout time.Duration
	// PacketTimeout bounds the read of a packet once its first byte has
	// come: a client that stops in the middle of one is closed
	// (EndPacketTimeout; MQTT 5 clients are sent DISCONNECT 0x8D first, as
	// for a keep-alive timeout), whatever its keep alive, so that it holds
	// no reader and read buffer for ever. A keep-alive deadline sooner
	// than it still applies. An idle connection, between packets, is not
	// bounded by it: keep alive 0 leaves it without a deadline. The bound
	// is kept while it moves by less than a quarter of itself: a packet
	// gets at least three quarters of it. Default 30 s (a packet of the
	// default MaxPacketSize at 35 KB/s).
	PacketTimeout time.Duration
	// WriteTimeout bounds one write to a client. Default 30 s.
	WriteTimeout time.Duration
	// MaxControlBytes bounds acknowledgements queued to a client that does
	// not read; past it the connection ends. Default 1 MiB.
	MaxControlBytes int
	// AcceptMQTT31 serves MQTT 3.1 clients (protocol "MQIsdp", level 3)
	// as 3.1.1 ones, as Mosquitto does; off, they get CONNACK 0x01. Paho
	// clients without an explicit version retry a refused CONNECT in 3.1.
	AcceptMQTT31 bool
	// ParkIdle, when > 0, parks a connection whose reader waited that long
	// for a packet (Linux; elsewhere never): its goroutine returns and its
	// socket waits in one epoll instance of the server, to be read by a
	// kept reader or a new goroutine when data comes, its keep alive runs
	// out or it is closed. A packet that came after a silence of at least
	// ParkIdle/2 parks its connection as soon as it is read, where the
	// wrappers above the socket buffer nothing (Unbuffered). Connections
	// with no socket the engine can reach (WebSocket, net.Pipe) are never
	// parked. 0: never park.
	ParkIdle time.Duration
	// OnDrop, when set, is called (without engine locks) for every message
	// dropped for a session; Stats counts them either way.
	OnDrop func(clientID string, r DropReason)
}

func (o Options) withDefaults() Options {
	if o.Hooks == nil {
		o.Hooks = AllowAll{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Retained == nil {
		o.Retained = retained.New()
	}
	if o.MaxPacketSize <= 0 {
		o.MaxPacketSize = 1 << 20
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = 64
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 64
	}
	if o.TopicAliasMaximum == 0 {
		o.TopicAliasMaximum = 64
	}
	if o.TopicAliasMaximum < 0 {
		o.TopicAliasMaximum = 0
	}
	if o.TopicAliasMaximum > 65535 {
		o.TopicAliasMaximum = 65535
	}
	if o.QueueMessages <= 0 {
		o.QueueMessages = 1000
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 16 << 20
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.PacketTimeout <= 0 {
		o.PacketTimeout = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.MaxControlBytes <= 0 {
		o.MaxControlBytes = 1 << 20
	}
	return o
}
