package distribution

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/registry"
)

// Sealer seals secrets at rest bound to additional data (credential.Box).
type Sealer interface {
	Seal(plaintext, additional []byte) ([]byte, error)
	Open(sealed, additional []byte) ([]byte, error)
}

// Products tells whether a principal's account owns a product
// (registry.Service); another account's product is registry.ErrNotFound.
type Products interface {
	GetProduct(ctx context.Context, p registry.Principal, pk string) (registry.Product, error)
}

// Allocator makes the signed allocation call of a policy's webhook
// (webhook.Client): it posts v and decodes the answer into out.
type Allocator interface {
	Call(ctx context.Context, url string, v any, out any, timeout time.Duration) error
}

// Auditor records bootstraps; an audit.Aggregator folds floods.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry)
}

// Options configure a Service.
type Options struct {
	Store    Store
	Sealer   Sealer
	Products Products
	// Self is this corral as an instance (its id, region and endpoints),
	// a system instance no API call changes.
	Self Instance
	// Default is the instance a device without a record bootstraps to
	// ("" or Self.ID: this corral).
	Default string
	// Geo locates source addresses for policies' country tables; nil:
	// only CIDR tables and fallbacks decide.
	Geo Geo
	// Allocator calls policies' allocation webhooks; nil turns them off.
	Allocator Allocator
	// CheckURL vets a policy's webhook URL (webhook.Policy.CheckURL);
	// nil accepts any http(s) URL.
	CheckURL func(string) error
	// AllocationTimeout bounds a webhook call (default 2 s); past it the
	// tables decide.
	AllocationTimeout time.Duration
	// RatePerIP is bootstraps per second from one source address (burst
	// twice that, plus one); 0 is no limit.
	RatePerIP float64
	Auditor   Auditor
	Logger    *slog.Logger
	Now       func() time.Time
}

// Service is the distribution domain: instances, records, policies and
// bootstrap answers. It is safe for concurrent use.
type Service struct {
	o   Options
	log *slog.Logger

	// instances, policies and records cache the store's reads for
	// bootstraps, dropped at once by this node's writes; the TTL bounds
	// how stale a write made on another node can be. Records are cached
	// found or not (a miss is cached as found false), so a device with a
	// record and one without (or unknown) cost the same: one store read,
	// then none until the entry expires or is dropped.
	instances *cache.Cache[string, cachedInstance]
	policies  *cache.Cache[string, Policy]
	records   *cache.Cache[string, cachedRecord]

	limMu sync.Mutex
	lims  limiters // guarded by limMu
}

// cacheTTL bounds how long a cached instance or policy is used.
const cacheTTL = 30 * time.Second

func cacheKey(accountID, id string) string { return accountID + "\x00" + id }

// storedInstance reads an instance through the cache.
// A miss is cached too: a record of an account naming a system instance
// looks in the account's instances first, on every bootstrap.
func (s *Service) storedInstance(ctx context.Context, accountID, id string) (StoredInstance, error) {
	c, err := s.instances.GetOrLoad(cacheKey(accountID, id), func() (cachedInstance, error) {
		st, err := s.o.Store.GetInstance(ctx, accountID, id)
		if errors.Is(err, ErrNotFound) {
			return cachedInstance{}, nil
		}
		return cachedInstance{st: st, found: err == nil}, err
	})
	switch {
	case err != nil:
		return StoredInstance{}, err
	case !c.found:
		return StoredInstance{}, ErrNotFound
	}
	return c.st, nil
}

// cachedInstance is an instance as bootstraps read it: found false is
// none by that account and id.
type cachedInstance struct {
	st    StoredInstance
	found bool
}

// policy reads a policy through the cache, its CIDRs parsed.
func (s *Service) policy(ctx context.Context, accountID, id string) (Policy, error) {
	return s.policies.GetOrLoad(cacheKey(accountID, id), func() (Policy, error) {
		p, err := s.o.Store.GetPolicy(ctx, accountID, id)
		if err == nil {
			p.compile()
		}
		return p, err
	})
}

