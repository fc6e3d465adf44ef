package engine

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTCPKeepAliveForNoMQTTKeepAlive: on a listener that leaves TCP
// keep-alives off, a client that asked for no MQTT keep alive gets them
// (the only way to find it gone), one with a keep alive does not.
func TestTCPKeepAliveForNoMQTTKeepAlive(t *testing.T) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	go s.Serve(ln)
	t.Cleanup(func() { s.Close(context.Background()) })
	none := conn3("none", true)
	none.KeepAlive = 0
	mustConnect(t, ln.Addr().String(), none)
	mustConnect(t, ln.Addr().String(), conn3("sixty", true))
	got := map[string]int{}
	s.mu.Lock()
	for c := range s.conns {
		rc, err := c.nc.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		rc.Control(func(fd uintptr) {
			got[c.client.ID], err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Unlock()
	if got["none"] == 0 || got["sixty"] != 0 {
		t.Fatalf("SO_KEEPALIVE by client: %v; want on for keep alive 0 only", got)
	}
}
