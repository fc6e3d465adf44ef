package jobs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/registry"
)

// CodeTTL is how long a cross-account authorisation code is valid.
const CodeTTL = 5 * time.Minute

// CodeStore keeps authorisation codes and grants durably, each by the
// SHA-256 (hex) of its value, never the value: a destination restart
// keeps a running cross-account job's grant.
type CodeStore interface {
	// PutAuthCode stores a code of an account valid until expires.
	PutAuthCode(ctx context.Context, hash, accountID string, expires time.Time) error
	// TakeAuthCode deletes the code if it is the account's and has not
	// expired at now, and drops expired codes; ErrNotFound for an
	// unknown, used, expired or other account's code. Of concurrent takes
	// of one code, one succeeds.
	TakeAuthCode(ctx context.Context, hash, accountID string, now time.Time) error
	// PutGrant stores a grant letting account from import into account to.
	PutGrant(ctx context.Context, hash, from, to string, created time.Time) error
	// GetGrant answers a grant's accounts; ErrNotFound for an unknown one.
	GetGrant(ctx context.Context, hash string) (from, to string, err error)
	// Grants lists the grants into account to, oldest first.
	Grants(ctx context.Context, to string) ([]GrantInfo, error)
	// DeleteGrant deletes a grant; ErrNotFound for an unknown one.
	DeleteGrant(ctx context.Context, hash string) error
}

// GrantInfo describes a grant to the account it lets import into; the
// grant itself is never shown again.
type GrantInfo struct {
	ID          string    `json:"id" doc:"the SHA-256 (hex) of the grant: revoke it by this id"`
	FromAccount string    `json:"fromAccount" doc:"the account whose jobs may import into this one"`
	Created     time.Time `json:"created"`
}

// grantRecheck is how long a grant read from the store is believed before
// it is read again: another node may have revoked it.
const grantRecheck = 30 * time.Second

// Codes are a destination's cross-account authorisation codes and the
// grants they are exchanged for. The destination account issues a code
// (valid CodeTTL, once); the source instance, calling with its
// credential (an account here), exchanges it once for a grant that lets
// that account import into the destination account for the rest of the
// job. Both are kept in the store (hashed), so a destination restart does
// not fail a running job. A grant ends when the job's instance releases it
// (the job ended) or the destination account revokes it; grants are cached
// for grantRecheck.
type Codes struct {
	store CodeStore
	now   func() time.Time

	mu     sync.Mutex
	grants map[string]grant // by hash; guarded by mu
}

type grant struct {
	from, to string
	read     time.Time // when it was read from the store
}

