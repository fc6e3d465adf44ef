// Package shadowsvc is the device shadow service (issue 11): it keeps the
// documents of internal/shadow in the store, applies requests of both
// dialects (AWS and Alibaba) and of the REST API to them, checks them
// against each product's shadow settings (size limit, thing model,
// presence, history), and tells its observers of every accepted change
// (the MQTT side publishes deltas, control pushes and events; webhooks
// post to the product's event URLs).
//
// Authorization is the caller's: the REST API checks the principal, the
// broker the topic rights. The service sees every device of the instance.
package shadowsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
	"github.com/corral-iot/corral/internal/tsl"
)

// Devices is what the service reads of the registry: devices by their
// triple or thing name, products and their thing models.
type Devices interface {
	// LookupDeviceOwner returns a device's account and thing name (its
	// secret not needed; registry.ErrNotFound when none).
	LookupDeviceOwner(ctx context.Context, pk, dn string) (registry.Device, error)
	// LookupThing returns the device a thing name names.
	LookupThing(ctx context.Context, name string) (registry.Device, error)
	// LookupThingModel returns a product's thing model, nil when none.
	LookupThingModel(ctx context.Context, pk string) (*tsl.Model, error)
	// LookupProduct returns a product (for its event URLs).
	LookupProduct(ctx context.Context, pk string) (registry.Product, error)
}

// Options configure a Service.
type Options struct {
	Store    shadow.Store
	Settings SettingsStore
	Devices  Devices
	Now      func() time.Time
	Log      *slog.Logger
	// History is the default K (versions kept per shadow) of products
	// that did not set theirs; 0 means DefaultHistory.
	History int
}

// Origin says who sent a request, for the observers.
type Origin struct {
	Source     string // "aws", "alibaba", "rest", "presence"
	FromDevice bool   // the device itself (not an application)
}

// Change is one accepted change of a shadow, as observers are told.
type Change struct {
	Key       shadow.Key
	Thing     string
	AccountID string
	// Prev is empty (version 0) when the shadow was created; when
	// PrevStored is set, it may hold only its version (an update applied
	// in place): read the previous document from PrevStored.
	Prev, Cur shadow.Document
	Created   bool   // no live shadow before this change
	Deleted   bool   // Cur is the deleted document (its last state)
	Source    string // "aws", "alibaba", "rest", "presence"
	// FromDevice: the device itself sent it (not an application).
	FromDevice  bool
	ClientToken string
	// Delta is the AWS update/delta payload, nil if none (or not an AWS
	// update); Documents the AWS update/documents payload when the change
	// built it, else nil (an AWS update's is built from PrevStored and
	// CurStored by who publishes it, only when someone will receive it).
	Delta, Documents []byte
	// PrevStored and CurStored are Prev's and Cur's stored form
	// (Document.MarshalJSON) when the service has them at hand, else nil.
	PrevStored, CurStored []byte
	// DesiredChanged: the change set or cleared desired.
	DesiredChanged bool
	// Reason is why a session ended (Source "presence", connected false).
	Reason string
	At     time.Time
}

// Observer is told of every accepted change, after it is stored, on the
// goroutine of the request and under the shadow's writer lock, so that one
// shadow's changes arrive in version order. It must not block, nor write
// to a shadow of the Service.
type Observer interface {
	ShadowChanged(ctx context.Context, c Change)
}

// Service applies shadow requests. It is safe for concurrent use.
type Service struct {
	o   Options
	now func() time.Time
	log *slog.Logger

	// Lock order: a shadow's writer lock (writers), then mu. mu is held
	// only to read or append observers.
	mu        sync.RWMutex // guards observers
	observers []Observer
	settings  *cache.Cache[string, Settings]      // by ProductKey
	devices   *cache.Cache[[2]string, deviceInfo] // by ProductKey, DeviceName
	// changed holds the devices deleted or renamed lately, whose presence
	// events may carry what they were (knowDevice).
	changed *cache.Cache[[2]string, struct{}]
	// docs holds the stored form of the documents this node last stored
	// (put, and presence's batches), so that a shadow's next AWS update
	// or presence write does not read it. Only the writes use it (under
	// the shadow's writer lock): a document another node changed is
	// caught by the store's version check (ErrStale) or by ApplyAWS's
	// (409), and read again. A delete drops its entry.
	docs *docCache

	// writers serialise the writes of one shadow on this node: a
	// read-apply-write then loses to ErrStale only when another node
	// wrote, and observers hear one shadow's changes in version order.
	writers keyLocks
}

