package sqlite

import (
	"context"
	"fmt"
	"sync"

	"github.com/corral-iot/corral/internal/registry"
)

// The devices' auth rows (GetDeviceAuth: what authenticating a CONNECT
// reads) are kept in memory, as Mosquitto keeps its password file: a
// reader connection's page cache is emptied whenever the writer has
// committed since its last read, so under load every CONNECT's point read
// fetched the devices B-tree's pages again (≈ a fifth of a CONNECT's
// server CPU at 100,000 devices; bench/RESULTS.md). The store owns the
// devices table — every write to it goes through this Store, in this
// process — so it keeps the cache true itself: each write that can change
// an auth row forgets (or, for creations and presence, sets) the rows it
// wrote once it has committed, and a row read from the database is cached
// only if no write to devices began or ended while it was read (so a read
// of a snapshot older than a write never outlives it). The cache is bounded
// in bytes; rows beyond the bound are read from the database as before.
// Stores of other kinds (the PostgreSQL adapter to come) share their
// database between nodes and must not copy this as is.

// DefaultAuthCacheBytes bounds the auth rows kept (Options.AuthCacheBytes):
// about 150,000 devices.
const DefaultAuthCacheBytes = 32 << 20

// authRowOverhead estimates what a cached row costs beyond its strings'
// bytes: the map's slot (key and value), its share of the table's spare
// slots, and the allocations' headers.
const authRowOverhead = 176

type authKey struct{ pk, dn string }

// authRow is a device's auth columns; thing is its explicit thing name
// ("" for the default).
type authRow struct {
	account, thing, to string
	status             registry.Status
	sealed             []byte
}

func (r authRow) bytes(k authKey) int {
	return authRowOverhead + len(k.dn) + len(r.thing) + len(r.to) + len(r.sealed)
}

// authCache holds auth rows under mu.
type authCache struct {
	mu   sync.Mutex
	rows map[authKey]authRow
	size int // bytes held, by authRow.bytes
	max  int // 0: nothing is cached
	// seq counts the beginnings and ends of writes to devices; writing is
	// how many are under way. A read marks seq before it reads and caches
	// its row only if seq has not moved and nothing was being written.
	seq     uint64
	writing int
	// interned product keys, accounts and statuses: a few values shared by
	// many rows.
	strs map[string]string
}

func newAuthCache(max int) *authCache {
	return &authCache{rows: map[authKey]authRow{}, max: max, strs: map[string]string{}}
}

// intern returns the cache's copy of s; mu is held.
func (c *authCache) intern(s string) string {
	if v, ok := c.strs[s]; ok {
		return v
	}
	if len(c.strs) >= 1<<16 { // many distinct values: interning stops paying
		return s
	}
	c.strs[s] = s
	return s
}

// get returns a cached row.
func (c *authCache) get(pk, dn string) (authRow, bool) {
	c.mu.Lock()
	r, ok := c.rows[authKey{pk, dn}]
	c.mu.Unlock()
	return r, ok
}

// mark is taken before a database read whose row fill may cache.
func (c *authCache) mark() (seq uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.writing == 0 && c.max > 0
}

// fill caches a row read after mark returned seq, unless a write to
// devices began or ended since.
func (c *authCache) fill(pk, dn string, r authRow, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq == seq && c.writing == 0 {
		c.put(pk, dn, r)
	}
}

// put caches a row, evicting others while over the bound; mu is held.
func (c *authCache) put(pk, dn string, r authRow) {
	if c.max <= 0 {
		return
	}
	k := authKey{c.intern(pk), dn}
	r.account, r.status = c.intern(r.account), registry.Status(c.intern(string(r.status)))
	if old, ok := c.rows[k]; ok {
		c.size -= old.bytes(k)
	}
	n := r.bytes(k)
	if n > c.max {
		delete(c.rows, k)
		return
	}
	for ek, er := range c.rows { // map order: an arbitrary row goes
		if c.size+n <= c.max {
			break
		}
		if ek != k {
			delete(c.rows, ek)
			c.size -= er.bytes(ek)
		}
	}
	c.rows[k] = r
	c.size += n
}

// forget drops a row; mu is held.
func (c *authCache) forget(pk, dn string) {
	k := authKey{pk, dn}
	if r, ok := c.rows[k]; ok {
		delete(c.rows, k)
		c.size -= r.bytes(k)
	}
}

// restatus sets a cached row's status to next(its status); mu is held.
func (c *authCache) restatus(pk, dn string, next func(registry.Status) registry.Status) {
	k := authKey{pk, dn}
	if r, ok := c.rows[k]; ok {
		r.status = next(r.status)
		c.rows[k] = r
	}
}

// each applies fn to every row (fn returns false to drop it); mu is held.
func (c *authCache) each(fn func(authKey, *authRow) bool) {
	for k, r := range c.rows {
		if !fn(k, &r) {
			delete(c.rows, k)
			c.size -= r.bytes(k)
			continue
		}
		c.rows[k] = r
	}
}

// begin marks a write to devices under way; end, called once it has
// returned whatever its outcome, applies what it changed to the cache
// (fn, under mu; nil changes nothing) and unmarks it. begin returns the
// seq after its own mark: a write that finds it unchanged at end, and no
// other under way, ran alone.
func (c *authCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.writing++
	return c.seq
}

func (c *authCache) end(fn func(c *authCache, alone bool), began uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fn != nil {
		fn(c, c.seq == began && c.writing == 1)
	}
	c.seq++
	c.writing--
}

// forgetting is an end that forgets one device's row.
func forgetting(pk, dn string) func(*authCache, bool) {
	return func(c *authCache, _ bool) { c.forget(pk, dn) }
}

// Presence's status changes, as ApplyPresence's and ResetPresence's
// statements make them (TestAuthCachePresenceMatchesSQL holds them to it).
func presenceOn(st registry.Status) registry.Status {
	if st == registry.StatusDisabled {
		return st
	}
	return registry.StatusOnline
}

func presenceOff(st registry.Status) registry.Status {
	if st == registry.StatusOnline {
		return registry.StatusOffline
	}
	return st
}

func presenceBrief(st registry.Status) registry.Status {
	if st == registry.StatusOnline || st == registry.StatusInactive {
		return registry.StatusOffline
	}
	return st
}

// device is the registry.Device GetDeviceAuth returns for a cached row.
func (r authRow) device(pk, dn string) registry.Device {
	d := registry.Device{ProductKey: pk, DeviceName: dn, AccountID: r.account, Status: r.status, DistributedTo: r.to}
	d.SealedSecret = append([]byte(nil), r.sealed...)
	d.ThingName = r.thing
	if d.ThingName == "" {
		d.ThingName = registry.DefaultThingName(pk, dn)
	}
	return d
}

// warmAuth reads auth rows into the cache until it is full (Open, before
// any write).
func (s *Store) warmAuth(ctx context.Context) error {
	if s.auth.max <= 0 {
		return nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT product_key, device_name, account_id, status, secret, COALESCE(thing_name, ''), distributed_to FROM devices`)
	if err != nil {
		return fmt.Errorf("reading devices' auth rows: %w", err)
	}
	defer rows.Close()
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	for rows.Next() {
		var pk, dn string
		var r authRow
		if err := rows.Scan(&pk, &dn, &r.account, &r.status, &r.sealed, &r.thing, &r.to); err != nil {
			return fmt.Errorf("reading devices' auth rows: %w", err)
		}
		if s.auth.size+r.bytes(authKey{pk, dn}) > s.auth.max {
			break
		}
		s.auth.put(pk, dn, r)
	}
	return rows.Err()
}
