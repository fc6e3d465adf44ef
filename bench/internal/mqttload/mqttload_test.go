package mqttload

import (
	"errors"
	"syscall"
	"testing"
)

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, workers int
		failEvery  int
		wantFailed int64
	}{
		{"none fail", 100, 8, 0, 0},
		{"every third fails", 99, 4, 3, 33},
		{"more workers than calls", 3, 16, 1, 3},
		{"no calls", 0, 4, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make([]int, tc.n)
			got := Spread(tc.n, tc.workers, func(i int) error {
				seen[i]++
				if tc.failEvery > 0 && i%tc.failEvery == 0 {
					return errors.New("refused")
				}
				return nil
			})
			if got != tc.wantFailed {
				t.Errorf("failed = %d, want %d", got, tc.wantFailed)
			}
			for i, n := range seen {
				if n != 1 {
					t.Fatalf("f(%d) called %d times, want once", i, n)
				}
			}
		})
	}
}

// TestRaiseFileLimit: a limit at or below the soft limit is already in
// force; one above the hard limit is capped at it (unless privileged).
func TestRaiseFileLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if got := RaiseFileLimit(rl.Cur); got != rl.Cur {
		t.Errorf("RaiseFileLimit(soft %d) = %d", rl.Cur, got)
	}
	if got := RaiseFileLimit(rl.Max); got != rl.Max {
		t.Errorf("RaiseFileLimit(hard %d) = %d", rl.Max, got)
	}
	if got := RaiseFileLimit(rl.Max + 1); got < rl.Max {
		t.Errorf("RaiseFileLimit(hard+1) = %d, below the hard limit %d", got, rl.Max)
	}
}