// keyLocks is a mutex per shadow in use, dropped when its last holder or
// waiter leaves, so that writers of different shadows never wait for
// each other (a write waits for its durable commit).
type keyLocks struct {
	mu sync.Mutex // guards m and free; held only to find or drop an entry, never while waiting
	m  map[shadow.Key]*keyLock
	// free holds dropped entries for new ones (at most maxFreeLocks): a
	// device's updates each took and dropped one, an allocation an update.
	free []*keyLock
}

// maxFreeLocks bounds keyLocks.free.
const maxFreeLocks = 64

type keyLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by keyLocks.mu
}

// lock takes the writer lock of a shadow; its unlock releases it.
func (l *keyLocks) lock(k shadow.Key) held {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[shadow.Key]*keyLock{}
	}
	e := l.m[k]
	if e == nil {
		if n := len(l.free); n > 0 {
			e, l.free = l.free[n-1], l.free[:n-1]
		} else {
			e = &keyLock{}
		}
		l.m[k] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	return held{l: l, k: k, e: e}
}

// held is a shadow's writer lock, taken (a value, not a closure: an
// update takes one).
type held struct {
	l *keyLocks
	k shadow.Key
	e *keyLock
}

func (h held) unlock() {
	h.e.mu.Unlock()
	h.l.mu.Lock()
	if h.e.refs--; h.e.refs == 0 {
		// No holder or waiter is left (each counted itself in refs
		// under l.mu before waiting): the entry can serve another shadow.
		delete(h.l.m, h.k)
		if len(h.l.free) < maxFreeLocks {
			h.l.free = append(h.l.free, h.e)
		}
	}
	h.l.mu.Unlock()
}

func (s *Service) lock(k shadow.Key) held { return s.writers.lock(k) }

// maxAttempts bounds the retries of a write that lost a race with
// another writer of the same shadow (ErrStale).
const maxAttempts = 10

// New returns a Service.
func New(o Options) *Service {
	s := &Service{o: o, now: o.Now, log: o.Log}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.o.History <= 0 {
		s.o.History = DefaultHistory
	}
	s.settings = cache.New[string, Settings](cache.Options{TTL: settingsTTL, MaxSize: 10_000, Now: s.now})
	s.devices = cache.New[[2]string, deviceInfo](cache.Options{TTL: settingsTTL, MaxSize: 100_000, Now: s.now})
	s.changed = cache.New[[2]string, struct{}](cache.Options{TTL: changedTTL, MaxSize: 100_000, Now: s.now})
	s.docs = newDocCache(docCacheBytes, docCacheParsed)
	return s
}

// AddObserver registers an observer of changes.
func (s *Service) AddObserver(o Observer) {
	s.mu.Lock()
	s.observers = append(s.observers, o)
	s.mu.Unlock()
}

func (s *Service) notify(ctx context.Context, c Change) {
	s.mu.RLock()
	obs := s.observers
	s.mu.RUnlock()
	for _, o := range obs {
		o.ShadowChanged(ctx, c)
	}
}

// deviceInfo is what the service keeps of a device, cached by triple.
type deviceInfo struct {
	AccountID, ThingName string
}

// device returns the device of a shadow (registry.ErrNotFound when there
// is none), from the cache.
func (s *Service) device(ctx context.Context, k shadow.Key) (deviceInfo, error) {
	return s.devices.GetOrLoad([2]string{k.ProductKey, k.DeviceName}, func() (deviceInfo, error) {
		d, err := s.o.Devices.LookupDeviceOwner(ctx, k.ProductKey, k.DeviceName)
		if err != nil {
			return deviceInfo{}, err
		}
		return deviceInfo{AccountID: d.AccountID, ThingName: d.ThingName}, nil
	})
}

// changedTTL is how long a device deleted or renamed is read from the
// registry for its presence rather than believed from its events: longer
// than an event waits in the presence queues.
const changedTTL = 10 * time.Minute

// knowDevice caches what the broker read of a device at CONNECT (carried
// by its presence events), so that presence is written without reading
// the registry, unless the device was deleted or renamed lately: an event
// may predate that, and the registry is read instead.
func (s *Service) knowDevice(pk, dn string, d deviceInfo) {
	k := [2]string{pk, dn}
	if _, changed := s.changed.Get(k); changed {
		return
	}
	_, _ = s.devices.GetOrLoad(k, func() (deviceInfo, error) { return d, nil })
}

// DeviceChanged implements registry.Observer: a device is read again
// after any change (deleted, renamed).
func (s *Service) DeviceChanged(_ context.Context, kind registry.DeviceEventKind, d registry.Device) {
	if kind == registry.DeviceDeleted || kind == registry.DeviceRenamed {
		s.changed.Set([2]string{d.ProductKey, d.DeviceName}, struct{}{})
	}
	s.devices.Delete([2]string{d.ProductKey, d.DeviceName})
	s.docs.delete(shadow.Key{ProductKey: d.ProductKey, DeviceName: d.DeviceName})
}

