package shadowsvc

import (
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

// Writers of one shadow wait for each other; writers of others do not;
// nothing is left once every lock is released.
func TestKeyLocks(t *testing.T) {
	var l keyLocks
	a, b := shadow.Key{ProductKey: "p", DeviceName: "d"}, shadow.Key{ProductKey: "p", DeviceName: "d", Name: "n"}
	unlockA := l.lock(a)
	done := make(chan struct{})
	go func() {
		l.lock(b)()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("another shadow's writer waited")
	}
	second := make(chan struct{})
	go func() {
		l.lock(a)()
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