// cachedRecord is a device's record as a bootstrap reads it: found false
// is a device without one.
type cachedRecord struct {
	rec   Record
	found bool
}

// maxCachedRecords bounds the record cache (records and misses).
const maxCachedRecords = 100000

// record reads a device's record through the cache; ErrNotFound when it
// has none.
func (s *Service) record(ctx context.Context, pk, dn string) (Record, error) {
	c, err := s.records.GetOrLoad(cacheKey(pk, dn), func() (cachedRecord, error) {
		r, err := s.o.Store.GetRecord(ctx, pk, dn)
		if errors.Is(err, ErrNotFound) {
			return cachedRecord{}, nil
		}
		return cachedRecord{rec: r, found: err == nil}, err
	})
	switch {
	case err != nil:
		return Record{}, err
	case !c.found:
		return Record{}, fmt.Errorf("record of %s/%s: %w", pk, dn, ErrNotFound)
	}
	return c.rec, nil
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AllocationTimeout <= 0 {
		o.AllocationTimeout = 2 * time.Second
	}
	if o.Default == "" {
		o.Default = o.Self.ID
	}
	o.Self.Self = true
	if err := ValidID("instance_id", o.Self.ID); err != nil {
		return nil, err
	}
	if err := ValidRegion("region", o.Self.Region); err != nil {
		return nil, err
	}
	for _, e := range []struct{ key, v string }{{"public_mqtt_endpoint", o.Self.MQTT}, {"public_mqtts_endpoint", o.Self.MQTTS}} {
		if e.v != "" {
			if err := validEndpoint(e.key, e.v); err != nil {
				return nil, err
			}
		}
	}
	co := cache.Options{TTL: cacheTTL, MaxSize: 10000, Now: o.Now}
	return &Service{o: o, log: o.Logger, lims: newLimiters(),
		instances: cache.New[string, cachedInstance](co), policies: cache.New[string, Policy](co),
		records: cache.New[string, cachedRecord](cache.Options{TTL: cacheTTL, MaxSize: maxCachedRecords, Now: o.Now})}, nil
}

// Self is this corral as an instance.
func (s *Service) Self() Instance { return s.o.Self }

func (s *Service) now() time.Time { return s.o.Now().UTC().Truncate(time.Millisecond) }

func credentialAAD(accountID, id string) []byte {
	return []byte("corral distribution instance credential\x00" + accountID + "\x00" + id)
}

// --- instances ---

// PutInstance creates an instance (replace false; ErrConflict when its
// id is taken) or replaces one (replace true; an empty credential keeps
// the stored one). A system administrator writes system instances.
func (s *Service) PutInstance(ctx context.Context, p registry.Principal, in InstanceInput, replace bool) (Instance, error) {
	if err := in.validate(); err != nil {
		return Instance{}, err
	}
	owner := ownerOf(p)
	if in.ID == s.o.Self.ID {
		return Instance{}, fmt.Errorf("instanceId %s is this corral (set by its configuration): %w", in.ID, ErrReadOnly)
	}
	if owner != "" {
		// An account's instance may not shadow a system one.
		if _, err := s.o.Store.GetInstance(ctx, "", in.ID); err == nil {
			return Instance{}, fmt.Errorf("instanceId %s is a system instance: %w", in.ID, ErrConflict)
		}
	}
	now := s.now()
	st := StoredInstance{Instance: Instance{ID: in.ID, AccountID: owner, Name: in.Name, Region: in.Region, MQTT: in.MQTT, MQTTS: in.MQTTS,
		BackupIP: in.BackupIP, APIURL: in.APIURL, GmtCreate: now, GmtModified: now}}
	if replace {
		old, err := s.o.Store.GetInstance(ctx, owner, in.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			replace = false
		case err != nil:
			return Instance{}, err
		default:
			st.GmtCreate, st.SealedCredential = old.GmtCreate, old.SealedCredential
		}
	}
	if in.Credential != "" {
		sealed, err := s.o.Sealer.Seal([]byte(in.Credential), credentialAAD(owner, in.ID))
		if err != nil {
			return Instance{}, fmt.Errorf("sealing the instance credential: %w", err)
		}
		st.SealedCredential = sealed
	}
	st.HasCredential = len(st.SealedCredential) > 0
	err := s.o.Store.PutInstance(ctx, st, replace)
	s.instances.Delete(cacheKey(owner, in.ID))
	if err != nil {
		return Instance{}, fmt.Errorf("instance %s: %w", in.ID, err)
	}
	return st.Instance, nil
}

