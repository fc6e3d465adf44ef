// Package sink counts the messages a benchmark's subscriber receives and
// waits for the last of them, so that a rate is timed to the last delivery
// rather than to whenever the waiting noticed it.
package sink

import (
	"sync/atomic"
	"time"
)

// Counter counts deliveries toward an expected number.
type Counter struct {
	want  int64
	start time.Time
	n     atomic.Int64
	last  atomic.Int64 // UnixNano of the latest delivery
	full  chan struct{}
}

// New returns a Counter expecting want deliveries, started now.
func New(want int64) *Counter {
	c := &Counter{want: want, start: time.Now(), full: make(chan struct{})}
	c.last.Store(c.start.UnixNano())
	return c
}

// Add records one delivery; it is safe to call from many goroutines.
func (c *Counter) Add() {
	now := time.Now().UnixNano()
	for {
		l := c.last.Load()
		if l >= now || c.last.CompareAndSwap(l, now) {
			break
		}
	}
	if c.n.Add(1) == c.want {
		close(c.full)
	}
}

// N is the number delivered so far.
func (c *Counter) N() int64 { return c.n.Load() }

// Wait returns when every expected message has arrived, or when none has
// arrived for quiet (the rest are lost), with the count and the time from
// New to the last delivery.
func (c *Counter) Wait(quiet time.Duration) (n int64, elapsed time.Duration) {
	for {
		idle := time.Until(time.Unix(0, c.last.Load()).Add(quiet))
		if idle <= 0 {
			break
		}
		t := time.NewTimer(idle)
		select {
		case <-c.full:
			t.Stop()
			return c.n.Load(), time.Duration(c.last.Load() - c.start.UnixNano())
		case <-t.C: // a delivery since may have moved the deadline on
		}
	}
	return c.n.Load(), time.Duration(c.last.Load() - c.start.UnixNano())
}