// current reads a shadow: the document a request applies to and the
// version a write of it is based on (0 for none or a tombstone); live
// is false when no live shadow is stored.
func (s *Service) current(ctx context.Context, k shadow.Key, now time.Time) (doc shadow.Document, prev int64, live bool, err error) {
	doc, prev, live, _, err = s.read(ctx, k, now)
	return doc, prev, live, err
}

// read is current, with the stored form of a live shadow's document.
func (s *Service) read(ctx context.Context, k shadow.Key, now time.Time) (doc shadow.Document, prev int64, live bool, stored []byte, err error) {
	st, err := s.o.Store.GetShadow(ctx, k)
	switch {
	case errors.Is(err, shadow.ErrNoShadow):
		return shadow.New(nil, now), 0, false, nil, nil
	case err != nil:
		return shadow.Document{}, 0, false, nil, fmt.Errorf("reading shadow: %w", err)
	case st.Deleted:
		return shadow.New(st.Tomb(), now), 0, false, nil, nil
	}
	doc, err = shadow.Parse(st.Doc)
	if err != nil {
		return shadow.Document{}, 0, false, nil, fmt.Errorf("reading shadow: %w", err)
	}
	return doc, st.Version, true, st.Doc, nil
}

// latest is current for a write: from the stored form this node kept of
// k's document (hit), else read from the store; stored is the document's
// stored form when live. own says doc was made for this call (parsed, or
// new): the write may change it (shadow.ApplyAWSLeanInPlace); otherwise it
// is the one kept parsed, which others read.
func (s *Service) latest(ctx context.Context, k shadow.Key, now time.Time) (doc shadow.Document, prev int64, live, hit bool, stored []byte, own bool, err error) {
	if b, doc, parsed, ok := s.docs.get(k); ok {
		if parsed {
			return doc, doc.Version, true, true, b, false, nil
		}
		if doc, err := shadow.Parse(b); err == nil {
			return doc, doc.Version, true, true, b, true, nil
		}
		s.docs.delete(k) // not expected: it was encoded here
	}
	doc, prev, live, stored, err = s.read(ctx, k, now)
	return doc, prev, live, false, stored, true, err
}

// put stores next on version prev and returns its stored form; it drops
// k's cached document first and keeps next once stored, so that
// whichever way the write goes, k's next AWS update starts from what the
// store holds (a presence write just before a device's first update
// spares that update the read and the parse).
// b, when not nil, is next's stored form, already encoded; parsed is
// false when next holds only the version (b is the document then), so
// that only b is kept.
func (s *Service) put(ctx context.Context, k shadow.Key, prev int64, next shadow.Document, b []byte, now time.Time, history int, parsed bool) ([]byte, error) {
	s.docs.delete(k)
	if b == nil {
		var err error
		if b, err = next.MarshalJSON(); err != nil {
			return nil, fmt.Errorf("encoding shadow: %w", err)
		}
	}
	if err := s.o.Store.PutShadow(ctx, k, prev, shadow.Stored{Doc: b, Version: next.Version, UpdatedAt: now}, history); err != nil {
		return nil, err
	}
	if parsed {
		s.docs.set(k, b, next)
	} else {
		s.docs.setStored(k, b)
	}
	return b, nil
}

// awsFail turns an internal failure into AWS's 500, logged without the
// payload.
func (s *Service) awsFail(k shadow.Key, err error, token string, now time.Time) *shadow.ErrorAWS {
	s.log.Error("shadow request failed", "productKey", k.ProductKey, "deviceName", k.DeviceName, "shadow", k.Name, "err", err)
	return shadow.NewErrorAWS(http.StatusInternalServerError, shadow.MsgInternal, token, now)
}

// awsLookup resolves the device of an AWS request: 404 "Thing not found"
// when there is none, 400 for an invalid shadow name.
func (s *Service) awsLookup(ctx context.Context, k shadow.Key, token string, now time.Time) (deviceInfo, error) {
	if k.Name != "" && !shadow.ValidName(k.Name) {
		return deviceInfo{}, shadow.NewErrorAWS(http.StatusBadRequest, MsgInvalidName, token, now)
	}
	d, err := s.device(ctx, k)
	if errors.Is(err, registry.ErrNotFound) {
		return d, shadow.NewErrorAWS(http.StatusNotFound, shadow.MsgThingNotFound, token, now)
	}
	if err != nil {
		return d, s.awsFail(k, err, token, now)
	}
	return d, nil
}

