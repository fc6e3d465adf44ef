package shadowsvc

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
)

// The kept documents stay within their bound in bytes, and the parsed
// ones within theirs (a subset of the kept ones), whatever is set,
// replaced or deleted; what is kept is what was set last.
func TestDocCacheBound(t *testing.T) {
	key := func(i int) shadow.Key { return shadow.Key{ProductKey: "pk", DeviceName: fmt.Sprintf("d%04d", i)} }
	doc := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	one := entrySize(key(0), doc(100))
	tests := []struct {
		name     string
		max      int
		sets     int // keys 0..sets-1, each a 100-byte document
		replace  []byte
		del      int // deletes keys 0..del-1 after the sets
		wantLen  int
		wantKept bool // key sets-1 is kept with its document
	}{
		{"all fit", 10 * one, 10, nil, 0, 10, true},
		{"full: the newest kept", 10 * one, 25, nil, 0, 10, true},
		{"replaced in place", 10 * one, 10, bytes.Repeat([]byte("y"), 100), 0, 10, true},
		{"replaced by a larger one: room made", 10 * one, 10, doc(150), 0, 9, true},
		{"a document larger than the cache", one - 1, 3, nil, 0, 0, false},
		{"deleted", 10 * one, 10, nil, 4, 6, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const maxParsed = 4
			c := newDocCache(tt.max, maxParsed)
			for i := range tt.sets {
				c.set(key(i), doc(100), shadow.Document{Version: int64(i)})
			}
			last, lastVersion := doc(100), int64(tt.sets-1)
			if tt.replace != nil {
				last, lastVersion = tt.replace, 99
				c.set(key(tt.sets-1), last, shadow.Document{Version: lastVersion})
			}
			for i := range tt.del {
				c.delete(key(i))
			}
			sum := 0
			for k, b := range c.m {
				sum += entrySize(k, b)
			}
			if sum != c.bytes || c.bytes > tt.max {
				t.Fatalf("bytes %d, counted %d, bound %d", c.bytes, sum, tt.max)
			}
			if len(c.m) != tt.wantLen {
				t.Fatalf("%d entries, want %d", len(c.m), tt.wantLen)
			}
			if len(c.parsed) > maxParsed {
				t.Fatalf("%d parsed, bound %d", len(c.parsed), maxParsed)
			}
			for k := range c.parsed {
				if _, ok := c.m[k]; !ok {
					t.Fatalf("%v parsed but not kept", k)
				}
			}
			b, d, parsed, ok := c.get(key(tt.sets - 1))
			if ok != tt.wantKept || (ok && !bytes.Equal(b, last)) || parsed != tt.wantKept || (parsed && d.Version != lastVersion) {
				t.Fatalf("last key kept %v (%d bytes), parsed %v (version %d), want %v", ok, len(b), parsed, d.Version, tt.wantKept)
			}
		})
	}
}

// memStore is a shadow.Store in memory that counts its reads (history is
// not kept).
type memStore struct {
	shadow.Store
	mu    sync.Mutex
	m     map[shadow.Key]shadow.Stored
	reads int
}

func (s *memStore) GetShadow(_ context.Context, k shadow.Key) (shadow.Stored, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	st, ok := s.m[k]
	if !ok {
		return shadow.Stored{}, shadow.ErrNoShadow
	}
	return st, nil
}

func (s *memStore) PutShadow(_ context.Context, k shadow.Key, prev int64, st shadow.Stored, _ int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.m[k]; cur.Version != prev {
		return shadow.ErrStale
	}
	s.m[k] = st
	return nil
}

// anyDevice is a registry in which every device exists.
type anyDevice struct{ Devices }

func (anyDevice) LookupDeviceOwner(_ context.Context, pk, dn string) (registry.Device, error) {
	return registry.Device{ProductKey: pk, DeviceName: dn, AccountID: "acc", ThingName: pk + "." + dn}, nil
}

// The issue 11 figure's load: 10,000 devices, each connected (presence
// written) and then updating its classic shadow in turn, as the MQTT
// benchmark does. Once each shadow was written here, no write reads it
// from the store again: what is kept of 10,000 documents fits the bound.
func TestDocCacheTenThousandDevices(t *testing.T) {
	const devices = 10000
	st := &memStore{m: map[shadow.Key]shadow.Stored{}}
	s := New(Options{Store: st, Devices: anyDevice{}})
	ctx := context.Background()
	key := func(i int) shadow.Key {
		return shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: fmt.Sprintf("device-%05d", i)}
	}
	for i := range devices {
		if err := s.SetConnected(ctx, key(i).ProductKey, key(i).DeviceName, true, "", time.Unix(1_800_000_000, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 2 {
		st.reads = 0
		for i := range devices {
			req := fmt.Appendf(nil, `{"state":{"reported":{"temp":%d,"seq":%d,"mode":"eco"}},"clientToken":"b%d"}`, 20+i%10, round*devices+i, i)
			if _, err := s.UpdateAWS(ctx, key(i), req, Origin{Source: "aws", FromDevice: true}); err != nil {
				t.Fatal(err)
			}
		}
		if st.reads != 0 {
			t.Fatalf("round %d: %d of %d updates read the store (%d bytes kept in %d entries)", round, st.reads, devices, s.docs.bytes, len(s.docs.m))
		}
	}
	t.Logf("%d bytes kept for %d shadows, %d parsed", s.docs.bytes, len(s.docs.m), len(s.docs.parsed))
}
