package shadowsvc

import (
	"context"
	"errors"
	"sync"
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
	unlockA := l.lock(a).unlock
	done := make(chan struct{})
	go func() {
		l.lock(b).unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("another shadow's writer waited")
	}
	second := make(chan struct{})
	go func() {
		l.lock(a).unlock()
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

// Entries dropped and taken again still keep each shadow's writers one at
// a time (under -race, the unguarded counts say so), and an uncontended
// lock costs no allocation once the map has room.
func TestKeyLocksReused(t *testing.T) {
	var l keyLocks
	keys := []shadow.Key{{ProductKey: "p", DeviceName: "a"}, {ProductKey: "p", DeviceName: "b"}, {ProductKey: "p", DeviceName: "c"}}
	counts := make([]int, len(keys))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				j := (g + i) % len(keys)
				h := l.lock(keys[j])
				counts[j]++
				h.unlock()
			}
		}()
	}
	wg.Wait()
	if total := counts[0] + counts[1] + counts[2]; total != 8*500 {
		t.Fatalf("counts %v: %d writes, want %d", counts, total, 8*500)
	}
	if len(l.m) != 0 || len(l.free) > maxFreeLocks {
		t.Fatalf("%d locks left, %d free", len(l.m), len(l.free))
	}
	if n := testing.AllocsPerRun(100, func() { l.lock(keys[0]).unlock() }); n != 0 {
		t.Fatalf("a lock and unlock allocated %v times", n)
	}
}

// countingDevices is a registry of one device that counts its reads.
type countingDevices struct {
	Devices
	reads int
	dev   registry.Device
}

func (c *countingDevices) LookupDeviceOwner(_ context.Context, pk, dn string) (registry.Device, error) {
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

// countingThings resolves explicit thing names, counting its reads.
type countingThings struct {
	Things
	reads int
	dev   registry.Device
}

func (c *countingThings) LookupThing(_ context.Context, name string) (registry.Device, error) {
	c.reads++
	if name != c.dev.ThingName {
		return registry.Device{}, registry.ErrNotFound
	}
	return c.dev, nil
}

// A default thing name is resolved from the Service's devices, refused
// once the device was renamed; an explicit one is looked up.
func TestDeviceOfThing(t *testing.T) {
	tests := []struct {
		name        string
		thingName   string // the device's
		thing       string // resolved
		wantErr     bool
		wantLookups int // of the thing name
	}{
		{"default name", "pk.d.1", "pk.d.1", false, 0},
		{"default name of a renamed device", "explicit", "pk.d.1", true, 0},
		{"explicit name", "explicit", "explicit", false, 1},
		{"no such device", "pk.d.1", "pk.other", true, 0},
		{"no such explicit name", "explicit", "other", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := registry.Device{ProductKey: "pk", DeviceName: "d.1", AccountID: "acc", ThingName: tt.thingName}
			svc := New(Options{Devices: &countingDevices{dev: dev}})
			things := &countingThings{dev: dev}
			m := NewMQTT(MQTTOptions{Service: svc, Things: things})
			ref, err := m.deviceOfThing(context.Background(), tt.thing)
			if (err != nil) != tt.wantErr || things.reads != tt.wantLookups {
				t.Fatalf("err %v after %d lookups; want error %v after %d", err, things.reads, tt.wantErr, tt.wantLookups)
			}
			if err != nil && !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("err %v, want registry.ErrNotFound", err)
			}
			if err == nil && ref != (deviceRef{"pk", "d.1"}) {
				t.Fatalf("resolved %+v", ref)
			}
		})
	}
}
