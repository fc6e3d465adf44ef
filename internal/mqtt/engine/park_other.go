//go:build !linux

package engine

import (
	"log/slog"
	"net"
	"time"
)

// poller parks nothing outside Linux: connections keep their reader.
type poller struct{}

// parkState is empty: nothing parks.
type parkState struct{}

func newPoller(*slog.Logger) *poller { return nil }

func canPark(net.Conn) bool { return false }

func (p *poller) park(*conn, time.Time) bool { return false }
func (p *poller) unpark(*conn)               {}
func (p *poller) parkedCount() int64         { return 0 }
func (p *poller) close()                     {}
