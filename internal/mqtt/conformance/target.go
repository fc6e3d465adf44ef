package conformance

import (
	"context"
	"net"
	"time"
)

// Target is a broker under test.
type Target struct {
	// Name labels the target in failure messages.
	Name string
	// Addr is the broker's TCP address, used when Dial is nil.
	Addr string
	// Dial opens a fresh connection to the broker (TLS, WebSocket, an
	// in-process listener…). Nil dials Addr over TCP.
	Dial func(ctx context.Context) (net.Conn, error)
	// Prefix starts every client id and topic of a run (a run adds its own
	// unique part). Empty means "cf".
	Prefix string
	// Credentials, if set, gives the user name and password of a CONNECT
	// for a client id; nil connects anonymously.
	Credentials func(clientID string) (username string, password []byte)
	// Restart, if set, restarts the broker (gracefully, or by kill -9 for
	// the hardest test) and returns once it accepts connections again;
	// RunDurable needs it.
	Restart func(ctx context.Context) error
	// Features says what the broker implements and how it is configured.
	Features Features
	// Gaps names cases (as in "v5/flow_control/server_receive_maximum_exceeded")
	// the target does not pass, each with the reason; such a case is
	// skipped with that reason. Keep it to configuration limits and
	// features the broker lacks: a defect belongs in a failing test.
	Gaps map[string]string
}

// Features are what a Target implements or advertises. The zero value is
// a broker that implements none of the optional features and declares no
// limit: set what the broker has.
type Features struct {
	// MaxQoS is the highest QoS the broker grants and accepts (0, 1 or 2).
	MaxQoS byte
	// Retain: the broker keeps retained messages.
	Retain bool
	// SharedSubscriptions: $share/{group}/{filter} (MQTT 5; 3.1.1 too
	// where the broker offers it).
	SharedSubscriptions bool
	// SubscriptionIDs: MQTT 5 subscription identifiers.
	SubscriptionIDs bool
	// WillDelay: MQTT 5 will delay intervals are honoured.
	WillDelay bool
	// RefusedFilter is a valid topic filter the broker refuses to this
	// suite's clients (not authorized): SUBACK 0x80 under 3.1.1, 0x87 under
	// MQTT 5. Empty: the broker refuses none, and those cases skip.
	RefusedFilter string
	// RefusedTopic is a valid topic name the broker refuses publishes to
	// from this suite's clients (not authorized): PUBACK 0x87, and PUBREC
	// 0x87 at QoS 2. Empty: the broker refuses none, and those cases skip.
	RefusedTopic string
	// MaxKeepAlive is the largest keep alive the broker accepts; a
	// MQTT 5 client asking for more (or for 0) is told Server Keep Alive.
	// 0: the broker caps none, and the case skips.
	MaxKeepAlive uint16
	// MaxPacketSize is the Maximum Packet Size the broker advertises.
	// 0: none, and the case sending a larger packet skips.
	MaxPacketSize uint32
	// MaxQueued is the number of messages the broker queues for an offline
	// persistent session. 0: unknown, and the overflow case skips.
	MaxQueued int
}

// Timing of the suite: how long a case waits for an expected packet, and
// how long it listens to conclude that nothing comes.
const (
	waitFor = 5 * time.Second
	// lateWill is how long a delayed will may take after its silence was checked.
	lateWill = 15 * time.Second
	quiet    = 300 * time.Millisecond
)
