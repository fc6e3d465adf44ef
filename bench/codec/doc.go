// Package codec compares corral's MQTT packet codec (internal/mqtt/packet)
// with github.com/eclipse/paho.golang/packets on the same packet. It is its
// own module so that the comparison's dependency stays out of corral's
// go.mod; `go test ./...` at the repository root does not enter it.
package codec
