// Package provision owns how a device that knows little gets its own
// identity: Alibaba-compatible dynamic registration (HTTPS and MQTT, with
// and without pre-registration), register-or-query, client-driven
// registration against allowlist rules and per-device tokens, the
// pre-registration hook, registration events, rate limits and the audit
// trail of every attempt.
package provision

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/cache"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/registry"
)

// Registry is what registration needs of the registry.
type Registry interface {
	LookupProduct(ctx context.Context, pk string) (registry.Product, error)
	Register(ctx context.Context, r registry.Registration) (registry.Device, registry.RegisterOutcome, error)
	IssueToken(ctx context.Context, pk, dn string) (clientID, token string, err error)
	LookupRegistrationKey(ctx context.Context, pk string) (string, error)
	VerifyToken(ctx context.Context, pk, dn, clientID, token string) (bool, error)
}

// Webhooks calls user functions.
type Webhooks interface {
	Call(ctx context.Context, url string, v any, out any, timeout time.Duration) error
	Post(url string, v any)
}

// Auditor records attempts.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry)
}

// Publisher publishes corral events to application clients.
type Publisher interface {
	PublishEvent(topic string, payload []byte)
}

// Options configure the Service.
type Options struct {
	Registry Registry
	Webhooks Webhooks // optional
	Auditor  Auditor  // optional
	Logger   *slog.Logger
	Now      func() time.Time
	// Rate limits (registrations per second, burst twice that); 0 is off.
	RatePerIP      float64
	RatePerProduct float64
	// Endpoints is what client-driven registration tells a device to
	// connect to, e.g. {"mqtt": "tcp://iot.example.com:1883"}.
	Endpoints map[string]string
}

// Service runs registrations.
type Service struct {
	o   Options
	log *slog.Logger

	pubMu sync.RWMutex
	pub   Publisher

	cas      *cache.Cache[struct{}, caSet]
	products *cache.Cache[string, registry.Product]

	limMu    sync.Mutex
	ipLims   limiters // guarded by limMu
	prodLims limiters // guarded by limMu
}

// New returns a Service.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o, log: o.Logger, ipLims: limiters{m: map[string]*rate.Limiter{}}, prodLims: limiters{m: map[string]*rate.Limiter{}},
		cas:      cache.New[struct{}, caSet](cache.Options{TTL: caTTL, MaxSize: 1, Now: o.Now}),
		products: cache.New[string, registry.Product](cache.Options{TTL: productTTL, Now: o.Now})}
}

// SetPublisher sets where registration events are published (the broker,
// which is built after this service).
func (s *Service) SetPublisher(p Publisher) {
	s.pubMu.Lock()
	s.pub = p
	s.pubMu.Unlock()
}

// SetEndpoints sets the endpoints client-driven registration hands out
// (known once the listeners are bound).
func (s *Service) SetEndpoints(e map[string]string) {
	s.pubMu.Lock()
	s.o.Endpoints = e
	s.pubMu.Unlock()
}

// Path names a registration path.
type Path string

// Registration paths.
const (
	PathHTTPS       Path = "https"        // POST /auth/register/device
	PathMQTT        Path = "mqtt"         // authType=register
	PathMQTTNoPre   Path = "mqtt-regnwl"  // authType=regnwl
	PathClient      Path = "client"       // POST /v1/register
	PathSubRegister Path = "sub-register" // thing.sub.register (gateways)
	PathCertificate Path = "certificate"  // JITR/JITP on the TLS listener
)

// Request is one registration attempt.
type Request struct {
	Path       Path
	ProductKey string
	DeviceName string
	Random     string
	Sign       string
	SignMethod string
	// Token and Metadata are client-driven registration's.
	Token    string
	Metadata map[string]string
	Source   string // remote address, for limits and the audit trail
}

// Result is a successful registration.
type Result struct {
	Device  registry.Device
	Outcome registry.RegisterOutcome
	// ClientID and DeviceToken are set for registration-free MQTT (regnwl).
	ClientID    string
	DeviceToken string
	Endpoints   map[string]string
}

