package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/corral-iot/corral/internal/mqtt/persist"
	"github.com/corral-iot/corral/internal/mqtt/persist/persisttest"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

func TestMQTTConformance(t *testing.T) {
	persisttest.Run(t, func(t *testing.T) (persist.Store, func() persist.Store) {
		path := filepath.Join(t.TempDir(), "t.db")
		open := func() *sqlite.Store {
			s, err := sqlite.Open(context.Background(), path, sqlite.Options{Synchronous: "NORMAL"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open()
		return s.MQTT(), func() persist.Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open()
			return s.MQTT()
		}
	})
}
