package registry_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/store/sqlite"
)

// plainBox is a SecretBox for tests (no secrecy).
type plainBox struct{}

func (plainBox) Seal(p, _ []byte) ([]byte, error) { return append([]byte{}, p...), nil }
func (plainBox) Open(s, _ []byte) ([]byte, error) { return s, nil }

// recorder keeps product events and audit entries.
type recorder struct {
	mu      sync.Mutex
	events  []string
	entries []audit.Entry
}

func (r *recorder) ProductChanged(_ context.Context, kind registry.ProductEventKind, pk string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, string(kind)+" "+pk)
}

func (r *recorder) Record(_ context.Context, e audit.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

func (r *recorder) take() ([]string, []audit.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev, en := r.events, r.entries
	r.events, r.entries = nil, nil
	return ev, en
}

var (
	operator = registry.Principal{KeyID: "op", AccountID: "acc1", Role: registry.RoleOperator}
	reader   = registry.Principal{KeyID: "ro", AccountID: "acc1", Role: registry.RoleReadonly}
	stranger = registry.Principal{KeyID: "x", AccountID: "acc2", Role: registry.RoleAdmin}
)

func newService(t *testing.T) (*registry.Service, *recorder) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, id := range []string{"acc1", "acc2"} {
		if err := st.CreateAccount(ctx, registry.Account{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	s := registry.New(registry.Options{Store: st, Box: plainBox{}, Auditor: rec})
	s.AddProductObserver(rec)
	return s, rec
}

func suffixes(cs []registry.TopicClass) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Suffix)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCreateProductTopicClasses(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	tests := []struct {
		name    string
		classes []registry.TopicClass
		want    []string
		field   string // a validation error on this field
	}{
		{"defaults", nil, []string{"update", "update/error", "get"}, ""},
		{"none", []registry.TopicClass{}, []string{}, ""},
		{"given", []registry.TopicClass{{Suffix: "cmd/+", Operation: registry.TopicSub}}, []string{"cmd/+"}, ""},
		{"bad", []registry.TopicClass{{Suffix: "ok", Operation: registry.TopicSub}, {Suffix: "a//b", Operation: registry.TopicSub}}, nil, "topicClasses[1].suffix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.CreateProduct(ctx, operator, registry.ProductInput{Name: tt.name, TopicClasses: tt.classes})
			if tt.field != "" {
				var ve *registry.ValidationError
				if !errors.As(err, &ve) || ve.Field != tt.field {
					t.Fatalf("err = %v, want a validation error on %s", err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range [][]registry.TopicClass{p.TopicClasses, get(t, s, p.ProductKey), lookup(t, s, p.ProductKey)} {
				if got == nil || !equal(suffixes(got), tt.want) {
					t.Fatalf("classes %v, want %v", suffixes(got), tt.want)
				}
			}
		})
	}
}

func get(t *testing.T, s *registry.Service, pk string) []registry.TopicClass {
	t.Helper()
	p, err := s.GetProduct(context.Background(), reader, pk)
	if err != nil {
		t.Fatal(err)
	}
	return p.TopicClasses
}

func lookup(t *testing.T, s *registry.Service, pk string) []registry.TopicClass {
	t.Helper()
	p, err := s.LookupProduct(context.Background(), pk)
	if err != nil {
		t.Fatal(err)
	}
	return p.TopicClasses
}

func TestTopicClassChanges(t *testing.T) {
	ctx := context.Background()
	s, rec := newService(t)
	p, err := s.CreateProduct(ctx, operator, registry.ProductInput{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	pk := p.ProductKey
	rec.take()
	steps := []struct {
		name   string
		do     func() ([]registry.TopicClass, error)
		want   []string // classes after the step
		action string   // audit action of a change; "" when refused
		is     error    // the error wanted
	}{
		{"add", func() ([]registry.TopicClass, error) {
			return s.AddTopicClass(ctx, operator, pk, registry.TopicClass{Suffix: "cmd/+", Operation: registry.TopicSub, Description: "commands"})
		}, []string{"update", "update/error", "get", "cmd/+"}, "product.topicclass.add", nil},
		{"add twice", func() ([]registry.TopicClass, error) {
			return s.AddTopicClass(ctx, operator, pk, registry.TopicClass{Suffix: "cmd/+", Operation: registry.TopicPub})
		}, nil, "", registry.ErrConflict},
		{"add bad", func() ([]registry.TopicClass, error) {
			return s.AddTopicClass(ctx, operator, pk, registry.TopicClass{Suffix: "cmd/#/x", Operation: registry.TopicPub})
		}, nil, "", registry.ErrInvalid},
		{"add hidden", func() ([]registry.TopicClass, error) {
			return s.AddTopicClass(ctx, operator, pk, registry.TopicClass{Suffix: "cmd/reboot", Operation: registry.TopicPub})
		}, []string{"update", "update/error", "get", "cmd/reboot", "cmd/+"}, "product.topicclass.add", nil},
		{"readonly adds", func() ([]registry.TopicClass, error) {
			return s.AddTopicClass(ctx, reader, pk, registry.TopicClass{Suffix: "x", Operation: registry.TopicPub})
		}, nil, "", registry.ErrForbidden},
		{"another account adds", func() ([]registry.TopicClass, error) {
			return s.AddTopicClass(ctx, stranger, pk, registry.TopicClass{Suffix: "x", Operation: registry.TopicPub})
		}, nil, "", registry.ErrNotFound},
		{"another account lists", func() ([]registry.TopicClass, error) { return s.TopicClasses(ctx, stranger, pk) }, nil, "", registry.ErrNotFound},
		{"delete", func() ([]registry.TopicClass, error) { return s.DeleteTopicClass(ctx, operator, pk, "update/error") },
			[]string{"update", "get", "cmd/reboot", "cmd/+"}, "product.topicclass.delete", nil},
		{"delete missing", func() ([]registry.TopicClass, error) { return s.DeleteTopicClass(ctx, operator, pk, "update/error") }, nil, "", registry.ErrNotFound},
		{"another account deletes", func() ([]registry.TopicClass, error) { return s.DeleteTopicClass(ctx, stranger, pk, "get") }, nil, "", registry.ErrNotFound},
		{"readonly sets", func() ([]registry.TopicClass, error) { return s.SetTopicClasses(ctx, reader, pk, nil) }, nil, "", registry.ErrForbidden},
		{"set bad", func() ([]registry.TopicClass, error) {
			return s.SetTopicClasses(ctx, operator, pk, []registry.TopicClass{{Suffix: "a", Operation: registry.TopicPub}, {Suffix: "a", Operation: registry.TopicSub}})
		}, nil, "", registry.ErrInvalid},
		{"set", func() ([]registry.TopicClass, error) {
			return s.SetTopicClasses(ctx, operator, pk, []registry.TopicClass{{Suffix: "log/#", Operation: registry.TopicAll}})
		}, []string{"log/#"}, "product.topicclasses.set", nil},
		{"set none", func() ([]registry.TopicClass, error) { return s.SetTopicClasses(ctx, operator, pk, nil) }, []string{}, "product.topicclasses.set", nil},
	}
	last := suffixes(get(t, s, pk))
	for _, st := range steps {
		got, err := st.do()
		events, entries := rec.take()
		now := suffixes(get(t, s, pk))
		if st.is != nil {
			if !errors.Is(err, st.is) || len(events) != 0 || len(entries) != 0 || !equal(now, last) {
				t.Fatalf("%s: err %v (want %v), events %v, audit %+v, classes %v (were %v)", st.name, err, st.is, events, entries, now, last)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got == nil || !equal(suffixes(got), st.want) || !equal(now, st.want) || !equal(suffixes(lookup(t, s, pk)), st.want) {
			t.Fatalf("%s: answered %v, stored %v, want %v", st.name, suffixes(got), now, st.want)
		}
		if len(events) != 1 || events[0] != "updated "+pk {
			t.Fatalf("%s: product events %v, want one update", st.name, events)
		}
		if len(entries) != 1 || entries[0].Action != st.action || entries[0].Target != pk || entries[0].Actor != "op" || entries[0].AccountID != "acc1" {
			t.Fatalf("%s: audit %+v, want %s", st.name, entries, st.action)
		}
		last = now
	}
	if cs, err := s.TopicClasses(ctx, reader, pk); err != nil || cs == nil || len(cs) != 0 {
		t.Fatalf("readonly lists: %v %v", cs, err)
	}
	full := make([]registry.TopicClass, registry.MaxTopicClasses)
	for i := range full {
		full[i] = registry.TopicClass{Suffix: fmt.Sprintf("c%02d", i), Operation: registry.TopicPub}
	}
	if _, err := s.SetTopicClasses(ctx, operator, pk, full); err != nil {
		t.Fatal(err)
	}
	_, err = s.AddTopicClass(ctx, operator, pk, registry.TopicClass{Suffix: "one-more", Operation: registry.TopicPub})
	var ve *registry.ValidationError
	if !errors.As(err, &ve) || ve.Field != "topicClasses" || len(get(t, s, pk)) != registry.MaxTopicClasses {
		t.Fatalf("a class past the limit: %v", err)
	}
}