// GetInstance returns an instance the principal's account sees: its own,
// a system one, or this corral.
func (s *Service) GetInstance(ctx context.Context, p registry.Principal, id string) (Instance, error) {
	return s.instance(ctx, p.AccountID, id)
}

func (s *Service) instance(ctx context.Context, accountID, id string) (Instance, error) {
	if id == s.o.Self.ID {
		return s.o.Self, nil
	}
	if accountID != "" {
		st, err := s.storedInstance(ctx, accountID, id)
		if err == nil {
			return st.Instance, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Instance{}, err
		}
	}
	st, err := s.storedInstance(ctx, "", id)
	if err != nil {
		return Instance{}, fmt.Errorf("instance %s: %w", id, err)
	}
	return st.Instance, nil
}

// ListInstances lists this corral, the system instances and the
// account's own.
func (s *Service) ListInstances(ctx context.Context, p registry.Principal) ([]Instance, error) {
	out := []Instance{s.o.Self}
	accts := []string{""}
	if p.AccountID != "" {
		accts = append(accts, p.AccountID)
	}
	for _, acct := range accts {
		sts, err := s.o.Store.ListInstances(ctx, acct)
		if err != nil {
			return nil, err
		}
		for _, st := range sts {
			out = append(out, st.Instance)
		}
	}
	return out, nil
}

// DeleteInstance deletes one of the principal's instances (a system
// administrator's: a system one). This corral cannot be deleted; one a
// record or policy names is ErrConflict.
func (s *Service) DeleteInstance(ctx context.Context, p registry.Principal, id string) error {
	if id == s.o.Self.ID {
		return fmt.Errorf("instance %s is this corral: %w", id, ErrReadOnly)
	}
	owner := ownerOf(p)
	err := s.o.Store.DeleteInstance(ctx, owner, id)
	s.instances.Delete(cacheKey(owner, id))
	if err != nil {
		if errors.Is(err, ErrNotFound) && owner != "" {
			if _, e := s.o.Store.GetInstance(ctx, "", id); e == nil {
				return fmt.Errorf("instance %s is a system instance; a system administrator deletes it: %w", id, ErrReadOnly)
			}
		}
		return fmt.Errorf("instance %s: %w", id, err)
	}
	return nil
}

// Credential opens an instance's credential for instance-to-instance
// calls (distribution jobs). Never log or return it to a client.
func (s *Service) Credential(ctx context.Context, accountID, id string) ([]byte, error) {
	st, err := s.o.Store.GetInstance(ctx, accountID, id)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", id, err)
	}
	if len(st.SealedCredential) == 0 {
		return nil, fmt.Errorf("instance %s has no credential: %w", id, ErrNotFound)
	}
	return s.o.Sealer.Open(st.SealedCredential, credentialAAD(st.AccountID, st.ID))
}

// --- records ---

// owns checks the principal's account owns the product (404 otherwise).
func (s *Service) owns(ctx context.Context, p registry.Principal, pk string) error {
	_, err := s.o.Products.GetProduct(ctx, p, pk)
	return err
}

