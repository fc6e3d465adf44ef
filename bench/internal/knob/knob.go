// Package knob reads the benchmarks' environment knobs.
package knob

import (
	"os"
	"strconv"
)

// Int returns the positive integer in the environment variable name, or def.
func Int(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
