package memory_test

import (
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/persist/memory"
	"github.com/corral-iot/corral/internal/mqtt/persist/persisttest"
)

func TestConformance(t *testing.T) {
	persisttest.Run(t, func(t *testing.T) (persist.Store, func() persist.Store) {
		s := memory.New()
		return s, func() persist.Store { return s }
	})
}