// MsgInvalidName answers a request naming a shadow outside
// [$a-zA-Z0-9:_-]{1,64} (the REST API's; on MQTT such a topic is no
// shadow topic).
const MsgInvalidName = "Invalid shadow name"

// noShadow is AWS's 404 for a shadow not stored: named by its name, the
// classic one by its thing name.
func noShadow(k shadow.Key, thing, token string, now time.Time) *shadow.ErrorAWS {
	name := k.Name
	if name == "" {
		name = thing
	}
	return shadow.NewErrorAWS(http.StatusNotFound, shadow.MsgNoShadow(name), token, now)
}

// requestToken reads the clientToken of a request for echoing in refusals
// the core does not make (an unreadable or overlong one is not echoed).
func requestToken(req []byte) string {
	var r struct {
		ClientToken string `json:"clientToken"`
	}
	if json.Unmarshal(req, &r) != nil || len(r.ClientToken) > shadow.MaxClientToken {
		return ""
	}
	return r.ClientToken
}

// UpdateAWS applies an AWS update request (from MQTT or REST) to a shadow,
// creating it if needed, and stores it on the version it read (retrying
// when another writer came first). A refusal is an *shadow.ErrorAWS.
func (s *Service) UpdateAWS(ctx context.Context, k shadow.Key, req []byte, o Origin) (shadow.UpdateAWS, error) {
	now := s.now()
	// The token is read again only for refusals made here: ApplyAWS
	// reads it for everything else (a second decoding of every request
	// was a few per cent of an update's cost).
	d, err := s.awsLookup(ctx, k, "", now)
	if err != nil {
		if e := (*shadow.ErrorAWS)(nil); errors.As(err, &e) {
			e.ClientToken = requestToken(req)
		}
		return shadow.UpdateAWS{}, err
	}
	set, err := s.Settings(ctx, k.ProductKey)
	if err != nil {
		return shadow.UpdateAWS{}, s.awsFail(k, err, requestToken(req), now)
	}
	unlock := s.lock(k).unlock
	defer unlock()
	for range maxAttempts {
		from, res, err := s.applyAWS(ctx, k, req, now, set.limits(), o)
		if err != nil {
			if e := (*shadow.ErrorAWS)(nil); from.hit && errors.As(err, &e) && e.Code == http.StatusConflict {
				s.docs.delete(k) // another node may have written: read it
				continue
			}
			return shadow.UpdateAWS{}, err
		}
		if set.CheckThingModel {
			if err := s.checkModel(ctx, k.ProductKey, req, false); err != nil {
				if errors.Is(err, errCheck) {
					return shadow.UpdateAWS{}, shadow.NewErrorAWS(http.StatusBadRequest, err.Error(), requestToken(req), now)
				}
				return shadow.UpdateAWS{}, s.awsFail(k, err, requestToken(req), now)
			}
		}
		b, err := s.put(ctx, k, from.prev, res.Next, res.Stored, now, set.History, !from.merged)
		if errors.Is(err, shadow.ErrStale) {
			continue
		}
		if err != nil {
			return shadow.UpdateAWS{}, s.awsFail(k, err, requestToken(req), now)
		}
		prevD, changed := prevDoc(from.doc, from.live), false
		if res.InPlace || from.merged {
			// doc is Next now, or neither was parsed: the observers read
			// the previous document from stored (when it was live) and its
			// version; its desired was not touched.
			prevD = shadow.Document{Version: from.prev}
		} else {
			changed = desiredChanged(from.doc, res.Next)
		}
		s.notify(ctx, Change{Key: k, Thing: d.ThingName, AccountID: d.AccountID, Prev: prevD, Cur: res.Next,
			Created: !from.live, Source: o.Source, FromDevice: o.FromDevice, ClientToken: res.ClientToken,
			Delta: res.Delta, PrevStored: from.stored, CurStored: b,
			DesiredChanged: changed, At: now})
		return res, nil
	}
	return shadow.UpdateAWS{}, s.awsFail(k, errors.New("too many concurrent writers"), requestToken(req), now)
}

// awsStart is the document an AWS update applied to.
type awsStart struct {
	doc    shadow.Document // only its version when merged
	prev   int64           // its version
	stored []byte          // its stored form, when at hand
	live   bool            // a shadow was stored
	hit    bool            // it came from the documents cache
	merged bool            // the update was merged into stored (shadow.ApplyAWSStored): Next holds only the version
}