// Error is a refused registration: a sentinel kind, the Alibaba-style
// numeric code devices see, and a reason safe to show them.
type Error struct {
	Kind   error
	Code   int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

// Unwrap exposes the kind to errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

// Kinds of refusal.
var (
	ErrInvalid           = errors.New("request parameter error")
	ErrBadSignature      = errors.New("signature check failed")
	ErrUnknownProduct    = errors.New("product not found")
	ErrNotEnabled        = errors.New("registration not enabled for the product")
	ErrUnknownDevice     = errors.New("device not pre-registered")
	ErrAlreadyRegistered = errors.New("device already registered")
	ErrDenied            = errors.New("registration denied")
	ErrDisabled          = errors.New("device disabled")
	ErrDistributed       = errors.New("device distributed to another instance")
	ErrRateLimited       = errors.New("too many registration requests")
	ErrReplayed          = errors.New("registration request replayed")
	ErrInternal          = errors.New("internal error")
)

// Codes in the Alibaba reply envelope ({"code":…,"message":…}). 200 and
// 460 are Alibaba's; the 62xx codes are corral's, in Alibaba's style.
const (
	CodeSuccess           = 200
	CodeInvalid           = 460
	CodeBadSignature      = 6201
	CodeUnknownProduct    = 6202
	CodeNotEnabled        = 6203
	CodeUnknownDevice     = 6204
	CodeAlreadyRegistered = 6205
	CodeDenied            = 6206
	CodeDisabled          = 6207
	CodeRateLimited       = 6208
	CodeReplayed          = 6209
	CodeDistributed       = 6210
	CodeInternal          = 500
)

func refuse(kind error, code int, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Reason: fmt.Sprintf(format, args...)}
}

// --- rate limits ---

// maxLimiters is how many keys a limiter map holds before idle ones are
// swept out.
const maxLimiters = 100000

// limiters are token buckets by key (a source address, a ProductKey).
type limiters struct {
	m     map[string]*rate.Limiter
	sweep int // size at which idle buckets are next swept out (0: maxLimiters)
}

