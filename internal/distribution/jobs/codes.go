package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/registry"
)

// CodeTTL is how long a cross-account authorisation code is valid.
const CodeTTL = 5 * time.Minute

// Codes are a destination's cross-account authorisation codes and the
// grants they are exchanged for. The destination account issues a code
// (valid CodeTTL); the source instance, calling with its credential (an
// account here), exchanges it once for a grant that lets that account
// import into the destination account for the rest of the job. Codes and
// grants are kept in memory: a restart of the destination drops them, and
// a job resumed after that fails its remaining devices (502) until a new
// job is authorised.
type Codes struct {
	now func() time.Time

	mu     sync.Mutex
	codes  map[string]codeEntry // guarded by mu
	grants map[string]grant     // guarded by mu
}

type codeEntry struct {
	account string
	expires time.Time
}

type grant struct{ from, to string }

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

// NewCodes returns an empty set; now is the clock (nil: time.Now).
func NewCodes(now func() time.Time) *Codes {
	if now == nil {
		now = time.Now
	}
	return &Codes{now: now, codes: map[string]codeEntry{}, grants: map[string]grant{}}
}

func random() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Issue makes a code of the principal's account (admins).
func (c *Codes) Issue(p registry.Principal) (AuthCode, error) {
	if !p.Role.Allows(registry.RoleAdmin) {
		return AuthCode{}, fmt.Errorf("issuing authorisation codes needs an admin key: %w", registry.ErrForbidden)
	}
	code, err := random()
	if err != nil {
		return AuthCode{}, err
	}
	exp := c.now().Add(CodeTTL).UTC()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.codes { // drop the expired
		if !c.now().Before(e.expires) {
			delete(c.codes, k)
		}
	}
	c.codes[code] = codeEntry{account: p.AccountID, expires: exp}
	return AuthCode{AuthCode: code, AccountID: p.AccountID, ExpiresAt: exp}, nil
}

// Authorize exchanges a valid code of the target account, once, for a
// grant of the calling account (admins). A wrong, used or expired code,
// or one of another account, is ErrInvalid and the same message.
func (c *Codes) Authorize(p registry.Principal, in Authorization) (Grant, error) {
	if !p.Role.Allows(registry.RoleAdmin) {
		return Grant{}, fmt.Errorf("authorising needs an admin key: %w", registry.ErrForbidden)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.codes[in.AuthCode]
	if !ok || e.account != in.TargetAccountID || !c.now().Before(e.expires) {
		return Grant{}, fmt.Errorf("authCode: %w: wrong or expired (codes are valid %v, once)", ErrInvalid, CodeTTL)
	}
	delete(c.codes, in.AuthCode)
	g, err := random()
	if err != nil {
		return Grant{}, err
	}
	c.grants[g] = grant{from: p.AccountID, to: e.account}
	return Grant{Grant: g}, nil
}

// account is the account an import lands in: the caller's own, or with a
// grant of the caller's, the granting account.
func (c *Codes) account(p registry.Principal, g string) (string, error) {
	if g == "" {
		return p.AccountID, nil
	}
	if c == nil {
		return "", fmt.Errorf("grant: %w: unknown", ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gr, ok := c.grants[g]
	if !ok || gr.from != p.AccountID {
		return "", fmt.Errorf("grant: %w: unknown (a restart of this instance drops grants; authorise a new job)", ErrInvalid)
	}
	return gr.to, nil
}
