package pending

import (
	"errors"
	"sync"
	"testing"
)

func TestIndex(t *testing.T) {
	a, b, c := Key{"pk", "a"}, Key{"pk", "b"}, Key{"pk", "c"}
	failed := errors.New("write failed")
	tests := []struct {
		name string
		run  func(x *Index) error
		want map[Key]bool
	}{
		{"not loaded: every device maybe", func(x *Index) error { return nil },
			map[Key]bool{a: true, b: true}},
		{"loaded: only the listed", func(x *Index) error {
			return x.Load(func(add func(Key)) error { add(a); return nil })
		}, map[Key]bool{a: true, b: false}},
		{"failed load: still maybe", func(x *Index) error {
			_ = x.Load(func(add func(Key)) error { add(a); return failed })
			return nil
		}, map[Key]bool{a: true, b: true}},
		{"writes after load", func(x *Index) error {
			_ = x.Load(func(add func(Key)) error { add(a); return nil })
			_ = x.Update(a, func() (bool, error) { return false, nil })
			_ = x.Update(b, func() (bool, error) { return true, nil })
			return nil
		}, map[Key]bool{a: false, b: true, c: false}},
		{"a failed write is maybe", func(x *Index) error {
			_ = x.Load(func(add func(Key)) error { return nil })
			if err := x.Update(c, func() (bool, error) { return false, failed }); !errors.Is(err, failed) {
				return err
			}
			return nil
		}, map[Key]bool{a: false, c: true}},
		{"a failed write before the load stays maybe", func(x *Index) error {
			_ = x.Update(c, func() (bool, error) { return false, failed })
			return x.Load(func(add func(Key)) error { return nil })
		}, map[Key]bool{a: false, c: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := New()
			if err := tt.run(x); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if got := x.Maybe(k); got != want {
					t.Errorf("Maybe(%v) = %v, want %v", k, got, want)
				}
			}
		})
	}
}

// TestIndexOrder: the last of concurrent writes of one device is what the
// index says, whichever order they ran in.
func TestIndexOrder(t *testing.T) {
	x := New()
	_ = x.Load(func(func(Key)) error { return nil })
	k := Key{"pk", "d"}
	var mu sync.Mutex
	var last bool
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = x.Update(k, func() (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				last = i%3 == 0
				return last, nil
			})
		}()
	}
	wg.Wait()
	if x.Maybe(k) != last {
		t.Fatalf("Maybe = %v after a last write of %v", x.Maybe(k), last)
	}
}