// allow takes one token from key's bucket (rate r, burst 2r+1). When the
// map reaches its sweep size, buckets that have refilled are dropped: a
// full bucket is what a new key gets anyway, so nobody gains budget by it
// (dropping them all, as a reset would, hands every busy client a fresh
// burst). If most are busy, the map may grow to twice its size before the
// next sweep, so a sweep costs O(1) a new key over time.
func (s *Service) allow(ls *limiters, key string, r float64) bool {
	if r <= 0 {
		return true
	}
	now := s.o.Now()
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := ls.m[key]
	if l == nil {
		if len(ls.m) >= max(ls.sweep, maxLimiters) {
			for k, old := range ls.m {
				if old.TokensAt(now) >= float64(old.Burst()) {
					delete(ls.m, k)
				}
			}
			ls.sweep = 2 * len(ls.m)
		}
		l = rate.NewLimiter(rate.Limit(r), int(2*r)+1)
		ls.m[key] = l
	}
	return l.AllowN(now, 1)
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 && !strings.HasSuffix(addr, "]") {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// --- validation ---

func validate(req Request) *Error {
	if err := registry.ValidateProductKey(req.ProductKey); err != nil {
		return refuse(ErrInvalid, CodeInvalid, "productKey: must be 11 letters and digits")
	}
	if err := registry.ValidateDeviceName(req.DeviceName); err != nil {
		var ve *registry.ValidationError
		errors.As(err, &ve)
		return refuse(ErrInvalid, CodeInvalid, "deviceName: %s", ve.Reason)
	}
	return nil
}

func validateSigned(req Request) *Error {
	if e := validate(req); e != nil {
		return e
	}
	if req.Random == "" || len(req.Random) > 64 || !utf8.ValidString(req.Random) {
		return refuse(ErrInvalid, CodeInvalid, "random: required, at most 64 characters")
	}
	if req.Sign == "" || len(req.Sign) > 128 {
		return refuse(ErrInvalid, CodeInvalid, "sign: required hex signature")
	}
	if _, err := hex.DecodeString(req.Sign); err != nil {
		return refuse(ErrInvalid, CodeInvalid, "sign: must be hex")
	}
	if _, err := credential.Sign(req.SignMethod, "", ""); err != nil {
		return refuse(ErrInvalid, CodeInvalid, "signMethod: use hmacsha256, hmacsha1 or hmacmd5")
	}
	return nil
}

// RegisterSignContent is what a device signs with its ProductSecret to
// register: "deviceName"+dn+"productKey"+pk+"random"+random.
func RegisterSignContent(dn, pk, random string) string {
	return "deviceName" + dn + "productKey" + pk + "random" + random
}

// ClientToken is the token of a client-driven registration:
// hex(HMAC-SHA256(product registration key, device id)).
func ClientToken(key, id string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// --- the paths ---

// Dynamic registers a device that proves it knows its ProductSecret
// (HTTPS /auth/register/device and MQTT authType=register).
func (s *Service) Dynamic(ctx context.Context, req Request) (Result, error) {
	return s.run(ctx, req, func(prod registry.Product) (*Error, bool) {
		if e := validateSigned(req); e != nil {
			return e, false
		}
		if prod.DynReg == registry.DynRegOff {
			return refuse(ErrNotEnabled, CodeNotEnabled, "dynamic registration is off for this product"), false
		}
		if !credential.VerifyPassword(req.SignMethod, prod.ProductSecret, RegisterSignContent(req.DeviceName, req.ProductKey, req.Random), req.Sign) {
			return refuse(ErrBadSignature, CodeBadSignature, "sign does not match the product's secret"), false
		}
		return nil, prod.DynReg == registry.DynRegAuto
	})
}

// RegisterFree registers without pre-registration (MQTT regnwl): the
// device gets a client id and a device token for connwl CONNECTs.
func (s *Service) RegisterFree(ctx context.Context, req Request) (Result, error) {
	res, err := s.run(ctx, req, func(prod registry.Product) (*Error, bool) {
		if e := validateSigned(req); e != nil {
			return e, false
		}
		if prod.DynReg != registry.DynRegAuto {
			return refuse(ErrNotEnabled, CodeNotEnabled, "registration without pre-registration needs dynamic registration mode auto"), false
		}
		if !credential.VerifyPassword(req.SignMethod, prod.ProductSecret, RegisterSignContent(req.DeviceName, req.ProductKey, req.Random), req.Sign) {
			return refuse(ErrBadSignature, CodeBadSignature, "sign does not match the product's secret"), false
		}
		return nil, true
	})
	if err != nil {
		return res, err
	}
	res.ClientID, res.DeviceToken, err = s.o.Registry.IssueToken(ctx, req.ProductKey, req.DeviceName)
	if err != nil {
		return Result{}, refuse(ErrInternal, CodeInternal, "internal error")
	}
	return res, nil
}

// ProxyRegister registers a sub-device through its gateway:
// thing.sub.register (signed false: the DeviceName must be pre-created and
// its secret is handed out once) or
// thing.proxy.provisioning.product_register (signed true: the request is
// signed with the sub-device product's secret, and auto mode creates it).
// The sub-device product must be in the gateway's account.
func (s *Service) ProxyRegister(ctx context.Context, req Request, gatewayAccount string, signed bool) (Result, error) {
	req.Path = PathSubRegister
	return s.run(ctx, req, func(prod registry.Product) (*Error, bool) {
		if prod.AccountID != gatewayAccount {
			return refuse(ErrUnknownProduct, CodeUnknownProduct, "product not found"), false
		}
		if prod.NodeType != registry.NodeSubdevice {
			return refuse(ErrInvalid, CodeInvalid, "product %s is not a sub-device product", prod.ProductKey), false
		}
		if prod.DynReg == registry.DynRegOff {
			return refuse(ErrNotEnabled, CodeNotEnabled, "dynamic registration is off for product %s", prod.ProductKey), false
		}
		if !signed {
			if e := validate(req); e != nil {
				return e, false
			}
			return nil, false // pre-registered names only
		}
		if e := validateSigned(req); e != nil {
			return e, false
		}
		if !credential.VerifyPassword(req.SignMethod, prod.ProductSecret, RegisterSignContent(req.DeviceName, req.ProductKey, req.Random), req.Sign) {
			return refuse(ErrBadSignature, CodeBadSignature, "sign does not match the product's secret"), false
		}
		return nil, prod.DynReg == registry.DynRegAuto
	})
}

// VerifyToken checks a registration-free device's token (MQTT connwl).
func (s *Service) VerifyToken(ctx context.Context, pk, dn, clientID, token string) (bool, error) {
	return s.o.Registry.VerifyToken(ctx, pk, dn, clientID, token)
}

// ClientDriven registers a device that presents its id, metadata and a
// token derived from the product's registration key.
func (s *Service) ClientDriven(ctx context.Context, req Request) (Result, error) {
	res, err := s.run(ctx, req, func(prod registry.Product) (*Error, bool) {
		if e := validate(req); e != nil {
			return e, false
		}
		if err := registry.ValidateAttributes("metadata", req.Metadata); err != nil {
			return refuse(ErrInvalid, CodeInvalid, "%v", err), false
		}
		key, err := s.o.Registry.LookupRegistrationKey(ctx, prod.ProductKey)
		if err != nil {
			return refuse(ErrInternal, CodeInternal, "internal error"), false
		}
		if key == "" {
			return refuse(ErrNotEnabled, CodeNotEnabled, "client registration is not enabled: the product has no registration key"), false
		}
		if !prod.Provisioning.AllowsID(req.DeviceName) {
			return refuse(ErrDenied, CodeDenied, "device id matches none of the product's allowlist rules"), false
		}
		want := ClientToken(key, req.DeviceName)
		if len(req.Token) != len(want) || !hmac.Equal([]byte(want), []byte(strings.ToLower(req.Token))) {
			return refuse(ErrBadSignature, CodeBadSignature, "token does not match the device id"), false
		}
		return nil, prod.DynReg != registry.DynRegWhitelist
	})
	if err == nil {
		s.pubMu.RLock()
		res.Endpoints = s.o.Endpoints
		s.pubMu.RUnlock()
	}
	return res, err
}

// hookRequest is what the pre-registration hook receives.
type hookRequest struct {
	Event      string            `json:"event"`
	ProductKey string            `json:"productKey"`
	DeviceName string            `json:"deviceName"`
	Path       Path              `json:"path"`
	Source     string            `json:"source,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Time       int64             `json:"time"`
}

// HookAnswer is what the pre-registration hook answers.
type HookAnswer struct {
	Allow      bool              `json:"allow"`
	Reason     string            `json:"reason,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Event is a registration event posted to event webhooks and published on
// $corral/events/registration/{productKey}/{deviceName}.
type Event struct {
	Event      string `json:"event"` // registration.succeeded, .refused, .rotated
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
	Path       Path   `json:"path"`
	Outcome    string `json:"outcome"`
	Reason     string `json:"reason,omitempty"`
	Code       int    `json:"code"`
	Time       int64  `json:"time"`
}

// run is the common frame of every path: limits, product, path checks,
// hook, registry, audit and events.
func (s *Service) run(ctx context.Context, req Request, check func(registry.Product) (*Error, bool)) (Result, error) {
	var prod registry.Product
	var res Result
	e := s.attempt(ctx, req, &prod, &res, check)
	s.finish(ctx, req, prod, res, e)
	if e != nil {
		return Result{}, e
	}
	return res, nil
}

func (s *Service) attempt(ctx context.Context, req Request, prod *registry.Product, res *Result, check func(registry.Product) (*Error, bool)) *Error {
	if !s.allow(&s.ipLims, hostOf(req.Source), s.o.RatePerIP) {
		return refuse(ErrRateLimited, CodeRateLimited, "too many registration requests from this address; retry later")
	}
	if err := registry.ValidateProductKey(req.ProductKey); err != nil {
		return refuse(ErrInvalid, CodeInvalid, "productKey: must be 11 letters and digits")
	}
	p, err := s.product(ctx, req.ProductKey)
	if errors.Is(err, registry.ErrNotFound) {
		return refuse(ErrUnknownProduct, CodeUnknownProduct, "product not found")
	}
	if err != nil {
		s.log.Error("registration: looking up product", "err", err)
		return refuse(ErrInternal, CodeInternal, "internal error")
	}
	*prod = p
	if !s.allow(&s.prodLims, p.ProductKey, s.o.RatePerProduct) {
		return refuse(ErrRateLimited, CodeRateLimited, "too many registration requests for this product; retry later")
	}
	e, create := check(p)
	if e != nil {
		return e
	}
	attrs, e := s.hook(ctx, req, p)
	if e != nil {
		return e
	}
	// A signed request's random is good once (it reaches here only with a
	// good signature, so strangers cannot use up a device's randoms).
	d, outcome, err := s.o.Registry.Register(ctx, registry.Registration{Product: p, DeviceName: req.DeviceName, Create: create,
		Attributes: merge(req.Metadata, attrs), Random: req.Random})
	switch {
	case err == nil:
	case errors.Is(err, registry.ErrReplayed):
		return refuse(ErrReplayed, CodeReplayed, "random was used before: a registration request is good once; sign a new random")
	case errors.Is(err, registry.ErrNotFound):
		return refuse(ErrUnknownDevice, CodeUnknownDevice, "device %s is not pre-registered in this product (whitelist mode)", req.DeviceName)
	case errors.Is(err, registry.ErrAlreadyIssued):
		return refuse(ErrAlreadyRegistered, CodeAlreadyRegistered, "device already registered: its secret was handed out before")
	case errors.Is(err, registry.ErrDistributed):
		return refuse(ErrDistributed, CodeDistributed, "device distributed to another instance; bootstrap again")
	case errors.Is(err, registry.ErrForbidden):
		return refuse(ErrDisabled, CodeDisabled, "device is disabled")
	case errors.Is(err, registry.ErrInvalid):
		return refuse(ErrInvalid, CodeInvalid, "%v", err)
	default:
		s.log.Error("registration failed", "productKey", req.ProductKey, "deviceName", req.DeviceName, "err", err)
		return refuse(ErrInternal, CodeInternal, "internal error")
	}
	*res = Result{Device: d, Outcome: outcome}
	return nil
}

// productTTL bounds how long a product change made on another node (its
// mode, secret policy or hook) takes to reach registrations here; changes
// made through this node's registry apply at once (ProductChanged). A
// burst of registrations of one product then costs one product read a
// second instead of one each.
const productTTL = time.Second

func (s *Service) product(ctx context.Context, pk string) (registry.Product, error) {
	return s.products.GetOrLoad(pk, func() (registry.Product, error) { return s.o.Registry.LookupProduct(ctx, pk) })
}

// ProductChanged implements registry.ProductObserver: the next
// registration sees a changed product, and the next certificate a new or
// revoked CA.
func (s *Service) ProductChanged(_ context.Context, kind registry.ProductEventKind, pk string) {
	s.products.Delete(pk)
	if kind == registry.ProductCAsChanged || kind == registry.ProductDeleted {
		s.cas.Clear()
	}
}

func merge(a, b map[string]string) map[string]string {
	if len(a) == 0 {
		return b
	}
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func (s *Service) hook(ctx context.Context, req Request, p registry.Product) (map[string]string, *Error) {
	pv := p.Provisioning
	if pv.HookURL == "" || s.o.Webhooks == nil {
		return nil, nil
	}
	timeout := time.Duration(pv.HookTimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var ans HookAnswer
	err := s.o.Webhooks.Call(ctx, pv.HookURL, hookRequest{Event: "registration.requested", ProductKey: req.ProductKey, DeviceName: req.DeviceName,
		Path: req.Path, Source: hostOf(req.Source), Metadata: req.Metadata, Time: s.o.Now().UnixMilli()}, &ans, timeout)
	if err != nil {
		s.log.Warn("pre-registration hook failed", "productKey", p.ProductKey, "err", err, "failOpen", pv.HookFailOpen)
		if pv.HookFailOpen {
			return nil, nil
		}
		return nil, refuse(ErrDenied, CodeDenied, "pre-registration hook did not answer; denied")
	}
	if !ans.Allow {
		reason := ans.Reason
		if len(reason) > 200 {
			reason = reason[:200]
		}
		if reason == "" {
			reason = "no reason given"
		}
		return nil, refuse(ErrDenied, CodeDenied, "denied by the pre-registration hook: %s", strings.ToValidUTF8(reason, "?"))
	}
	if err := registry.ValidateAttributes("attributes", ans.Attributes); err != nil {
		s.log.Warn("pre-registration hook answered bad attributes; ignored", "productKey", p.ProductKey, "err", err)
		return nil, nil
	}
	return ans.Attributes, nil
}

// finish audits the attempt and emits its event.
func (s *Service) finish(ctx context.Context, req Request, p registry.Product, res Result, e *Error) {
	ev := Event{ProductKey: req.ProductKey, DeviceName: req.DeviceName, Path: req.Path, Time: s.o.Now().UnixMilli(), Code: CodeSuccess}
	entry := audit.Entry{AccountID: p.AccountID, Actor: "device", Action: "registration." + string(req.Path),
		Target: req.ProductKey + "/" + req.DeviceName, Source: hostOf(req.Source)}
	if e != nil {
		ev.Event, ev.Outcome, ev.Reason, ev.Code = "registration.refused", "refused", e.Reason, e.Code
		entry.Outcome, entry.Reason = "refused", e.Reason
	} else {
		ev.Event, ev.Outcome = "registration.succeeded", string(res.Outcome)
		if res.Outcome == registry.OutcomeRotated {
			ev.Event = "registration.rotated"
		}
		entry.Outcome = string(res.Outcome)
	}
	if len(entry.Target) > 128 {
		entry.Target = entry.Target[:128]
	}
	entry.Target = strings.ToValidUTF8(entry.Target, "?")
	if s.o.Auditor != nil {
		s.o.Auditor.Record(ctx, entry)
	}
	if p.AccountID == "" {
		return // unknown product: nobody to tell
	}
	if s.o.Webhooks != nil {
		for _, u := range p.Provisioning.EventURLs {
			s.o.Webhooks.Post(u, ev)
		}
	}
	s.pubMu.RLock()
	pub := s.pub
	s.pubMu.RUnlock()
	if pub != nil && registry.ValidateDeviceName(req.DeviceName) == nil {
		data, _ := json.Marshal(ev)
		pub.PublishEvent("$corral/events/registration/"+req.ProductKey+"/"+req.DeviceName, data)
	}
}
