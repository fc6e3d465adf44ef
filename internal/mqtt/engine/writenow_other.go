//go:build !linux

package engine

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// directSocket: no writes from the kicking goroutine on this system.
func directSocket(net.Conn) syscall.RawConn { return nil }

func writeNow(*sync.Pool, syscall.RawConn, []byte) (int, error) {
	return 0, errors.ErrUnsupported
}
