package registry

import (
	"context"
	"fmt"

	"github.com/corral-iot/corral/internal/audit"
)

// TopicClassStore keeps products' custom topic classes. Every read of a
// product (GetProduct, ListProducts) carries its classes as a non-nil
// slice.
type TopicClassStore interface {
	// UpdateTopicClasses replaces a product's classes with what fn makes
	// of the current ones, atomically; an error from fn leaves them as
	// they were and is returned. ErrNotFound without the product.
	UpdateTopicClasses(ctx context.Context, pk string, fn func(current []TopicClass) ([]TopicClass, error)) error
}

// TopicClasses lists the custom topic classes of a product of the
// caller's account, in the order they are matched.
func (s *Service) TopicClasses(ctx context.Context, p Principal, pk string) ([]TopicClass, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	prod, _, err := s.product(ctx, p, pk)
	if err != nil {
		return nil, err
	}
	return prod.TopicClasses, nil
}

// SetTopicClasses replaces all the classes of a product of the caller's
// account; an empty set leaves the devices no /user/ topic.
func (s *Service) SetTopicClasses(ctx context.Context, p Principal, pk string, cs []TopicClass) ([]TopicClass, error) {
	if err := need(p, RoleOperator); err != nil {
		return nil, err
	}
	if cs == nil {
		cs = []TopicClass{}
	}
	if err := ValidateTopicClasses("topicClasses", cs); err != nil {
		return nil, err
	}
	out, err := s.changeTopicClasses(ctx, p, pk, func([]TopicClass) ([]TopicClass, error) { return cs, nil })
	if err != nil {
		return nil, err
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "product.topicclasses.set", Target: pk, Outcome: "ok",
		Reason: fmt.Sprintf("%d classes", len(out))})
	return out, nil
}

// AddTopicClass adds one class to a product of the caller's account,
// ahead of any class that would hide it; a suffix already there is an
// ErrConflict.
func (s *Service) AddTopicClass(ctx context.Context, p Principal, pk string, c TopicClass) ([]TopicClass, error) {
	if err := need(p, RoleOperator); err != nil {
		return nil, err
	}
	if err := ValidateTopicClass("", c); err != nil {
		return nil, err
	}
	out, err := s.changeTopicClasses(ctx, p, pk, func(cur []TopicClass) ([]TopicClass, error) {
		for _, have := range cur {
			if have.Suffix == c.Suffix {
				return nil, fmt.Errorf("topic class %q of product %q exists; delete it or replace the set: %w", c.Suffix, pk, ErrConflict)
			}
		}
		if len(cur) >= MaxTopicClasses {
			return nil, invalid("topicClasses", "the product has %d topic classes, the most it may have", len(cur))
		}
		next := insertTopicClass(cur, c)
		if err := ValidateTopicClasses("topicClasses", next); err != nil {
			return nil, err
		}
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "product.topicclass.add", Target: pk, Outcome: "ok",
		Reason: string(c.Operation) + " " + c.Suffix})
	return out, nil
}

// DeleteTopicClass removes the class with the suffix from a product of
// the caller's account; an unknown suffix is ErrNotFound.
func (s *Service) DeleteTopicClass(ctx context.Context, p Principal, pk, suffix string) ([]TopicClass, error) {
	out, err := s.changeTopicClasses(ctx, p, pk, func(cur []TopicClass) ([]TopicClass, error) {
		for i, have := range cur {
			if have.Suffix == suffix {
				return append(append([]TopicClass{}, cur[:i]...), cur[i+1:]...), nil
			}
		}
		return nil, fmt.Errorf("product %q has no topic class %q: %w", pk, suffix, ErrNotFound)
	})
	if err != nil {
		return nil, err
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "product.topicclass.delete", Target: pk, Outcome: "ok", Reason: suffix})
	return out, nil
}

// changeTopicClasses applies fn to the classes of a product of the
// caller's account (operators), stores the result and tells the product
// observers, so that caches of the product's settings drop it.
func (s *Service) changeTopicClasses(ctx context.Context, p Principal, pk string, fn func([]TopicClass) ([]TopicClass, error)) ([]TopicClass, error) {
	if err := need(p, RoleOperator); err != nil {
		return nil, err
	}
	if _, _, err := s.writableProduct(ctx, p, pk); err != nil {
		return nil, err
	}
	var out []TopicClass
	err := s.store.UpdateTopicClasses(ctx, pk, func(cur []TopicClass) ([]TopicClass, error) {
		next, err := fn(cur)
		out = next
		return next, err
	})
	if err != nil {
		return nil, fmt.Errorf("topic classes of product %q: %w", pk, err)
	}
	s.notifyProduct(ctx, ProductUpdated, pk)
	return out, nil
}
