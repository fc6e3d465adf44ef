package shadowsvc_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/corral-iot/corral/internal/shadowsvc"
)

// memSettings is a SettingsStore in memory.
type memSettings struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memSettings) ShadowSettings(_ context.Context, pk string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[pk], nil
}

func (s *memSettings) SetShadowSettings(_ context.Context, pk string, raw []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[pk] = raw
	return nil
}

// FuzzUpdateSettings: any patch is refused with ErrInvalidSettings and
// changes nothing, or gives settings within bounds that read back equal.
func FuzzUpdateSettings(f *testing.F) {
	for _, s := range []string{`{}`, `{"maxStateBytes":16384}`, `{"history":0,"presence":false}`, `{"checkThingModel":true}`,
		`{"maxStateBytes":65537}`, `{"history":-1}`, `{"x":1}`, `[]`, `null`, `{"history":1} {}`, `{"maxStateBytes":1e3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		ctx := context.Background()
		st := &memSettings{m: map[string][]byte{}}
		svc := shadowsvc.New(shadowsvc.Options{Settings: st})
		before, err := svc.Settings(ctx, "pk")
		if err != nil {
			t.Fatal(err)
		}
		got, err := svc.UpdateSettings(ctx, "pk", patch)
		after, err2 := svc.Settings(ctx, "pk")
		if err2 != nil {
			t.Fatal(err2)
		}
		if err != nil {
			if !errors.Is(err, shadowsvc.ErrInvalidSettings) {
				t.Fatalf("refusal %v is not ErrInvalidSettings", err)
			}
			if after != before {
				t.Fatalf("a refused patch changed %+v to %+v", before, after)
			}
			return
		}
		if err := got.Validate(); err != nil || got != after {
			t.Fatalf("accepted %+v (%v), read back %+v", got, err, after)
		}
	})
}
