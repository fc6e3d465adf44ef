// Package cache is corral's one in-memory cache: a bounded map whose
// entries expire after a time to live. Every cache of registry data (the
// broker's product settings and owners, provisioning's products and CAs,
// thing models) is one of these, so that a change event can drop an entry
// at once and the TTL only bounds how stale a change made on another node
// may be.
package cache

import (
	"sync"
	"time"
)

// Options configure a Cache.
type Options struct {
	// TTL is how long an entry lives; 0 keeps entries until they are
	// deleted, cleared or evicted.
	TTL time.Duration
	// MaxSize bounds the number of entries (default 100,000): setting a
	// new key in a full cache drops the expired entries among a few
	// sampled, else the oldest of them.
	MaxSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

type entry[V any] struct {
	v  V
	at time.Time
}

// Cache maps keys to values for a while. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	o   Options
	mu  sync.RWMutex
	m   map[K]entry[V]
	gen uint64 // bumped by Delete and Clear
}

// New returns an empty cache.
func New[K comparable, V any](o Options) *Cache[K, V] {
	if o.MaxSize <= 0 {
		o.MaxSize = 100000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache[K, V]{o: o, m: map[K]entry[V]{}}
}

func (c *Cache[K, V]) fresh(e entry[V], now time.Time) bool {
	return c.o.TTL <= 0 || now.Sub(e.at) < c.o.TTL
}

// Get returns the value of key, if it is there and has not expired.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !c.fresh(e, c.o.Now()) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Set stores the value of key.
func (c *Cache[K, V]) Set(key K, v V) {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(key, v, now)
}

func (c *Cache[K, V]) setLocked(key K, v V, now time.Time) {
	if _, ok := c.m[key]; !ok && len(c.m) >= c.o.MaxSize {
		c.evictLocked(now)
	}
	c.m[key] = entry[V]{v: v, at: now}
}

// evictSample is how many entries a full cache looks at to make room.
const evictSample = 16

// evictLocked makes room for one entry by sampling, as Redis does: of a
// few entries in the map's random iteration order, the expired ones go,
// else the oldest. A set into a full cache costs the same at 100 entries
// as at 100,000 (a walk of the whole map took a millisecond there).
func (c *Cache[K, V]) evictLocked(now time.Time) {
	var oldest K
	var oldestAt time.Time
	n, dropped := 0, false
	for k, e := range c.m {
		switch {
		case !c.fresh(e, now):
			delete(c.m, k)
			dropped = true
		case n == 0 || e.at.Before(oldestAt):
			oldest, oldestAt = k, e.at
		}
		if n++; n == evictSample {
			break
		}
	}
	if !dropped {
		delete(c.m, oldest)
	}
}

// GetOrLoad returns the value of key, loading and storing it on a miss.
// A value loaded while the key was deleted (or the cache cleared) is
// returned but not stored: it may predate the change that deleted it.
func (c *Cache[K, V]) GetOrLoad(key K, load func() (V, error)) (V, error) {
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	v, err := load()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.gen == gen {
		c.setLocked(key, v, c.o.Now())
	}
	c.mu.Unlock()
	return v, nil
}

// Delete drops key.
func (c *Cache[K, V]) Delete(key K) {
	c.mu.Lock()
	delete(c.m, key)
	c.gen++
	c.mu.Unlock()
}

// Clear drops every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	clear(c.m)
	c.gen++
	c.mu.Unlock()
}

// Len is the number of entries held, expired ones included until they are
// overwritten or evicted.
func (c *Cache[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
