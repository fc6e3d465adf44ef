package jobs_test

import (
	"errors"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/registry"
)

func TestCodes(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c := jobs.NewCodes(func() time.Time { return now })
	b := registry.Principal{AccountID: "acc-b", Role: registry.RoleAdmin}
	a := registry.Principal{AccountID: "acc-a", Role: registry.RoleAdmin}
	if _, err := c.Issue(registry.Principal{AccountID: "acc-b", Role: registry.RoleOperator}); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("an operator issued a code: %v", err)
	}
	code, err := c.Issue(b)
	if err != nil || code.AccountID != "acc-b" || !code.ExpiresAt.Equal(now.Add(jobs.CodeTTL)) {
		t.Fatalf("Issue = %+v, %v", code, err)
	}
	expiring, _ := c.Issue(b)
	for _, tc := range []struct {
		name string
		in   jobs.Authorization
	}{
		{"wrong code", jobs.Authorization{AuthCode: "nope", TargetAccountID: "acc-b"}},
		{"another account's", jobs.Authorization{AuthCode: code.AuthCode, TargetAccountID: "acc-c"}},
	} {
		if _, err := c.Authorize(a, tc.in); !errors.Is(err, jobs.ErrInvalid) {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	g, err := c.Authorize(a, jobs.Authorization{AuthCode: code.AuthCode, TargetAccountID: "acc-b"})
	if err != nil || g.Grant == "" {
		t.Fatalf("a valid code: %+v, %v", g, err)
	}
	if _, err := c.Authorize(a, jobs.Authorization{AuthCode: code.AuthCode, TargetAccountID: "acc-b"}); !errors.Is(err, jobs.ErrInvalid) {
		t.Fatalf("a code used twice: %v", err)
	}
	now = now.Add(jobs.CodeTTL) // the second code expires now
	if _, err := c.Authorize(a, jobs.Authorization{AuthCode: expiring.AuthCode, TargetAccountID: "acc-b"}); !errors.Is(err, jobs.ErrInvalid) {
		t.Fatalf("an expired code: %v", err)
	}
}
