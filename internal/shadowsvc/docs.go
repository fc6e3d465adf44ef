package shadowsvc

import (
	"sync"

	"github.com/corral-iot/corral/internal/shadow"
)

// docCache holds the stored form of the documents this node last wrote,
// so that a shadow's next write neither reads it from the store nor waits
// for that read (it parses the bytes it kept). It is bounded in bytes,
// not entries: a stored document is a few hundred bytes where a parsed
// one was about a kilobyte, so the shadows of 10,000 devices updating in
// turn fit in a few MiB. A full cache drops entries at random (the map's
// iteration order): a round-robin over more shadows than fit then still
// hits in proportion to what fits, where dropping the oldest would miss
// every time. No time to live: another node's write is caught by the
// store's version check or ApplyAWS's, and the entry is read again.
//
// The documents of the last few shadows written are also kept parsed
// (docCacheParsed of them, a few hundred KB): when few devices update
// often, their writes do not parse either.
type docCache struct {
	max, maxParsed int

	mu     sync.Mutex
	m      map[shadow.Key][]byte
	bytes  int
	parsed map[shadow.Key]shadow.Document // keys of m, the document of their bytes
}

// docCacheBytes bounds the documents kept for their shadows' next write,
// as entrySize counts them: the 10,000 devices of the issue 11 figure
// (about 380 B each) fit. Measured heap with 19,000 devices' presence
// documents (16,710 kept, 256 parsed): 5.7 MB, against 6.1 MB for the
// 4,096 parsed documents the cache held before it was bounded in bytes.
const docCacheBytes = 4 << 20

// docCacheParsed bounds the documents kept parsed.
const docCacheParsed = 256

// docEntryOverhead is what an entry costs beside its document and its
// key's strings: the map's slot (key and slice headers) and its share
// of the table's free space.
const docEntryOverhead = 112

func newDocCache(maxBytes, maxParsed int) *docCache {
	return &docCache{max: maxBytes, maxParsed: maxParsed, m: map[shadow.Key][]byte{}, parsed: map[shadow.Key]shadow.Document{}}
}

func entrySize(k shadow.Key, b []byte) int {
	return len(b) + len(k.ProductKey) + len(k.DeviceName) + len(k.Name) + docEntryOverhead
}

// get returns the stored form kept for k and, when it is kept parsed
// too (parsed), its document.
func (c *docCache) get(k shadow.Key) (b []byte, doc shadow.Document, parsed, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok = c.m[k]
	doc, parsed = c.parsed[k]
	return b, doc, parsed, ok
}

// set keeps b, k's document doc just stored, making room as needed (at
// random); a document larger than the whole cache is not kept.
func (c *docCache) set(k shadow.Key, b []byte, doc shadow.Document) {
	c.keep(k, b, &doc)
}

// setStored keeps b, k's document just stored, not parsed: its next write
// parses it, or merges into it (shadow.ApplyAWSStored).
func (c *docCache) setStored(k shadow.Key, b []byte) {
	c.keep(k, b, nil)
}

// keep is set, doc nil when not parsed.
func (c *docCache) keep(k shadow.Key, b []byte, doc *shadow.Document) {
	n := entrySize(k, b)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked(k)
	if n > c.max {
		return
	}
	for kk := range c.m {
		if c.bytes+n <= c.max {
			break
		}
		c.deleteLocked(kk)
	}
	c.m[k] = b
	c.bytes += n
	if doc == nil || c.maxParsed <= 0 {
		return
	}
	for kk := range c.parsed {
		if len(c.parsed) < c.maxParsed {
			break
		}
		delete(c.parsed, kk)
	}
	c.parsed[k] = *doc
}

// delete drops k's entry.
func (c *docCache) delete(k shadow.Key) {
	c.mu.Lock()
	c.deleteLocked(k)
	c.mu.Unlock()
}

func (c *docCache) deleteLocked(k shadow.Key) {
	if b, ok := c.m[k]; ok {
		c.bytes -= entrySize(k, b)
		delete(c.m, k)
		delete(c.parsed, k)
	}
}