// applyAWS applies an AWS update request to k's latest document: a
// device's report of leaves merged into the stored form kept for k, when
// it is one ApplyAWSStored merges (no AWS subscriber needs the parsed
// documents then: update/documents is built from the stored forms, a
// change with no desired has no delta), even when the document is kept
// parsed too (as cheap, less allocated, and the shadow is kept unparsed
// from then on); else the document parsed (from the cache or the store)
// and the request applied to it. A refusal is
// the request's *shadow.ErrorAWS or the service's failure.
func (s *Service) applyAWS(ctx context.Context, k shadow.Key, req []byte, now time.Time, lim shadow.Limits, o Origin) (awsStart, shadow.UpdateAWS, error) {
	if b, _, _, ok := s.docs.get(k); ok && o.Source == sourceAWS {
		res, merged, err := shadow.ApplyAWSStored(b, req, now, lim)
		if merged {
			prev := res.Next.Version - 1
			if err != nil {
				prev = -1 // not read: a refusal says nothing of it
			}
			return awsStart{doc: shadow.Document{Version: prev}, prev: prev, stored: b, live: true, hit: true, merged: true}, res, err
		}
	}
	doc, prev, live, hit, stored, own, err := s.latest(ctx, k, now)
	from := awsStart{doc: doc, prev: prev, stored: stored, live: live, hit: hit}
	if err != nil {
		return from, shadow.UpdateAWS{}, s.awsFail(k, err, requestToken(req), now)
	}
	// No update/documents here: the MQTT side builds it from the stored
	// forms when someone subscribed to it.
	apply := shadow.ApplyAWSLean
	if own {
		apply = shadow.ApplyAWSLeanInPlace
	}
	res, err := apply(doc, req, now, lim)
	return from, res, err
}

// prevDoc is the document a change started from: empty but for the
// version when no live shadow was stored.
func prevDoc(doc shadow.Document, live bool) shadow.Document {
	if live {
		return doc
	}
	return shadow.Document{Version: doc.Version}
}

func desiredChanged(a, b shadow.Document) bool { return !shadow.SameDesired(a, b) }

// GetAWS answers an AWS get: the get/accepted payload, or an
// *shadow.ErrorAWS (404 when the thing or the shadow does not exist).
func (s *Service) GetAWS(ctx context.Context, k shadow.Key, clientToken string) ([]byte, error) {
	now := s.now()
	if len(clientToken) > shadow.MaxClientToken {
		return nil, shadow.NewErrorAWS(http.StatusBadRequest, shadow.MsgInvalidToken, "", now)
	}
	d, err := s.awsLookup(ctx, k, clientToken, now)
	if err != nil {
		return nil, err
	}
	doc, _, live, err := s.current(ctx, k, now)
	if err != nil {
		return nil, s.awsFail(k, err, clientToken, now)
	}
	if !live {
		return nil, noShadow(k, d.ThingName, clientToken, now)
	}
	return shadow.GetAWS(doc, now, clientToken), nil
}

// DeleteAWS deletes a shadow, keeping a tombstone with its version:
// the delete/accepted payload, or an *shadow.ErrorAWS (404 when the thing
// or the shadow does not exist).
func (s *Service) DeleteAWS(ctx context.Context, k shadow.Key, clientToken string, o Origin) ([]byte, error) {
	now := s.now()
	if len(clientToken) > shadow.MaxClientToken {
		return nil, shadow.NewErrorAWS(http.StatusBadRequest, shadow.MsgInvalidToken, "", now)
	}
	d, err := s.awsLookup(ctx, k, clientToken, now)
	if err != nil {
		return nil, err
	}
	unlock := s.lock(k).unlock
	defer unlock()
	for range maxAttempts {
		doc, prev, live, err := s.current(ctx, k, now)
		if err != nil {
			return nil, s.awsFail(k, err, clientToken, now)
		}
		if !live {
			return nil, noShadow(k, d.ThingName, clientToken, now)
		}
		_, payload := shadow.DeleteAWS(doc, now)
		s.docs.delete(k)
		err = s.o.Store.DeleteShadow(ctx, k, prev, now)
		if errors.Is(err, shadow.ErrStale) {
			continue
		}
		if errors.Is(err, shadow.ErrNoShadow) {
			return nil, noShadow(k, d.ThingName, clientToken, now)
		}
		if err != nil {
			return nil, s.awsFail(k, err, clientToken, now)
		}
		s.notify(ctx, Change{Key: k, Thing: d.ThingName, AccountID: d.AccountID, Prev: doc, Cur: doc, Deleted: true,
			Source: o.Source, FromDevice: o.FromDevice, ClientToken: clientToken, At: now})
		return payload, nil
	}
	return nil, s.awsFail(k, errors.New("too many concurrent writers"), clientToken, now)
}

