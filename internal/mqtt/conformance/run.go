package conformance

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
)

// testCase is one behaviour checked against a target.
type testCase struct {
	name string // "v3/…" or "v5/…": the subtest name
	// needs says why the target cannot run the case ("" when it can).
	needs func(f Features) string
	run   func(c *ct)
}

// cases lists every case of the suite, in order.
func cases() []testCase {
	var all []testCase
	all = append(all, v3Cases()...)
	all = append(all, pahoCases()...)
	all = append(all, v5Cases()...)
	all = append(all, sessionCases()...)
	return all
}

// CaseNames lists the names of the suite's cases (RunDurable's too), for a
// target's Gaps.
func CaseNames() []string {
	var names []string
	for _, tc := range append(cases(), durableCases()...) {
		names = append(names, tc.name)
	}
	return names
}

// Run runs every case against the target as parallel subtests of t (but
// the restart cases: see RunDurable). The cases mostly wait on timers: with
// -parallel 32 (not GOMAXPROCS) the suite takes about 10 s.
func Run(t *testing.T, tg Target) {
	runCases(t, tg, cases(), true)
}

func runCases(t *testing.T, tg Target, all []testCase, parallel bool) {
	if tg.Addr == "" && tg.Dial == nil {
		t.Fatal("conformance: target has neither Addr nor Dial")
	}
	if tg.Name == "" {
		tg.Name = tg.Addr
	}
	if tg.Prefix == "" {
		tg.Prefix = "cf"
	}
	known := map[string]bool{}
	for _, name := range CaseNames() {
		known[name] = true
	}
	for name := range tg.Gaps {
		if !known[name] {
			t.Errorf("conformance: %s declares a gap for %q, which is no case", tg.Name, name)
		}
	}
	var r [4]byte
	rand.Read(r[:])
	run := tg.Prefix + hex.EncodeToString(r[:])
	for i, tc := range all {
		t.Run(tc.name, func(t *testing.T) {
			if why, ok := tg.Gaps[tc.name]; ok {
				t.Skipf("%s: declared gap: %s", tg.Name, why)
			}
			if tc.needs != nil {
				if why := tc.needs(tg.Features); why != "" {
					t.Skipf("%s: %s", tg.Name, why)
				}
			}
			if parallel {
				t.Parallel()
			}
			tc.run(&ct{T: t, tg: &tg, prefix: fmt.Sprintf("%s/%d", run, i), ids: fmt.Sprintf("%s-%d-", run, i)})
		})
	}
}

// Needs of cases.

func needQoS(q byte) func(Features) string {
	return func(f Features) string {
		if f.MaxQoS < q {
			return fmt.Sprintf("declares maximum QoS %d", f.MaxQoS)
		}
		return ""
	}
}

func needRetain(f Features) string {
	if !f.Retain {
		return "declares no retained messages"
	}
	return ""
}

func needAll(needs ...func(Features) string) func(Features) string {
	return func(f Features) string {
		for _, n := range needs {
			if why := n(f); why != "" {
				return why
			}
		}
		return ""
	}
}
