package broker

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// netListener serves MQTT on a listener opened by netlisten (TCP, TLS or
// WebSocket, each with the PROXY protocol if configured), so that ":0"
// works, the bound address is known and every connection's RemoteAddr is
// the client's: mochi takes Client.Net.Remote from it.
type netListener struct {
	id, proto string
	addr      string // the bound address
	ln        net.Listener
	once      sync.Once
	// closeClients ends the listener's sessions on Close, in place of the
	// function mochi passes (see Broker.closeListenerClients).
	closeClients func(listener string)
}

func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.addr }
func (l *netListener) Protocol() string        { return l.proto }
func (l *netListener) Init(*slog.Logger) error { return nil }
func (l *netListener) Close(listeners.CloseFn) {
	l.once.Do(func() { l.ln.Close() })
	l.closeClients(l.id)
}

func (l *netListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		go establish(l.id, conn)
	}
}