// Alibaba answers a request on /shadow/update/{pk}/{dn} against the
// device's classic shadow (k.Name is ignored). The result's Reply is to be
// published on /shadow/get/{pk}/{dn}, refusals included (a refusal is also
// returned as an *shadow.AlibabaError). fromDevice says whether the device
// sent it (else an application did).
func (s *Service) Alibaba(ctx context.Context, k shadow.Key, req []byte, fromDevice bool) (shadow.AlibabaResult, error) {
	k.Name = ""
	now := s.now()
	fail := func(version int64, err error) (shadow.AlibabaResult, error) {
		s.log.Error("shadow request failed", "productKey", k.ProductKey, "deviceName", k.DeviceName, "err", err)
		e := &shadow.AlibabaError{Code: shadow.AliServerError, Message: "server error"}
		return shadow.AlibabaResult{Reply: e.Reply(version, now)}, e
	}
	d, err := s.device(ctx, k)
	if err != nil {
		// An unknown device has no shadow topic to be answered on.
		return shadow.AlibabaResult{}, fmt.Errorf("shadow of %s/%s: %w", k.ProductKey, k.DeviceName, err)
	}
	set, err := s.Settings(ctx, k.ProductKey)
	if err != nil {
		return fail(0, err)
	}
	unlock := s.lock(k).unlock
	defer unlock()
	for range maxAttempts {
		doc, prev, live, err := s.current(ctx, k, now)
		if err != nil {
			return fail(0, err)
		}
		res, err := shadow.ApplyAlibaba(doc, req, now, set.limits())
		if err != nil || !res.Changed {
			return res, err
		}
		if set.CheckThingModel && res.Method == "update" {
			if err := s.checkModel(ctx, k.ProductKey, req, true); err != nil {
				if errors.Is(err, errCheck) {
					e := &shadow.AlibabaError{Code: shadow.AliBadJSON, Message: err.Error()}
					return shadow.AlibabaResult{Method: res.Method, Reply: e.Reply(doc.Version, now)}, e
				}
				return fail(doc.Version, err)
			}
		}
		_, err = s.put(ctx, k, prev, res.Next, nil, now, set.History, true)
		if errors.Is(err, shadow.ErrStale) {
			continue
		}
		if err != nil {
			return fail(doc.Version, err)
		}
		s.notify(ctx, Change{Key: k, Thing: d.ThingName, AccountID: d.AccountID, Prev: prevDoc(doc, live), Cur: res.Next,
			Created: !live, Source: "alibaba", FromDevice: fromDevice, DesiredChanged: res.DesiredChanged, At: now})
		return res, nil
	}
	return fail(0, errors.New("too many concurrent writers"))
}

// Document returns a live shadow's document: registry.ErrNotFound when
// the device does not exist, shadow.ErrNoShadow when the shadow does not.
func (s *Service) Document(ctx context.Context, k shadow.Key) (shadow.Document, error) {
	if _, err := s.device(ctx, k); err != nil {
		return shadow.Document{}, err
	}
	doc, _, live, err := s.current(ctx, k, s.now())
	if err == nil && !live {
		err = shadow.ErrNoShadow
	}
	return doc, err
}

// WithDocument calls fn with a live shadow's document under the shadow's
// writer lock (errors as Document's), so that what fn publishes of it is
// ordered with the changes observers are told of: a push of what waits
// for a device (at SUBSCRIBE, at session start) may repeat the push of a
// change, never follow a newer one with an older document.
func (s *Service) WithDocument(ctx context.Context, k shadow.Key, fn func(shadow.Document)) error {
	unlock := s.lock(k).unlock
	defer unlock()
	doc, err := s.Document(ctx, k)
	if err != nil {
		return err
	}
	fn(doc)
	return nil
}

// Since answers "what changed since version" from the versions kept:
// shadow.ErrVersionNotKept (wrapped) when the history does not reach back
// to it, so the caller answers with the whole document.
func (s *Service) Since(ctx context.Context, k shadow.Key, version int64) (shadow.Changes, error) {
	doc, err := s.Document(ctx, k)
	if err != nil {
		return shadow.Changes{}, err
	}
	if version >= doc.Version {
		return shadow.Changes{From: doc.Version, To: doc.Version}, nil // as ChangedSince says it, without reading the history
	}
	hist, err := s.o.Store.ShadowHistory(ctx, k, max(version-1, 0))
	if err != nil {
		return shadow.Changes{}, fmt.Errorf("reading shadow history: %w", err)
	}
	docs := make([]shadow.Document, 0, len(hist)+1)
	for _, h := range hist {
		d, err := shadow.Parse(h.Doc)
		if err != nil {
			return shadow.Changes{}, fmt.Errorf("reading shadow history: %w", err)
		}
		docs = append(docs, d)
	}
	docs = append(docs, doc) // the current one, whatever the history kept
	return shadow.ChangedSince(docs, version)
}

