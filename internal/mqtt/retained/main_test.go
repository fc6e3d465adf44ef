package retained

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them (the
// concurrency test starts some).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
