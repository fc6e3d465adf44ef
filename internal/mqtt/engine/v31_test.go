package engine

import (
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/packet"
)

// TestMQTT31: an MQTT 3.1 CONNECT (MQIsdp, level 3) is served as 3.1.1
// with AcceptMQTT31 and refused with CONNACK 0x01 without it; "MQTT" at
// level 3 is refused either way.
func TestMQTT31(t *testing.T) {
	mqisdpConnect := []byte{0x10, 14, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 60, 0, 0}
	mqttLevel3 := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 3, 2, 0, 60, 0, 0}
	for _, tt := range []struct {
		name   string
		accept bool
		b      []byte
		want   packet.ReasonCode
	}{
		{"3.1 accepted", true, mqisdpConnect, 0},
		{"3.1 refused", false, mqisdpConnect, 1},
		{"MQTT level 3 refused", true, mqttLevel3, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := start(t, Options{AcceptMQTT31: tt.accept})
			c := dialRaw(t, addr, packet.V311)
			if _, err := c.c.Write(tt.b); err != nil {
				t.Fatal(err)
			}
			if ack, ok := c.recv().(*packet.Connack); !ok || ack.ReasonCode != tt.want {
				t.Fatalf("got %+v, want CONNACK %d", ack, tt.want)
			}
			if tt.want != 0 {
				return
			}
			c.send(&packet.Pingreq{})
			if _, ok := c.recv().(*packet.Pingresp); !ok {
				t.Fatal("no PINGRESP on the 3.1 session")
			}
		})
	}
}