// AuthCode is an issued code.
type AuthCode struct {
	AuthCode  string    `json:"authCode"`
	AccountID string    `json:"targetUid" doc:"the account the code lets another account's job import into"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Authorization exchanges a code for a grant.
type Authorization struct {
	AuthCode        string `json:"authCode"`
	TargetAccountID string `json:"targetUid"`
}

// Grant answers an authorisation.
type Grant struct {
	Grant string `json:"grant"`
}

// NewCodes returns codes kept in store; now is the clock (nil: time.Now).
func NewCodes(store CodeStore, now func() time.Time) *Codes {
	if now == nil {
		now = time.Now
	}
	return &Codes{store: store, now: now, grants: map[string]grant{}}
}

func random() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func hashOf(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// maxCodeLen bounds a code or grant read from a request (issued ones are
// 32 hex characters).
const maxCodeLen = 64

// Issue makes a code of the principal's account (admins).
func (c *Codes) Issue(ctx context.Context, p registry.Principal) (AuthCode, error) {
	if !p.Role.Allows(registry.RoleAdmin) {
		return AuthCode{}, fmt.Errorf("issuing authorisation codes needs an admin key: %w", registry.ErrForbidden)
	}
	code, err := random()
	if err != nil {
		return AuthCode{}, err
	}
	exp := c.now().Add(CodeTTL).UTC()
	if err := c.store.PutAuthCode(ctx, hashOf(code), p.AccountID, exp); err != nil {
		return AuthCode{}, fmt.Errorf("storing authorisation code: %w", err)
	}
	return AuthCode{AuthCode: code, AccountID: p.AccountID, ExpiresAt: exp}, nil
}

// Authorize exchanges a valid code of the target account, once, for a
// grant of the calling account (admins). A wrong, used or expired code,
// or one of another account, is ErrInvalid and the same message.
func (c *Codes) Authorize(ctx context.Context, p registry.Principal, in Authorization) (Grant, error) {
	if !p.Role.Allows(registry.RoleAdmin) {
		return Grant{}, fmt.Errorf("authorising needs an admin key: %w", registry.ErrForbidden)
	}
	bad := fmt.Errorf("authCode: %w: wrong or expired (codes are valid %v, once)", ErrInvalid, CodeTTL)
	if in.AuthCode == "" || len(in.AuthCode) > maxCodeLen || in.TargetAccountID == "" {
		return Grant{}, bad
	}
	err := c.store.TakeAuthCode(ctx, hashOf(in.AuthCode), in.TargetAccountID, c.now())
	if errors.Is(err, ErrNotFound) {
		return Grant{}, bad
	}
	if err != nil {
		return Grant{}, fmt.Errorf("taking authorisation code: %w", err)
	}
	g, err := random()
	if err != nil {
		return Grant{}, err
	}
	h := hashOf(g)
	if err := c.store.PutGrant(ctx, h, p.AccountID, in.TargetAccountID, c.now().UTC()); err != nil {
		return Grant{}, fmt.Errorf("storing grant: %w", err)
	}
	c.mu.Lock()
	c.grants[h] = grant{from: p.AccountID, to: in.TargetAccountID, read: c.now()}
	c.mu.Unlock()
	return Grant{Grant: g}, nil
}

// account is the account an import lands in: the caller's own, or with a
// grant of the caller's, the granting account.
func (c *Codes) account(ctx context.Context, p registry.Principal, g string) (string, error) {
	if g == "" {
		return p.AccountID, nil
	}
	unknown := fmt.Errorf("grant: %w: unknown", ErrInvalid)
	if c == nil || len(g) > maxCodeLen {
		return "", unknown
	}
	gr, err := c.lookup(ctx, hashOf(g))
	if errors.Is(err, ErrNotFound) {
		return "", unknown
	}
	if err != nil {
		return "", err
	}
	if gr.from != p.AccountID {
		return "", unknown
	}
	return gr.to, nil
}

// lookup reads a grant by hash, from the cache while it is fresh.
func (c *Codes) lookup(ctx context.Context, h string) (grant, error) {
	now := c.now()
	c.mu.Lock()
	gr, ok := c.grants[h]
	c.mu.Unlock()
	if ok && now.Sub(gr.read) < grantRecheck {
		return gr, nil
	}
	from, to, err := c.store.GetGrant(ctx, h)
	if errors.Is(err, ErrNotFound) {
		c.forget(h)
		return grant{}, err
	}
	if err != nil {
		return grant{}, fmt.Errorf("reading grant: %w", err)
	}
	gr = grant{from: from, to: to, read: now}
	c.mu.Lock()
	c.grants[h] = gr
	c.mu.Unlock()
	return gr, nil
}

func (c *Codes) forget(h string) {
	c.mu.Lock()
	delete(c.grants, h)
	c.mu.Unlock()
}

// Release ends a grant of the caller's account (admins): its job is over.
// An unknown grant, or another account's, is ErrInvalid.
func (c *Codes) Release(ctx context.Context, p registry.Principal, in Grant) error {
	if !p.Role.Allows(registry.RoleAdmin) {
		return fmt.Errorf("releasing grants needs an admin key: %w", registry.ErrForbidden)
	}
	unknown := fmt.Errorf("grant: %w: unknown", ErrInvalid)
	if in.Grant == "" || len(in.Grant) > maxCodeLen {
		return unknown
	}
	h := hashOf(in.Grant)
	gr, err := c.lookup(ctx, h)
	if errors.Is(err, ErrNotFound) || err == nil && gr.from != p.AccountID {
		return unknown
	}
	if err != nil {
		return err
	}
	return c.delete(ctx, h)
}

// Grants lists the grants letting other accounts import into the
// caller's (admins).
func (c *Codes) Grants(ctx context.Context, p registry.Principal) ([]GrantInfo, error) {
	if !p.Role.Allows(registry.RoleAdmin) {
		return nil, fmt.Errorf("listing grants needs an admin key: %w", registry.ErrForbidden)
	}
	gs, err := c.store.Grants(ctx, p.AccountID)
	if err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	return gs, nil
}

// Revoke ends a grant into the caller's account by its id (admins): the
// job holding it fails its next imports. Another account's grant, or an
// unknown id, is ErrNotFound.
func (c *Codes) Revoke(ctx context.Context, p registry.Principal, id string) error {
	if !p.Role.Allows(registry.RoleAdmin) {
		return fmt.Errorf("revoking grants needs an admin key: %w", registry.ErrForbidden)
	}
	unknown := fmt.Errorf("grant %.64q: %w", id, ErrNotFound)
	if len(id) != sha256.Size*2 {
		return unknown
	}
	_, to, err := c.store.GetGrant(ctx, id)
	if errors.Is(err, ErrNotFound) || err == nil && to != p.AccountID {
		return unknown
	}
	if err != nil {
		return fmt.Errorf("reading grant: %w", err)
	}
	return c.delete(ctx, id)
}

func (c *Codes) delete(ctx context.Context, h string) error {
	c.forget(h)
	if err := c.store.DeleteGrant(ctx, h); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("deleting grant: %w", err)
	}
	c.forget(h) // a look-up racing the delete may have cached it again
	return nil
}