// List lists a device's named shadows in name order after after, at most
// limit (registry.ErrNotFound when the device does not exist).
func (s *Service) List(ctx context.Context, pk, dn, after string, limit int) ([]string, error) {
	if _, err := s.device(ctx, shadow.Key{ProductKey: pk, DeviceName: dn}); err != nil {
		return nil, err
	}
	names, err := s.o.Store.ListShadows(ctx, pk, dn, after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing shadows: %w", err)
	}
	return names, nil
}

// History returns the versions kept of a live shadow, oldest first.
func (s *Service) History(ctx context.Context, k shadow.Key) ([]shadow.Stored, error) {
	if _, err := s.Document(ctx, k); err != nil {
		return nil, err
	}
	h, err := s.o.Store.ShadowHistory(ctx, k, 0)
	if err != nil {
		return nil, fmt.Errorf("reading shadow history: %w", err)
	}
	return h, nil
}

// SetConnected records a device's presence in its classic shadow as
// reported.connected, when the product's presence setting is on: its
// metadata leaf is {"timestamp":at} and, when a session ended with one,
// "reason" (e.g. "keepalive timeout"). Observers are told the reason too.
func (s *Service) SetConnected(ctx context.Context, pk, dn string, connected bool, reason string, at time.Time) error {
	return s.setConnected(ctx, pk, dn, connected, reason, at, nil)
}

// setConnected is SetConnected; read, when not nil, is given the live
// document the write starts from (once, before any write or observer),
// so a session start delivers what waits from the same read. It is not
// called when the product does not keep presence or the device is not
// found.
func (s *Service) setConnected(ctx context.Context, pk, dn string, connected bool, reason string, at time.Time, read func(doc shadow.Document, live bool)) error {
	errs := s.setConnectedAll(ctx, []presenceWrite{{pk: pk, dn: dn, connected: connected, reason: reason, at: at, read: read}})
	return errs[0]
}

// presenceWrite is one device's presence, for setConnectedAll.
type presenceWrite struct {
	pk, dn    string
	connected bool
	reason    string
	at        time.Time
	read      func(doc shadow.Document, live bool) // as setConnected's
	// first: the device's first session, whose shadow is written as a
	// create where none is stored (shadow.NoneStored) without reading it
	// first; anything stored makes the write stale, read and done again.
	first bool
}

// staged is a presence write read and applied, waiting for its commit
// under its shadow's writer lock.
type staged struct {
	i      int
	k      shadow.Key
	d      deviceInfo
	set    Settings
	doc    shadow.Document
	live   bool
	res    shadow.UpdateAWS
	stored []byte // res.Next's stored form
	// prevStored is doc's stored form when kept, else nil.
	prevStored []byte
	// assumed: doc is the empty document assumed for a first session,
	// not read; its write's read func is called once the write is done.
	assumed bool
	unlock  func()
}

