package shadow

import (
	"errors"
	"testing"
)

func TestChangedSince(t *testing.T) {
	v1 := mustAWS(t, Document{}, `{"state":{"desired":{"a":1,"n":{"x":1,"y":2}},"reported":{"r":1}}}`, t0).Next
	v2 := mustAWS(t, v1, `{"state":{"desired":{"n":{"y":3}},"reported":{"r":1.0,"s":[1]}}}`, t0).Next
	v3 := mustAWS(t, v2, `{"state":{"desired":{"a":null,"n":{"x":{"deep":true}}}}}`, t0).Next
	v4 := mustAWS(t, v3, `{"state":{"desired":null}}`, t0).Next
	history := []Document{v3, v1, v4, v2} // any order

	tests := []struct {
		since int64
		want  string
	}{
		{1, `{"fromVersion":1,"version":4,"desired":{"a":null,"n":null},"reported":{"s":[1]}}`},
		{2, `{"fromVersion":2,"version":4,"desired":{"a":null,"n":null}}`},
		{4, `{"fromVersion":4,"version":4}`},
		{9, `{"fromVersion":4,"version":4}`},
	}
	for _, tc := range tests {
		c, err := ChangedSince(history, tc.since)
		if err != nil || string(marshal(c)) != tc.want {
			t.Errorf("since %d: %v %s, want %s", tc.since, err, marshal(c), tc.want)
		}
	}
	c, _ := ChangedSince([]Document{v1, v2, v3}, 2)
	if got := string(marshal(c)); got != `{"fromVersion":2,"version":3,"desired":{"a":null,"n":{"x":{"deep":true}}}}` {
		t.Fatalf("since 2 to 3: %s", got)
	}
	if _, err := ChangedSince(history, 0); !errors.Is(err, ErrVersionNotKept) {
		t.Fatalf("version 0: %v", err)
	}
	if _, err := ChangedSince(nil, 1); !errors.Is(err, ErrVersionNotKept) {
		t.Fatalf("no history: %v", err)
	}
	// The changes, applied as an update to the old version, give the current state.
	for _, old := range []Document{v1, v2, v3} {
		c, _ := ChangedSince(history, old.Version)
		u := mustAWS(t, old, string(c.Update()), t0)
		if !equalSection(u.Next.Desired, v4.Desired) || !equalSection(u.Next.Reported, v4.Reported) {
			t.Errorf("from %d: %s, want %s", old.Version, stateJSON(u.Next), stateJSON(v4))
		}
	}
}
