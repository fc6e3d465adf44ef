//go:build !linux

package engine

import (
	"errors"
	"net"
	"syscall"
)

// directSocket: no writes from the kicking goroutine on this system.
func directSocket(net.Conn) syscall.RawConn { return nil }

func writeNow(syscall.RawConn, []byte) (int, error) {
	return 0, errors.ErrUnsupported
}
