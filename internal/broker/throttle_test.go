package broker

import (
	"testing"
	"time"
)

func TestLoginLimiter(t *testing.T) {
	type step struct {
		at      time.Duration // since the start
		fail    bool          // record a failure (after the check)
		src     string
		dev     string
		allowed bool
		why     string
	}
	a, b, c := "10.0.0.1", "10.0.0.2", "10.0.0.3"
	tests := []struct {
		name           string
		perSrc, perDev int
		steps          []step
	}{
		{"source backs off after its failures, others do not", 3, 0, []step{
			{0, true, a, "d1", true, ""},
			{1, true, a, "d2", true, ""},
			{2, true, a, "d3", true, ""}, // third failure: 1 s back-off
			{3, false, a, "d1", false, throttledSource},
			{4, false, b, "d1", true, ""},
			{time.Second + 1, false, a, "d1", false, throttledSource},
			{time.Second + 2, false, a, "d1", true, ""},
		}},
		{"back-off doubles", 2, 0, []step{
			{0, true, a, "", true, ""},
			{0, true, a, "", true, ""}, // 1 s
			{time.Second, true, a, "", true, ""},
			{time.Second, true, a, "", true, ""}, // 2 s
			{2900 * time.Millisecond, false, a, "", false, throttledSource},
			{3 * time.Second, true, a, "", true, ""},
			{3 * time.Second, true, a, "", true, ""}, // 4 s
			{6900 * time.Millisecond, false, a, "", false, throttledSource},
			{7 * time.Second, false, a, "", true, ""},
		}},
		{"strikes start over after a quiet spell", 1, 0, []step{
			{0, true, a, "", true, ""},
			{time.Hour, true, a, "", true, ""},
			{2 * time.Hour, false, a, "", true, ""}, // quiet for longer than the decay: strikes start over
		}},
		{"window resets the count", 3, 0, []step{
			{0, true, a, "", true, ""},
			{1, true, a, "", true, ""},
			{time.Minute + 2, true, a, "", true, ""},
			{time.Minute + 3, false, a, "", true, ""},
		}},
		{"device backs off only for addresses that failed", 0, 4, []step{
			{0, true, a, "dev", true, ""},
			{1, true, b, "dev", true, ""},
			{2, true, a, "dev", true, ""},
			{3, true, b, "dev", true, ""}, // fourth failure for dev: 1 s
			{4, false, a, "dev", false, throttledDevice},
			{5, false, b, "dev", false, throttledDevice},
			{6, false, c, "dev", true, ""},               // the device itself, from a clean address
			{7, false, a, "other", true, ""},             // another device from a failing address
			{time.Second + 4, false, a, "dev", true, ""}, // back-off over
		}},
		{"a device's back-off stays short", 0, 1, []step{
			{0, true, a, "dev", true, ""},
			{time.Second, true, a, "dev", true, ""},
			{3 * time.Second, true, a, "dev", true, ""},
			{7 * time.Second, true, a, "dev", true, ""},
			{15 * time.Second, true, a, "dev", true, ""},
			{31 * time.Second, true, a, "dev", true, ""},    // 32 s would exceed the cap
			{61*time.Second + 1, false, a, "dev", true, ""}, // 30 s later
		}},
		{"off", 0, 0, []step{
			{0, true, a, "dev", true, ""},
			{0, true, a, "dev", true, ""},
			{0, true, a, "dev", true, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1_000_000, 0)
			now := start
			l := newLoginLimiter(func() time.Time { return now }, tt.perSrc, tt.perDev)
			for i, s := range tt.steps {
				now = start.Add(s.at)
				ok, why := l.check(s.src, s.dev)
				if ok != s.allowed || why != s.why {
					t.Fatalf("step %d (%v, %s for %s): check = %v %q, want %v %q", i, s.at, s.src, s.dev, ok, why, s.allowed, s.why)
				}
				if s.fail {
					l.failed(s.src, s.dev)
				}
			}
		})
	}
}

func TestLoginLimiterSweep(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLoginLimiter(func() time.Time { return now }, 2, 2)
	l.failed("a", "d")
	l.failed("a", "d")
	now = now.Add(time.Hour)
	l.sweep()
	if len(l.srcs) != 0 || len(l.devs) != 0 {
		t.Fatalf("after an hour: %d sources, %d devices kept", len(l.srcs), len(l.devs))
	}
}

func TestLogSampler(t *testing.T) {
	now := time.Unix(600, 0)
	s := newLogSampler(func() time.Time { return now }, 2)
	logged := 0
	for i := 0; i < 10; i++ {
		if ok, _ := s.allow("a"); ok {
			logged++
		}
	}
	if ok, _ := s.allow("b"); !ok || logged != 2 {
		t.Fatalf("logged %d of 10 from a (want 2); b allowed %v", logged, ok)
	}
	now = now.Add(time.Minute)
	if ok, unlogged := s.allow("a"); !ok || unlogged != 8 {
		t.Fatalf("next minute: allowed %v, unlogged %d, want true and 8", ok, unlogged)
	}
	s.allow("a")
	s.allow("a")
	now = now.Add(time.Minute)
	if got := s.sweep(false); got["a"] != 1 || len(got) != 1 {
		t.Fatalf("sweep = %v, want a:1", got)
	}
}
