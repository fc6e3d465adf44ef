package distribution

import (
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-iot/corral/bench/internal/mqttload"
	"github.com/corral-iot/corral/internal/mqtttest"
)

// onlineDevices are raw MQTT clients connected to a corral that answer
// thing.bootstrap.notify on notify_reply as the Link SDK does, then wait
// to be forced off.
type onlineDevices struct {
	wg              sync.WaitGroup
	conns           []net.Conn
	replied, kicked atomic.Int64
}

// connectOnline connects each device (pk, name, secret) to addr and
// subscribes it to its notify topic.
func connectOnline(tb testing.TB, addr string, devs [][3]string) *onlineDevices {
	tb.Helper()
	mqttload.RaiseFileLimit(uint64(4*len(devs) + 1024))
	o := &onlineDevices{conns: make([]net.Conn, len(devs))}
	failed := mqttload.Spread(len(devs), 16, func(i int) error {
		d := devs[i]
		c, err := mqttload.Connect(addr, mqttload.DeviceCreds(d[0], d[1], d[2]), 0)
		if err != nil {
			return err
		}
		topic := "/sys/" + d[0] + "/" + d[1] + "/thing/bootstrap/notify"
		body := append([]byte{0, 1}, append(mqtttest.Str(topic), 0)...)
		c.SetDeadline(time.Now().Add(mqtttest.Timeout))
		if _, err := c.Write(mqtttest.Packet(0x82, body)); err != nil {
			c.Close()
			return err
		}
		if typ, _, err := mqtttest.ReadPacket(c); err != nil || typ != 0x90 {
			c.Close()
			return err
		}
		c.SetDeadline(time.Time{})
		o.conns[i] = c
		return nil
	})
	if failed > 0 {
		o.close()
		tb.Fatalf("%d of %d devices did not connect", failed, len(devs))
	}
	for i, c := range o.conns {
		o.wg.Add(1)
		go o.serve(c, devs[i][0], devs[i][1])
	}
	return o
}

// serve answers notifies until the server closes the connection.
func (o *onlineDevices) serve(c net.Conn, pk, dn string) {
	defer o.wg.Done()
	for {
		typ, body, err := mqtttest.ReadPacket(c)
		if err != nil {
			o.kicked.Add(1)
			c.Close()
			return
		}
		if typ&0xF0 != 0x30 || len(body) < 2 {
			continue
		}
		tl := int(body[0])<<8 | int(body[1])
		if len(body) < 2+tl {
			continue
		}
		payload := body[2+tl:]
		if typ&0x06 != 0 { // QoS 1 or 2: a packet id before the payload
			payload = payload[2:]
		}
		var req struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(payload, &req) != nil {
			continue
		}
		reply, _ := json.Marshal(map[string]any{"id": req.ID, "code": 200, "data": map[string]any{}})
		if _, err := c.Write(mqtttest.Packet(0x30, append(mqtttest.Str("/sys/"+pk+"/"+dn+"/thing/bootstrap/notify_reply"), reply...))); err == nil {
			o.replied.Add(1)
		}
	}
}

// waitOff waits until every device is forced off (or within passes).
func (o *onlineDevices) waitOff(within time.Duration) bool {
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(within):
		o.close()
		<-done
		return false
	}
}

func (o *onlineDevices) close() {
	for _, c := range o.conns {
		if c != nil {
			c.Close()
		}
	}
}
