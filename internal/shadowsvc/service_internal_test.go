package shadowsvc

import (
	"context"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
)

// Writers of one shadow wait for each other; writers of others do not;
// nothing is left once every lock is released.
func TestKeyLocks(t *testing.T) {
	var l keyLocks
	a, b := shadow.Key{ProductKey: "p", DeviceName: "d"}, shadow.Key{ProductKey: "p", DeviceName: "d", Name: "n"}
	unlockA := l.lock(a)
	done := make(chan struct{})
	go func() {
		l.lock(b)()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("another shadow's writer waited")
	}
	second := make(chan struct{})
	go func() {
		l.lock(a)()
		close(second)
	}()
	select {
	case <-second:
		t.Fatal("a second writer of the same shadow did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	unlockA()
	<-second
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) != 0 {
		t.Fatalf("%d locks left", len(l.m))
	}
}

// countingDevices is a registry of one device that counts its reads.
type countingDevices struct {
	Devices
	reads int
	dev   registry.Device
}

func (c *countingDevices) LookupDevice(_ context.Context, pk, dn string) (registry.Device, error) {
	c.reads++
	if pk != c.dev.ProductKey || dn != c.dev.DeviceName {
		return registry.Device{}, registry.ErrNotFound
	}
	return c.dev, nil
}

// What a presence event carries of its device is believed (no registry
// read), unless the device was deleted or renamed lately.
func TestKnowDevice(t *testing.T) {
	k := shadow.Key{ProductKey: "pk", DeviceName: "d"}
	carried := deviceInfo{AccountID: "acc", ThingName: "old-thing"}
	tests := []struct {
		name      string
		change    registry.DeviceEventKind // "" for none
		wantReads int
		wantThing string
	}{
		{"carried identity used", "", 0, "old-thing"},
		{"renamed: registry read", registry.DeviceRenamed, 1, "new-thing"},
		{"deleted: registry read", registry.DeviceDeleted, 1, "new-thing"},
		{"disabled: carried identity used", registry.DeviceDisabled, 0, "old-thing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devs := &countingDevices{dev: registry.Device{ProductKey: "pk", DeviceName: "d", AccountID: "acc", ThingName: "new-thing"}}
			s := New(Options{Devices: devs})
			if tt.change != "" {
				s.DeviceChanged(context.Background(), tt.change, devs.dev)
			}
			s.knowDevice(k.ProductKey, k.DeviceName, carried)
			d, err := s.device(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			if devs.reads != tt.wantReads || d.ThingName != tt.wantThing {
				t.Fatalf("device = %+v after %d reads; want %s after %d", d, devs.reads, tt.wantThing, tt.wantReads)
			}
		})
	}
}