// setConnectedAll is setConnected of several devices (each once), their
// shadows written in one store transaction; it returns each one's error.
// A write that lost to another writer is done again alone.
func (s *Service) setConnectedAll(ctx context.Context, ws []presenceWrite) []error {
	errs := make([]error, len(ws))
	stage := make([]staged, 0, len(ws))
	puts := make([]shadow.Put, 0, len(ws))
	defer func() { // on a panic, release what is held
		for _, x := range stage {
			if x.unlock != nil {
				x.unlock()
			}
		}
	}()
	for i, w := range ws {
		k := shadow.Key{ProductKey: w.pk, DeviceName: w.dn}
		set, err := s.Settings(ctx, w.pk)
		if err != nil || !set.Presence {
			errs[i] = err
			continue
		}
		d, err := s.device(ctx, k)
		if err != nil {
			errs[i] = err
			continue
		}
		unlock := s.lock(k).unlock
		// The document this node last stored, when kept (a session's
		// end after its start), else the store's: a write on a version
		// another node moved fails (ErrStale) and is done again alone.
		// A device's first session assumes none is stored, unless this
		// node kept what it stored.
		var (
			doc           shadow.Document
			prev          int64
			live, assumed bool
			prevStored    []byte
		)
		if w.first {
			_, _, _, kept := s.docs.get(k)
			assumed = !kept
		}
		if assumed {
			doc, prev, live = shadow.New(nil, w.at), shadow.NoneStored, false
		} else if doc, prev, live, _, prevStored, _, err = s.latest(ctx, k, w.at); err != nil {
			unlock()
			errs[i] = err
			continue
		}
		if w.read != nil && !assumed {
			w.read(doc, live)
		}
		if v, ok := doc.Reported["connected"].(bool); live && ok && v == w.connected {
			unlock()
			continue // already so: no new version
		}
		res, b, err := presenceNext(doc, w.connected, w.reason, w.at, set)
		if err != nil {
			unlock()
			errs[i] = fmt.Errorf("presence in shadow of %s/%s: %w", w.pk, w.dn, err)
			continue
		}
		s.docs.delete(k)
		puts = append(puts, shadow.Put{Key: k, Prev: prev, S: shadow.Stored{Doc: b, Version: res.Next.Version, UpdatedAt: w.at}, Keep: set.History})
		stage = append(stage, staged{i: i, k: k, d: d, set: set, doc: doc, live: live, res: res, stored: b, prevStored: prevStored, assumed: assumed, unlock: unlock})
	}
	var perrs []error
	var err error
	switch len(puts) {
	case 0:
	case 1: // PutShadow may take the writer's single-statement path
		perrs = []error{s.o.Store.PutShadow(ctx, puts[0].Key, puts[0].Prev, puts[0].S, puts[0].Keep)}
	default:
		perrs, err = s.o.Store.PutShadows(ctx, puts)
	}
	for j := range stage {
		x := &stage[j]
		w := ws[x.i]
		e := err
		if e == nil {
			e = perrs[j]
		}
		read := w.read
		if !x.assumed {
			read = nil // called already
		}
		switch {
		case errors.Is(e, shadow.ErrStale):
			e = s.connectedLocked(ctx, x.k, x.d, x.set, w.connected, w.reason, w.at, read)
		case e == nil:
			if read != nil {
				read(x.doc, false)
			}
			s.docs.set(x.k, x.stored, x.res.Next)
			s.notify(ctx, Change{Key: x.k, Thing: x.d.ThingName, AccountID: x.d.AccountID, Prev: prevDoc(x.doc, x.live), Cur: x.res.Next,
				Created: !x.live, Source: sourcePresence, Reason: w.reason, Delta: x.res.Delta, PrevStored: x.prevStored, CurStored: x.stored, At: w.at})
		}
		errs[x.i] = e
		x.unlock()
		x.unlock = nil
	}
	return errs
}

// presenceNext applies a presence to doc: the next document and its
// stored form. No update/accepted or update/documents payload: the MQTT
// side builds the latter from the stored forms when someone subscribed to
// it. The metadata leaf of a session's end says why, beside when.
func presenceNext(doc shadow.Document, connected bool, reason string, at time.Time, set Settings) (shadow.UpdateAWS, []byte, error) {
	if connected {
		reason = ""
	}
	res, err := shadow.SetReportedLeaf(doc, "connected", connected, reason, at, set.limits())
	return res, res.Stored, err
}

// connectedLocked writes a presence under the shadow's writer lock, read
// again and retried while other writers come first; read, when not nil,
// is given the first document read, as setConnected's.
func (s *Service) connectedLocked(ctx context.Context, k shadow.Key, d deviceInfo, set Settings, connected bool, reason string, at time.Time,
	read func(doc shadow.Document, live bool)) error {
	for range maxAttempts {
		doc, prev, live, err := s.current(ctx, k, at)
		if err != nil {
			return err
		}
		if read != nil {
			read(doc, live)
			read = nil
		}
		if v, ok := doc.Reported["connected"].(bool); live && ok && v == connected {
			return nil // already so: no new version
		}
		res, b, err := presenceNext(doc, connected, reason, at, set)
		if err != nil {
			return fmt.Errorf("presence in shadow of %s/%s: %w", k.ProductKey, k.DeviceName, err)
		}
		_, err = s.put(ctx, k, prev, res.Next, b, at, set.History, true)
		if errors.Is(err, shadow.ErrStale) {
			continue
		}
		if err != nil {
			return err
		}
		s.notify(ctx, Change{Key: k, Thing: d.ThingName, AccountID: d.AccountID, Prev: prevDoc(doc, live), Cur: res.Next,
			Created: !live, Source: sourcePresence, Reason: reason, Delta: res.Delta, CurStored: b, At: at})
		return nil
	}
	return fmt.Errorf("presence in shadow of %s/%s: %w", k.ProductKey, k.DeviceName, shadow.ErrStale)
}
