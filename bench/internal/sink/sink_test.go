package sink

import (
	"sync"
	"testing"
	"time"
)

func TestWaitReturnsAtTheLastExpectedDelivery(t *testing.T) {
	c := New(1000)
	var wg sync.WaitGroup
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				c.Add()
			}
		}()
	}
	t0 := time.Now()
	n, el := c.Wait(time.Hour)
	wg.Wait()
	if n != 1000 || time.Since(t0) > time.Minute {
		t.Fatalf("n=%d after %v", n, time.Since(t0))
	}
	if el <= 0 || el > time.Since(c.start) {
		t.Fatalf("elapsed %v", el)
	}
}

func TestWaitGivesUpAfterQuiet(t *testing.T) {
	c := New(10)
	c.Add()
	n, el := c.Wait(10 * time.Millisecond)
	if n != 1 || el > time.Since(c.start) {
		t.Fatalf("n=%d elapsed %v", n, el)
	}
}
