package engine

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// ConnInfo is what the engine knows of a connection before its CONNECT is
// accepted.
type ConnInfo struct {
	RemoteAddr net.Addr
	TLS        *tls.ConnectionState // nil unless the net.Conn is a *tls.Conn
	Listener   string               // the name given to Serve
	// Conn is the connection as accepted (below TLS and WebSocket when the
	// listener wraps them); embedders look through it, they must not read
	// or write it.
	Conn net.Conn
}

// Client is an accepted connection's client as hooks see it. It is immutable
// once the CONNECT is accepted; the same pointer is passed to every hook of
// that connection.
type Client struct {
	ID       string
	Version  packet.Version
	ConnInfo ConnInfo
	// Value is what Hooks.Authenticate returned: the embedder's view of the
	// client (a device, an application key…).
	Value any
}

// EndReason says why a connection of a session ended.
type EndReason int

// The reasons a connection ends.
const (
	EndNormal        EndReason = iota // DISCONNECT 0x00 from the client
	EndWithWill                       // DISCONNECT 0x04 (or any code but 0x00) from the client: the will goes
	EndClosed                         // the network connection closed without DISCONNECT
	EndKeepAlive                      // nothing received within 1.5 × keep alive
	EndTakeover                       // a new CONNECT with the same client id
	EndProtocolError                  // a malformed or forbidden packet
	EndKicked                         // Server.Kick
	EndShutdown                       // Server.Close
	EndSlowConsumer                   // a write timed out or the control buffer overflowed
	EndPacketTimeout                  // a packet begun did not come whole within Options.PacketTimeout
	numEndReasons
)

var endNames = [...]string{"normal", "with_will", "closed", "keepalive", "takeover",
	"protocol_error", "kicked", "shutdown", "slow_consumer", "packet_timeout"}

func (r EndReason) String() string {
	if int(r) < len(endNames) {
		return endNames[r]
	}
	return "unknown"
}

// Hooks decide who may connect and what a client may do. They are called
// from connection goroutines concurrently and must be safe for that; they are
// called with no engine lock held and may call the Server's methods (but
// MayReceive, called while a message is being routed, must not publish).
type Hooks interface {
	// Authenticate accepts or refuses a CONNECT. On packet.Success, value
	// becomes Client.Value. Otherwise the client is answered CONNACK code
	// (with reason under MQTT 5; 3.1.1 gets the nearest return code, or
	// the connection closes when there is none). The CONNECT's password must
	// not be kept: its bytes belong to the engine. On success it may set
	// c.ClientID to the id the session is to have (an embedder's own naming
	// of its clients); an empty one is assigned by the engine.
	Authenticate(ctx context.Context, info ConnInfo, c *packet.Connect) (value any, code packet.ReasonCode, reason string)
	// MaySubscribe says whether c may subscribe to filter; for a shared
	// subscription it is the filter inside $share/{group}/.
	MaySubscribe(c *Client, filter string) bool
	// MayPublish says whether c may publish on topic (wills included). A
	// refusal is answered PUBACK/PUBREC 0x87 under MQTT 5 and is silent
	// under 3.1.1.
	MayPublish(c *Client, topic string) bool
	// MayReceive says whether c may be delivered a message on topic; asked
	// at every delivery when the message is routed, retained ones included,
	// and again for every message queued or in flight when a new
	// connection resumes the session (its rights may differ). It is not
	// asked when a queued message is written: an embedder whose rights for
	// a live connection change kicks it (Kick) or drops its session
	// (Discard).
	MayReceive(c *Client, topic string) bool
	// SessionStarted is called once a connection's CONNACK is queued and
	// before it is written, so that what the hook sets up (subscriptions,
	// messages) is in place when the client learns it is connected. It
	// must not wait for the client.
	SessionStarted(c *Client, sessionPresent bool)
	// SessionEnded is called once when that connection ends; on a takeover,
	// before the new connection's SessionStarted.
	SessionEnded(c *Client, reason EndReason)
}

// AllowAll is Hooks that accept every client and every topic; for tests and
// for embedding behind a trusted network.
type AllowAll struct{}

// Authenticate accepts every CONNECT.
func (AllowAll) Authenticate(context.Context, ConnInfo, *packet.Connect) (any, packet.ReasonCode, string) {
	return nil, packet.Success, ""
}

// MaySubscribe allows every filter.
func (AllowAll) MaySubscribe(*Client, string) bool { return true }

// MayPublish allows every topic.
func (AllowAll) MayPublish(*Client, string) bool { return true }

// MayReceive allows every topic.
func (AllowAll) MayReceive(*Client, string) bool { return true }

// SessionStarted does nothing.
func (AllowAll) SessionStarted(*Client, bool) {}

// SessionEnded does nothing.
func (AllowAll) SessionEnded(*Client, EndReason) {}
