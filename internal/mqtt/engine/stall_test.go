package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// stallBound is the PacketTimeout of the tests below.
const stallBound = 300 * time.Millisecond

// stallCases are the ways a connection waits: read by its own goroutine
// (no ParkIdle), or parked between packets (ParkIdle, Linux).
var stallCases = []struct {
	name string
	park time.Duration
}{{"unparked", 0}, {"parked", 100 * time.Millisecond}}

// TestPartialPacketTimesOut: a client that begins a packet and stops (the
// fixed header of a PUBLISH announcing 1,000 bytes, then 10 of them; or
// its first byte only) is closed once Options.PacketTimeout has passed,
// whatever its keep alive (none, or one longer than the bound), its end
// reported and counted as EndPacketTimeout. An MQTT 5 client is told
// DISCONNECT 0x8D first, as for a keep-alive timeout.
func TestPartialPacketTimesOut(t *testing.T) {
	partial := map[string][]byte{
		"header+10": append([]byte{0x30, 0xE8, 0x07, 0x00, 0x01, 't'}, make([]byte, 7)...),
		"1 byte":    {0x30},
	}
	for _, sc := range stallCases {
		for _, v := range versions {
			for pname, wire := range partial {
				for _, ka := range []uint16{0, 60} {
					t.Run(fmt.Sprintf("%s/%s/%s/ka%d", sc.name, v.name, pname, ka), func(t *testing.T) {
						h := &hooks{}
						srv, addr := start(t, Options{Hooks: h, PacketTimeout: stallBound, ParkIdle: sc.park})
						cp := connOf(v.v, "stall", true)
						cp.KeepAlive = ka
						cl, _ := mustConnect(t, addr, cp)
						cl.ping() // a whole packet first: the bound is per packet
						if sc.park > 0 && runtime.GOOS == "linux" {
							// Parked: the partial packet resumes it.
							eventually(t, "parked", func() bool { return srv.Stats().Parked == 1 })
						}
						begun := time.Now()
						if _, err := cl.c.Write(wire); err != nil {
							t.Fatal(err)
						}
						got := cl.closed()
						took := time.Since(begun)
						if took < stallBound*3/4 || took > stallBound+2*time.Second {
							t.Fatalf("closed %v after the partial packet, want about %v", took, stallBound)
						}
						if v.v == packet.V5 {
							if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.KeepAliveTimeout {
								t.Fatalf("got %v before the close, want DISCONNECT 0x8D", got)
							}
						} else if len(got) != 0 {
							t.Fatalf("got %v before the close, want nothing", got)
						}
						eventually(t, "the end reported", func() bool {
							l := h.log()
							return len(l) == 2 && l[1] == "end stall packet_timeout"
						})
						if n := srv.Stats().Ends[EndPacketTimeout]; n != 1 {
							t.Fatalf("Stats().Ends[EndPacketTimeout] = %d, want 1", n)
						}
						if rb := srv.Stats().ReadBuffers; rb != 0 {
							t.Fatalf("%d read buffers held after the close", rb)
						}
					})
				}
			}
		}
	}
}

// TestPartialPacketKeepAliveSooner: a keep-alive deadline sooner than
// Options.PacketTimeout still ends a packet begun, as before: at 1.5 × the
// keep alive, EndKeepAlive.
func TestPartialPacketKeepAliveSooner(t *testing.T) {
	h := &hooks{}
	srv, addr := start(t, Options{Hooks: h, PacketTimeout: time.Minute})
	cp := conn3("ka", true)
	cp.KeepAlive = 1
	cl, _ := mustConnect(t, addr, cp)
	begun := time.Now()
	if _, err := cl.c.Write([]byte{0x30, 0xE8, 0x07, 0x00}); err != nil {
		t.Fatal(err)
	}
	cl.closed()
	if took := time.Since(begun); took < time.Second || took > 3*time.Second {
		t.Fatalf("closed %v after the partial packet, want about 1.5 s", took)
	}
	eventually(t, "the end reported", func() bool {
		l := h.log()
		return len(l) == 2 && l[1] == "end ka keepalive"
	})
	if st := srv.Stats(); st.Ends[EndKeepAlive] != 1 || st.Ends[EndPacketTimeout] != 0 {
		t.Fatalf("ends %v, want one keepalive", st.Ends)
	}
}

// TestIdleNoKeepAliveStaysOpen: the control: a client without keep alive
// that sends nothing, or a packet in two parts within the bound and then
// nothing, is not closed however long it stays idle past
// Options.PacketTimeout (no keep alive is legitimate MQTT): it still
// answers PINGREQ, and no end is counted.
func TestIdleNoKeepAliveStaysOpen(t *testing.T) {
	pub := appendAll(t, packet.V311, &packet.Publish{Topic: "idle/t", Payload: make([]byte, 100)})
	for _, sc := range stallCases {
		for _, split := range []bool{false, true} {
			name := sc.name + "/idle"
			if split {
				name = sc.name + "/split"
			}
			t.Run(name, func(t *testing.T) {
				srv, addr := start(t, Options{PacketTimeout: stallBound, ParkIdle: sc.park})
				cp := conn3("idle", true)
				cp.KeepAlive = 0
				cl, _ := mustConnect(t, addr, cp)
				if split {
					if _, err := cl.c.Write(pub[:10]); err != nil {
						t.Fatal(err)
					}
					time.Sleep(stallBound / 3)
					if _, err := cl.c.Write(pub[10:]); err != nil {
						t.Fatal(err)
					}
				}
				cl.silent(3 * stallBound)
				cl.ping()
				if sc.park > 0 && runtime.GOOS == "linux" {
					// Parking idle connections still works.
					eventually(t, "parked", func() bool { return srv.Stats().Parked == 1 })
				}
				cl.silent(2 * stallBound)
				cl.ping()
				st := srv.Stats()
				if st.Connections != 1 || st.Ends[EndPacketTimeout] != 0 {
					t.Fatalf("connections %d, packet timeouts %d; want 1 and 0", st.Connections, st.Ends[EndPacketTimeout])
				}
				if st.Received != 2+boolInt(split) {
					t.Fatalf("received %d packets, want %d", st.Received, 2+boolInt(split))
				}
			})
		}
	}
}

func boolInt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