// SetRecord points a device of the principal's account to an instance or
// a proximity policy. The device need not exist here: the centre may hold
// records of devices registered at other instances.
func (s *Service) SetRecord(ctx context.Context, p registry.Principal, pk, dn string, in RecordInput) (Record, error) {
	if err := registry.ValidateDeviceName(dn); err != nil {
		return Record{}, err
	}
	if err := s.owns(ctx, p, pk); err != nil {
		return Record{}, err
	}
	if (in.TargetIotInstanceID == "") == (in.PolicyID == "") {
		return Record{}, fmt.Errorf("targetIotInstanceId: %w: give targetIotInstanceId or policyId, not both", ErrInvalid)
	}
	now := s.now()
	r := Record{ProductKey: pk, DeviceName: dn, AccountID: p.AccountID, SourceIotInstanceID: s.o.Self.ID, SourceRegion: s.o.Self.Region,
		GmtCreate: now, GmtModified: now}
	if old, err := s.o.Store.GetRecord(ctx, pk, dn); err == nil {
		r.SourceIotInstanceID, r.SourceRegion, r.GmtCreate = old.SourceIotInstanceID, old.SourceRegion, old.GmtCreate
	}
	if in.TargetIotInstanceID != "" {
		inst, err := s.instance(ctx, p.AccountID, in.TargetIotInstanceID)
		if err != nil {
			return Record{}, fmt.Errorf("targetIotInstanceId: %w", err)
		}
		r.TargetIotInstanceID, r.TargetRegion = inst.ID, inst.Region
	} else {
		if _, err := s.policy(ctx, p.AccountID, in.PolicyID); err != nil {
			return Record{}, fmt.Errorf("policyId %s: %w", in.PolicyID, err)
		}
		r.PolicyID = in.PolicyID
	}
	if err := s.RecordStore().PutRecord(ctx, r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// RecordStore is the store's records as other writers on this node (the
// distribution jobs) must use them: a write drops the bootstraps' cached
// copy, so they see a moved device at once.
func (s *Service) RecordStore() RecordStore { return invalidating{s} }

// invalidating is the store's RecordStore, dropping the record cache's
// entry on each write.
type invalidating struct{ s *Service }

func (v invalidating) PutRecord(ctx context.Context, r Record) error {
	err := v.s.o.Store.PutRecord(ctx, r)
	v.s.records.Delete(cacheKey(r.ProductKey, r.DeviceName))
	return err
}

func (v invalidating) GetRecord(ctx context.Context, pk, dn string) (Record, error) {
	return v.s.o.Store.GetRecord(ctx, pk, dn)
}

func (v invalidating) ListRecords(ctx context.Context, pk, after string, limit int) ([]Record, error) {
	return v.s.o.Store.ListRecords(ctx, pk, after, limit)
}

func (v invalidating) DeleteRecord(ctx context.Context, pk, dn string) error {
	err := v.s.o.Store.DeleteRecord(ctx, pk, dn)
	v.s.records.Delete(cacheKey(pk, dn))
	return err
}

// GetRecord is a device's record (QueryDeviceProvisioning); a device
// without one is ErrNotFound (it bootstraps to the default instance).
func (s *Service) GetRecord(ctx context.Context, p registry.Principal, pk, dn string) (Record, error) {
	if err := s.owns(ctx, p, pk); err != nil {
		return Record{}, err
	}
	r, err := s.o.Store.GetRecord(ctx, pk, dn)
	if err != nil || r.AccountID != p.AccountID {
		return Record{}, fmt.Errorf("no provisioning record for %s/%s (it bootstraps to the default instance): %w", pk, dn, ErrNotFound)
	}
	return r, nil
}

// ListRecords lists a product's records by DeviceName after after.
func (s *Service) ListRecords(ctx context.Context, p registry.Principal, pk, after string, limit int) ([]Record, error) {
	if err := s.owns(ctx, p, pk); err != nil {
		return nil, err
	}
	rs, err := s.o.Store.ListRecords(ctx, pk, after, limit)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rs, func(r Record) bool { return r.AccountID != p.AccountID }), nil
}

// DeleteRecord deletes a device's record: it bootstraps to the default
// instance again.
func (s *Service) DeleteRecord(ctx context.Context, p registry.Principal, pk, dn string) error {
	if _, err := s.GetRecord(ctx, p, pk, dn); err != nil {
		return err
	}
	return s.RecordStore().DeleteRecord(ctx, pk, dn)
}

// --- policies ---

// PutPolicy creates (replace false) or replaces a proximity policy of
// the principal's account; every instance it names must be one the
// account sees.
func (s *Service) PutPolicy(ctx context.Context, p registry.Principal, pol Policy, replace bool) (Policy, error) {
	if err := pol.validate(); err != nil {
		return Policy{}, err
	}
	for _, id := range pol.instanceIDs() {
		if _, err := s.instance(ctx, p.AccountID, id); err != nil {
			return Policy{}, fmt.Errorf("regions: instance %s: %w", id, err)
		}
	}
	if pol.Webhook != "" {
		if s.o.Allocator == nil {
			return Policy{}, fmt.Errorf("webhook: %w: allocation webhooks are off on this corral", ErrInvalid)
		}
		if s.o.CheckURL != nil {
			if err := s.o.CheckURL(pol.Webhook); err != nil {
				return Policy{}, fmt.Errorf("webhook: %w: %v", ErrInvalid, err)
			}
		}
	}
	pol.AccountID = p.AccountID
	now := s.now()
	pol.GmtCreate, pol.GmtModified = now, now
	if replace {
		if old, err := s.o.Store.GetPolicy(ctx, p.AccountID, pol.ID); err == nil {
			pol.GmtCreate = old.GmtCreate
		} else {
			replace = false
		}
	}
	err := s.o.Store.PutPolicy(ctx, pol, replace)
	s.policies.Delete(cacheKey(p.AccountID, pol.ID))
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", pol.ID, err)
	}
	return pol, nil
}

