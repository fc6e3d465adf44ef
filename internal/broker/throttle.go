package broker

import (
	"sync"
	"time"
)

// loginPolicy is when failed logins put a key (a source address, a
// device) in back-off: after Failures within Window, for Base, doubling
// each time it happens again, up to Max. Failures 0 turns it off.
type loginPolicy struct {
	Failures  int
	Window    time.Duration
	Base, Max time.Duration
	Decay     time.Duration // a key quiet this long starts over
}

// Back-off defaults: an address that keeps failing is held off for up to
// five minutes; a device for at most 30 s, and only from addresses that
// failed themselves, so whoever attacks a device cannot lock it out.
var (
	sourcePolicy = loginPolicy{Window: time.Minute, Base: time.Second, Max: 5 * time.Minute, Decay: 10 * time.Minute}
	devicePolicy = loginPolicy{Window: time.Minute, Base: time.Second, Max: 30 * time.Second, Decay: 2 * time.Minute}
)

// maxLoginKeys bounds each table; when full (a flood from very many
// addresses), new keys are not tracked until a sweep frees room.
const maxLoginKeys = 100000

type failState struct {
	start   time.Time // of the current window
	count   int       // failures in it
	last    time.Time // last failure
	until   time.Time // in back-off until
	strikes int       // back-offs so far
}

// loginLimiter throttles failed authentication per source address and per
// device (or API key) with exponential back-off. It decides only; the
// broker answers "server busy" to what it refuses, without checking the
// credentials.
//
// The per-device limit is higher and shorter, and applies only to
// addresses that have failed logins of their own within a window: an
// attacker spraying a device's name from many addresses gets each of them
// refused, while the device itself, whose logins do not fail, still gets
// its signature checked and logs in. An address in back-off is refused
// whatever it sends (devices behind the same NAT as an attacker share its
// fate; raise mqtt_auth_failures_per_ip for such sites).
type loginLimiter struct {
	mu       sync.Mutex
	now      func() time.Time
	src, dev loginPolicy
	srcs     map[string]*failState
	devs     map[string]*failState
}

func newLoginLimiter(now func() time.Time, perSource, perDevice int) *loginLimiter {
	src, dev := sourcePolicy, devicePolicy
	src.Failures, dev.Failures = perSource, perDevice
	return &loginLimiter{now: now, src: src, dev: dev, srcs: map[string]*failState{}, devs: map[string]*failState{}}
}

// Reasons for a refusal by the limiter (audit and log text).
const (
	throttledSource = "throttled: too many failed logins from this address"
	throttledDevice = "throttled: too many failed logins for this device from this address"
)

// check reports whether a CONNECT from src for dev ("" when unknown) may
// be authenticated now, or why not.
func (l *loginLimiter) check(src, dev string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	s := l.srcs[src]
	if s != nil && now.Before(s.until) {
		return false, throttledSource
	}
	if dev == "" {
		return true, ""
	}
	if d := l.devs[dev]; d != nil && now.Before(d.until) && s != nil && now.Sub(s.last) < l.src.Window {
		return false, throttledDevice
	}
	return true, ""
}

// failed records a failed login from src for dev ("" when unknown).
func (l *loginLimiter) failed(src, dev string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.record(l.srcs, src, l.src, now)
	if dev != "" && l.dev.Failures > 0 {
		l.record(l.devs, dev, l.dev, now)
	}
}

func (l *loginLimiter) record(m map[string]*failState, key string, p loginPolicy, now time.Time) {
	s := m[key]
	if s == nil {
		if len(m) >= maxLoginKeys {
			return
		}
		s = &failState{start: now}
		m[key] = s
	}
	if now.Sub(s.last) >= p.Decay {
		s.strikes = 0
	}
	if now.Sub(s.start) >= p.Window {
		s.start, s.count = now, 0
	}
	s.count++
	s.last = now
	if p.Failures > 0 && s.count >= p.Failures && !now.Before(s.until) {
		back := p.Max
		if s.strikes < 20 {
			back = min(p.Max, p.Base<<s.strikes)
		}
		s.until = now.Add(back)
		s.strikes++
		s.start, s.count = now, 0
	}
}

// sweep forgets keys that are out of back-off and quiet for their decay.
func (l *loginLimiter) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, t := range []struct {
		m map[string]*failState
		p loginPolicy
	}{{l.srcs, l.src}, {l.devs, l.dev}} {
		for k, s := range t.m {
			if !now.Before(s.until) && now.Sub(s.last) >= max(t.p.Decay, t.p.Window) {
				delete(t.m, k)
			}
		}
	}
}

// logSampler keeps refused logins from flooding the log: per source, the
// first n of a minute are logged, the rest counted, and the count logged
// as one summary line when the minute is over.
type logSampler struct {
	mu    sync.Mutex
	now   func() time.Time
	n     int
	bySrc map[string]*sampleState
}

type sampleState struct {
	minute     int64
	logged     int
	suppressed int
}

func newLogSampler(now func() time.Time, n int) *logSampler {
	return &logSampler{now: now, n: n, bySrc: map[string]*sampleState{}}
}

// allow reports whether to log an event from src, and how many events of
// src's previous minute went unlogged (to be summarised now), if any.
func (s *logSampler) allow(src string) (ok bool, unlogged int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	minute := s.now().Unix() / 60
	st := s.bySrc[src]
	if st == nil || st.minute != minute {
		if st != nil {
			unlogged = st.suppressed
		}
		if st == nil && len(s.bySrc) >= maxLoginKeys {
			return false, 0
		}
		st = &sampleState{minute: minute}
		s.bySrc[src] = st
	}
	if st.logged < s.n {
		st.logged++
		return true, unlogged
	}
	st.suppressed++
	return false, unlogged
}

// sweep returns, and forgets, the unlogged counts of minutes that are
// over (all of them, at shutdown).
func (s *logSampler) sweep(all bool) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	minute := s.now().Unix() / 60
	out := map[string]int{}
	for src, st := range s.bySrc {
		if all || st.minute != minute {
			if st.suppressed > 0 {
				out[src] = st.suppressed
			}
			delete(s.bySrc, src)
		}
	}
	return out
}
