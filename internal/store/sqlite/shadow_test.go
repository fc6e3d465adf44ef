package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/shadow"
)

// TestShadowHistoryKeepsNewest: after every write the history holds the
// newest keep versions exactly, whether or not the write had any to trim
// (versions up to keep are written without a trim).
func TestShadowHistoryKeepsNewest(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, keep := range []int{1, 3} {
		k := shadow.Key{ProductKey: "a1B2c3D4e5F", DeviceName: "dev", Name: string(rune('a' + keep))}
		for v := int64(1); v <= 6; v++ {
			if err := s.PutShadow(ctx, k, v-1, shadow.Stored{Doc: []byte(`{}`), Version: v, UpdatedAt: time.Now()}, keep); err != nil {
				t.Fatal(err)
			}
			h, err := s.ShadowHistory(ctx, k, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := min(v, int64(keep))
			if int64(len(h)) != want || h[len(h)-1].Version != v || h[0].Version != v-want+1 {
				t.Fatalf("keep %d, after version %d: %d versions from %d; want the newest %d", keep, v, len(h), h[0].Version, want)
			}
		}
	}
}