// GetPolicy returns one of the account's policies.
func (s *Service) GetPolicy(ctx context.Context, p registry.Principal, id string) (Policy, error) {
	pol, err := s.o.Store.GetPolicy(ctx, p.AccountID, id)
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", id, err)
	}
	return pol, nil
}

// ListPolicies lists the account's policies.
func (s *Service) ListPolicies(ctx context.Context, p registry.Principal) ([]Policy, error) {
	return s.o.Store.ListPolicies(ctx, p.AccountID)
}

// DeletePolicy deletes one of the account's policies (ErrConflict while a
// record names it).
func (s *Service) DeletePolicy(ctx context.Context, p registry.Principal, id string) error {
	err := s.o.Store.DeletePolicy(ctx, p.AccountID, id)
	s.policies.Delete(cacheKey(p.AccountID, id))
	if err != nil {
		return fmt.Errorf("policy %s: %w", id, err)
	}
	return nil
}

// --- for distribution jobs ---

// Instance is an instance an account sees (its own, a system one, this
// corral), for a job's destination.
func (s *Service) Instance(ctx context.Context, accountID, id string) (Instance, error) {
	return s.instance(ctx, accountID, id)
}

// ChooseInstance applies an account's proximity policy to a device at
// addr (the zero Addr for an offline device: the policy's fallback
// region decides), as a bootstrap would, webhook included.
func (s *Service) ChooseInstance(ctx context.Context, accountID, policyID, pk, dn string, addr netip.Addr) (string, error) {
	pol, err := s.policy(ctx, accountID, policyID)
	if err != nil {
		return "", fmt.Errorf("policy %s: %w", policyID, err)
	}
	src := ""
	if addr.IsValid() {
		src = netip.AddrPortFrom(addr, 0).String()
	}
	id, rule := s.choose(ctx, &pol, Request{ProductKey: pk, DeviceName: dn, Source: src})
	if id == "" {
		return "", fmt.Errorf("policy %s: %w: no region matches the device and there is no fallback (rule %s)", policyID, ErrNotFound, rule)
	}
	return id, nil
}
