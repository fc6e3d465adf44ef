package gateway

import (
	"sync"
	"time"
)

// Discovered sub-devices (thing.list.found) are kept in memory on the node
// that heard them, bounded: at most MaxFoundPerGateway per gateway (the
// oldest give way) and MaxFoundGateways gateways (the one reported least
// recently gives way). A restart forgets them; gateways report again.
const (
	MaxFoundPerGateway = 200
	MaxFoundGateways   = 10000
)

// FoundDevice is a sub-device a gateway reported it discovered.
type FoundDevice struct {
	ProductKey string    `json:"productKey"`
	DeviceName string    `json:"deviceName"`
	FoundAt    time.Time `json:"foundAt"`
}

// foundStore holds the found lists by gateway key.
type foundStore struct {
	mu   sync.Mutex
	gws  map[string][]FoundDevice
	last map[string]time.Time
}

func newFoundStore() *foundStore {
	return &foundStore{gws: map[string][]FoundDevice{}, last: map[string]time.Time{}}
}

// add records ids for gw; one already listed moves to the end with the
// new time.
func (f *foundStore) add(gw string, ids []ident, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.gws[gw]; !ok && len(f.gws) >= MaxFoundGateways {
		f.evictOldest()
	}
	cur := f.gws[gw]
	for _, id := range ids {
		cur = without(cur, id)
		cur = append(cur, FoundDevice{ProductKey: id.ProductKey, DeviceName: id.DeviceName, FoundAt: at.UTC()})
	}
	if len(cur) > MaxFoundPerGateway {
		cur = append([]FoundDevice(nil), cur[len(cur)-MaxFoundPerGateway:]...)
	}
	f.gws[gw], f.last[gw] = cur, at
}

// evictOldest drops the gateway reported least recently; f.mu held.
func (f *foundStore) evictOldest() {
	var oldest string
	for k, t := range f.last {
		if oldest == "" || t.Before(f.last[oldest]) {
			oldest = k
		}
	}
	delete(f.gws, oldest)
	delete(f.last, oldest)
}

func without(ds []FoundDevice, id ident) []FoundDevice {
	out := ds[:0:0]
	for _, d := range ds {
		if d.ProductKey != id.ProductKey || d.DeviceName != id.DeviceName {
			out = append(out, d)
		}
	}
	return out
}

func (f *foundStore) list(gw string) []FoundDevice {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FoundDevice{}, f.gws[gw]...)
}

func (f *foundStore) has(gw string, id ident) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.gws[gw] {
		if d.ProductKey == id.ProductKey && d.DeviceName == id.DeviceName {
			return true
		}
	}
	return false
}

func (f *foundStore) remove(gw string, ids []ident) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.gws[gw]
	for _, id := range ids {
		cur = without(cur, id)
	}
	if len(cur) == 0 {
		delete(f.gws, gw)
		delete(f.last, gw)
		return
	}
	f.gws[gw] = cur
}

// forget drops a deleted gateway's list.
func (f *foundStore) forget(gw string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.gws, gw)
	delete(f.last, gw)
}
