package jobs

import (
	"context"

	"github.com/corral-iot/corral/internal/registry"
)

// AccountOf exposes the grant check of imports to the external tests.
func (c *Codes) AccountOf(ctx context.Context, p registry.Principal, grant string) (string, error) {
	return c.account(ctx, p, grant)
}
