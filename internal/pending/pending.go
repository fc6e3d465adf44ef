// Package pending is the in-memory knowledge of which devices have
// something waiting for them (desired property values not yet
// acknowledged, a shadow delta), so that a session start of a device with
// nothing waiting reads nothing.
//
// An Index answers "maybe" until it is loaded from the store, and is kept
// true afterwards by the writes of this process: each goes through Update,
// which serialises the writes of one device and records what the write
// left. It only ever errs towards "maybe" (a failed write, a device
// deleted with something waiting), which costs a read. A cluster, where
// other nodes write too, replaces it behind the same two questions (Maybe,
// Update) with one kept by the shared store or its change feed.
package pending

import (
	"hash/maphash"
	"sync"
)

// Key names a device: its ProductKey and DeviceName.
type Key [2]string

// stripes is how many locks the writes of different devices share.
const stripes = 64

// Index is a set of devices that may have something waiting. The zero
// value is not usable; call New.
type Index struct {
	seed  maphash.Seed
	locks [stripes]sync.Mutex // a device's writes, in order; all of them to load

	mu     sync.RWMutex // guards loaded and m; never held while writing
	loaded bool
	m      map[Key]struct{}
}

// New returns an index that answers "maybe" for every device until Load.
func New() *Index {
	return &Index{seed: maphash.MakeSeed(), m: map[Key]struct{}{}}
}

// Loaded says whether Load has succeeded.
func (x *Index) Loaded() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.loaded
}

// Maybe reports whether k may have something waiting: false only when the
// index is loaded and knows it has nothing.
func (x *Index) Maybe(k Key) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.loaded {
		return true
	}
	_, ok := x.m[k]
	return ok
}

// Len is the number of devices known to have something waiting.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.m)
}

func (x *Index) lock(k Key) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(x.seed)
	h.WriteString(k[0])
	h.WriteByte('/')
	h.WriteString(k[1])
	return &x.locks[h.Sum64()%stripes]
}

// Update runs write, a store write of k's waiting things that says
// whether k has something waiting after it, and records the answer. The
// writes of one device are serialised here, so the index follows them in
// commit order. A failed write may or may not have been committed: k is
// then taken to have something waiting.
func (x *Index) Update(k Key, write func() (waiting bool, err error)) error {
	l := x.lock(k)
	l.Lock()
	defer l.Unlock()
	waiting, err := write()
	x.mu.Lock()
	if err != nil || waiting {
		x.m[k] = struct{}{}
	} else {
		delete(x.m, k)
	}
	x.mu.Unlock()
	return err
}

// Load fills the index from the store: list calls add for every device
// with something waiting. Writes wait while it runs, so none is missed;
// a failed load leaves the index answering "maybe".
func (x *Index) Load(list func(add func(Key)) error) error {
	for i := range x.locks {
		x.locks[i].Lock()
	}
	defer func() {
		for i := range x.locks {
			x.locks[i].Unlock()
		}
	}()
	m := map[Key]struct{}{}
	if err := list(func(k Key) { m[k] = struct{}{} }); err != nil {
		return err
	}
	x.mu.Lock()
	// Devices marked by failed writes before the load stay marked.
	for k := range x.m {
		m[k] = struct{}{}
	}
	x.m, x.loaded = m, true
	x.mu.Unlock()
	return nil
}
