package cache

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestExpiry(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[string, int](Options{TTL: 5 * time.Second, Now: clk.now})
	c.Set("a", 1)
	for _, tt := range []struct {
		after time.Duration
		want  bool
	}{{0, true}, {4 * time.Second, true}, {time.Second, false}} {
		clk.add(tt.after)
		if v, ok := c.Get("a"); ok != tt.want || (ok && v != 1) {
			t.Fatalf("after +%v: got %d %v, want present=%v", tt.after, v, ok, tt.want)
		}
	}
	c.Set("a", 2) // refreshes
	if v, ok := c.Get("a"); !ok || v != 2 {
		t.Fatalf("after Set: %d %v", v, ok)
	}
}

func TestNoTTLKeepsEntries(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[string, string](Options{Now: clk.now})
	c.Set("k", "v")
	clk.add(1000 * time.Hour)
	if v, ok := c.Get("k"); !ok || v != "v" {
		t.Fatalf("got %q %v", v, ok)
	}
}

func TestDeleteAndClear(t *testing.T) {
	c := New[int, int](Options{TTL: time.Hour})
	for i := range 10 {
		c.Set(i, i)
	}
	c.Delete(3)
	if _, ok := c.Get(3); ok {
		t.Fatal("deleted key still there")
	}
	if _, ok := c.Get(4); !ok {
		t.Fatal("other key gone")
	}
	c.Clear()
	if c.Len() != 0 {
		t.Fatalf("after Clear: %d entries", c.Len())
	}
}

func TestMaxSize(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[int, int](Options{TTL: time.Minute, MaxSize: 4, Now: clk.now})
	c.Set(1, 1)
	c.Set(2, 2)
	clk.add(2 * time.Minute) // 1 and 2 expire
	c.Set(3, 3)
	c.Set(4, 4)
	c.Set(5, 5) // full: the expired ones go first
	if c.Len() != 3 {
		t.Fatalf("want the 2 expired entries evicted, have %d", c.Len())
	}
	for _, k := range []int{3, 4, 5} {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("fresh key %d evicted", k)
		}
	}
	for i := 6; i < 20; i++ {
		c.Set(i, i)
		if c.Len() > 4 {
			t.Fatalf("size %d above the maximum", c.Len())
		}
		if _, ok := c.Get(i); !ok {
			t.Fatalf("key %d just set is missing", i)
		}
	}
	c.Set(19, 0) // overwriting a present key evicts nothing
	if c.Len() != 4 {
		t.Fatalf("overwrite changed the size to %d", c.Len())
	}
}

func TestGetOrLoad(t *testing.T) {
	c := New[string, int](Options{TTL: time.Minute})
	loads := 0
	load := func(v int) func() (int, error) {
		return func() (int, error) { loads++; return v, nil }
	}
	if v, err := c.GetOrLoad("k", load(1)); v != 1 || err != nil {
		t.Fatalf("first: %d %v", v, err)
	}
	if v, _ := c.GetOrLoad("k", load(2)); v != 1 || loads != 1 {
		t.Fatalf("second: %d after %d loads, want the stored 1", v, loads)
	}
	// An error is returned and nothing stored.
	if _, err := c.GetOrLoad("e", func() (int, error) { return 0, errors.New("down") }); err == nil {
		t.Fatal("no error")
	}
	if _, ok := c.Get("e"); ok {
		t.Fatal("a failed load was stored")
	}
	// A value loaded while the key was deleted may be stale: not stored.
	c.Delete("k")
	v, _ := c.GetOrLoad("k", func() (int, error) { c.Delete("k"); return 3, nil })
	if _, ok := c.Get("k"); v != 3 || ok {
		t.Fatalf("value loaded across a Delete: got %d, stored %v", v, ok)
	}
	v, _ = c.GetOrLoad("k", func() (int, error) { c.Clear(); return 4, nil })
	if _, ok := c.Get("k"); v != 4 || ok {
		t.Fatalf("value loaded across a Clear: got %d, stored %v", v, ok)
	}
	if v, _ := c.GetOrLoad("k", load(5)); v != 5 {
		t.Fatal("load after the change")
	}
	if v, ok := c.Get("k"); !ok || v != 5 {
		t.Fatalf("a quiet load was not stored: %d %v", v, ok)
	}
}

func TestConcurrent(t *testing.T) {
	c := New[string, int](Options{TTL: time.Minute, MaxSize: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := fmt.Sprint(g, i%70)
				c.Set(k, i)
				c.Get(k)
				if i%100 == 0 {
					c.Delete(k)
				}
			}
		}()
	}
	wg.Wait()
	if c.Len() > 50 {
		t.Fatalf("size %d above the maximum", c.Len())
	}
}

// BenchmarkSetFull sets new keys into a full cache of 100,000 entries:
// the cost of making room must not grow with the size.
func BenchmarkSetFull(b *testing.B) {
	for _, size := range []int{100, 100000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c := New[int, int](Options{TTL: time.Hour, MaxSize: size})
			for i := range size {
				c.Set(i, i)
			}
			b.ResetTimer()
			for i := range b.N {
				c.Set(size+i, i)
			}
		})
	}
}
