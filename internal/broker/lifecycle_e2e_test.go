package broker_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/corral-iot/corral/internal/apptest"
)

// TestDeleteProductKicksAllItsDevices: deleting a product closes the
// session of every one of its devices within a second, leaves another
// product's device connected, and the deleted devices cannot come back.
func TestDeleteProductKicksAllItsDevices(t *testing.T) {
	s := apptest.Start(t)
	doomed := s.CreateProduct("doomed", nil)
	kept := s.CreateProduct("kept", nil)
	addr := "tcp://" + s.App.Broker().Addr("tcp")
	dial := func(d apptest.Device, lost chan<- string) paho.Client {
		cr := deviceCreds(d)
		o := paho.NewClientOptions().AddBroker(addr).SetClientID(cr.clientID).SetUsername(cr.username).SetPassword(cr.password).
			SetAutoReconnect(false).SetConnectionLostHandler(func(paho.Client, error) { lost <- d.DeviceName })
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(5 * time.Second) {
			t.Fatalf("%s: no CONNACK within 5 s", d.DeviceName)
		}
		if err := tok.Error(); err != nil {
			t.Fatalf("%s: CONNECT refused: %v", d.DeviceName, err)
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	lost := make(chan string, 10)
	var devs []apptest.Device
	for _, dn := range []string{"gone-1", "gone-2", "gone-3"} {
		d := s.CreateDevice(doomed.ProductKey, dn)
		devs = append(devs, d)
		dial(d, lost)
	}
	keptLost := make(chan string, 1)
	survivor := dial(s.CreateDevice(kept.ProductKey, "stays"), keptLost)

	s.Admin("DELETE", "/v1/products/"+doomed.ProductKey, nil, 204)
	deadline := time.After(time.Second + 500*time.Millisecond) // 1 s, and some slack for -race
	seen := map[string]bool{}
	for len(seen) < len(devs) {
		select {
		case dn := <-lost:
			seen[dn] = true
		case <-deadline:
			t.Fatalf("after deleting the product only %v lost their sessions", seen)
		}
	}
	select {
	case dn := <-keptLost:
		t.Fatalf("%s of another product lost its session", dn)
	default:
	}
	if !survivor.IsConnectionOpen() {
		t.Fatal("the other product's device was disconnected")
	}
	cr := deviceCreds(devs[0])
	c := paho.NewClient(paho.NewClientOptions().AddBroker(addr).SetClientID(cr.clientID).SetUsername(cr.username).SetPassword(cr.password).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("a device of the deleted product connected again")
	}
}
