package conformance_test

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them. The
// suite's cases mostly wait on timers (keep alives, expiry, will delays),
// not on the CPU: unless -parallel is given, up to 32 run at once instead
// of GOMAXPROCS.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "32")
	}
	goleak.VerifyTestMain(m)
}
