// Package httpapi owns corral's REST API under /v1: routing, bearer API-key
// authentication, JSON decoding, the one mapping of domain errors to HTTP
// statuses, the served OpenAPI document, and the operational endpoints
// (/healthz, /readyz, /metrics).
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/gateway"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
	"github.com/corral-iot/corral/internal/thing"
	"github.com/corral-iot/corral/internal/tsl"
)

// Options configure the API.
type Options struct {
	Registry     *registry.Service
	Audit        *audit.Log
	Logger       *slog.Logger
	Metrics      *prometheus.Registry
	Ready        func(ctx context.Context) error // nil: always ready
	Version      string
	MaxBodyBytes int64
	// Publisher publishes into the MQTT broker for HTTP publish; nil turns
	// the route into 503.
	Publisher Publisher
	// Provisioner serves device registration (/auth/register/device,
	// /v1/register); nil turns those off.
	Provisioner Provisioner
	// DynRegPlainHTTP also serves /auth/register/device and /v1/register,
	// whose answers carry a DeviceSecret, on plain HTTP; requests over TLS
	// are always served.
	DynRegPlainHTTP bool
	// Topology pushes topology changes to gateways; nil turns the
	// sub-device routes into 404.
	Topology Topology
	// Things sets properties and invokes services on devices.
	Things Things
	// Configs tells devices of a product's new configuration file; nil
	// turns the push route into 404.
	Configs Configs
	// Distribution serves instances, policies and provisioning records;
	// nil turns those routes into 404.
	Distribution Distribution
	// Jobs serves distribution jobs and Imports the instance-to-instance
	// API; nil: 404 (not a distribution centre).
	Jobs    Jobs
	Imports Imports
	// RateLimit is requests per second allowed per API key (burst twice
	// that); 0 turns limiting off.
	RateLimit float64
	// Shadows serves device shadows (/v1/…/shadows and AWS's data-plane
	// paths /things/{thing}/shadow, /api/things/shadow/…); nil turns them
	// off.
	Shadows Shadows
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Publisher publishes a message as an account's application.
type Publisher interface {
	PublishFor(ctx context.Context, accountID, topic string, payload []byte, qos byte, retain bool) error
}

// Topology changes gateways' topologies for operators.
type Topology interface {
	Attach(ctx context.Context, gw registry.Device, subs []registry.Device) error
	Detach(ctx context.Context, gw registry.Device, subs [][2]string) error
	NotifyAdd(ctx context.Context, gw registry.Device, subs []registry.Device) (gateway.Sent, error)
	Permit(ctx context.Context, gw registry.Device, productKey string, seconds int) (gateway.Sent, error)
	Found(ctx context.Context, gw registry.Device) ([]registry.FoundDevice, error)
	AcceptFound(ctx context.Context, gw registry.Device, subs []registry.Device) error
}

// Configs pushes a product's configuration file to its devices.
type Configs interface {
	Push(ctx context.Context, pk string, deviceNames []string) (int, error)
}

// Things runs operator calls against devices' thing models.
type Things interface {
	Invoke(ctx context.Context, c thing.Call) (thing.Result, error)
	CustomRRPC(ctx context.Context, c thing.CustomCall) (thing.CustomResult, error)
}

// API is the http.Handler of the REST API and the operational endpoints.
type API struct {
	o       Options
	reg     *registry.Service
	log     *slog.Logger
	router  *router
	routes  []*route
	openapi []byte
	mux     *http.ServeMux

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter
}

// New returns the API handler, registering its metrics.
func New(o Options) (*API, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &API{o: o, reg: o.Registry, log: o.Logger, mux: http.NewServeMux(), limiters: map[string]*rate.Limiter{}}
	a.routes = append(append(a.table(), a.distributionRoutes()...), a.distJobRoutes()...)
	a.router = newRouter(a.routes)
	doc, err := json.Marshal(openAPI(a.routes, o.Version))
	if err != nil {
		return nil, fmt.Errorf("building OpenAPI document: %w", err)
	}
	a.openapi = doc
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_http_requests_total", Help: "API requests by route, method and status."}, []string{"route", "method", "code"})
	a.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_http_request_duration_seconds", Help: "API request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"route", "method"})
	if o.Metrics != nil {
		if err := o.Metrics.Register(a.requests); err != nil {
			return nil, err
		}
		if err := o.Metrics.Register(a.latency); err != nil {
			return nil, err
		}
		a.mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{}))
	}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	a.mux.HandleFunc("GET /readyz", a.ready)
	a.mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(a.openapi)
	})
	a.mux.HandleFunc("/v1/", a.serveAPI)
	if o.Shadows != nil {
		a.mux.HandleFunc("/things/", a.serveAPI)
		a.mux.HandleFunc("/api/things/shadow/", a.serveAPI)
	}
	if o.Provisioner != nil {
		a.mux.HandleFunc("/auth/register/device", func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil && !a.o.DynRegPlainHTTP {
				writeError(w, RequestID(r.Context()), http.StatusNotFound, "not_found", "dynamic registration is served on the HTTPS listener only", "")
				return
			}
			a.dynamicRegister(w, r)
		})
	}
	return a, nil
}

// Handle adds a handler outside /v1's table, for device-facing endpoints
// such as /auth/register/device that other packages own.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	if a.o.Ready != nil {
		if err := a.o.Ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

type ctxKey struct{}

// RequestID returns the request id of a request's context.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// ServeHTTP adds a request id, recovers panics and logs every request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 64 {
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	w.Header().Set("X-Request-Id", id)
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
	sw := &statusWriter{ResponseWriter: w, code: 200}
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("panic serving request", "requestId", id, "path", r.URL.Path, "panic", fmt.Sprint(p))
			if !sw.wrote {
				writeError(sw, id, http.StatusInternalServerError, "internal", "internal error", "")
			}
		}
		a.log.Info("request", "requestId", id, "method", r.Method, "path", r.URL.Path, "status", sw.code, "durMs", float64(time.Since(start).Microseconds())/1000)
	}()
	a.mux.ServeHTTP(sw, r)
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// call is one request being served by a route.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	api    *API
	params map[string]string
	p      registry.Principal
	// aws: the route answers errors with AWS's body (route.ErrResp).
	aws bool
}

func (c *call) ctx() context.Context     { return c.r.Context() }
func (c *call) param(name string) string { return c.params[name] }

func (a *API) serveAPI(w http.ResponseWriter, r *http.Request) {
	rt, params, allowed := a.router.find(r)
	reqID := RequestID(r.Context())
	if rt == nil {
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, reqID, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+strings.Join(allowed, " or "), "")
			return
		}
		writeError(w, reqID, http.StatusNotFound, "not_found", "no such API path: "+r.URL.Path, "")
		return
	}
	start := time.Now()
	c := &call{w: w, r: r, api: a, params: params, aws: rt.ErrResp != nil}
	code := a.run(rt, c)
	a.requests.WithLabelValues(rt.Path, rt.Method, strconv.Itoa(code)).Inc()
	a.latency.WithLabelValues(rt.Path, rt.Method).Observe(time.Since(start).Seconds())
}

func (a *API) run(rt *route, c *call) int {
	if rt.Role != "" {
		tok, ok := bearer(c.r)
		if !ok {
			c.w.Header().Set("WWW-Authenticate", `Bearer realm="corral"`)
			return a.fail(c, fmt.Errorf("send an API key as 'Authorization: Bearer {keyId}.{secret}': %w", registry.ErrUnauthenticated))
		}
		p, err := a.reg.Authenticate(c.ctx(), tok)
		if err != nil {
			c.w.Header().Set("WWW-Authenticate", `Bearer realm="corral"`)
			return a.fail(c, err)
		}
		c.p = p
		if !a.allow(p.KeyID) {
			return a.fail(c, errRateLimited)
		}
		if !p.Role.Allows(registry.Role(rt.Role)) {
			if rt.AuditDenied != "" && a.o.Audit != nil {
				a.o.Audit.Record(c.ctx(), audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: rt.AuditDenied,
					Target: c.param("productKey") + "/" + c.param("deviceName"), Outcome: "denied", Reason: "role " + string(p.Role), Source: c.r.RemoteAddr})
			}
			return a.fail(c, fmt.Errorf("this call needs role %s; the key has %s: %w", rt.Role, p.Role, registry.ErrForbidden))
		}
		if rt.System && !p.SystemAdmin {
			return a.fail(c, fmt.Errorf("this call needs a system administrator key: %w", registry.ErrForbidden))
		}
	}
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, a.o.MaxBodyBytes)
	out, err := rt.h(c)
	if err != nil {
		return a.fail(c, err)
	}
	if out == nil {
		c.w.WriteHeader(rt.Status)
		return rt.Status
	}
	writeJSON(c.w, rt.Status, out)
	return rt.Status
}

var errRateLimited = errors.New("rate limit exceeded; slow down and retry")

func (a *API) allow(key string) bool {
	if a.o.RateLimit <= 0 {
		return true
	}
	a.limMu.Lock()
	l := a.limiters[key]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(a.o.RateLimit), int(2*a.o.RateLimit)+1)
		a.limiters[key] = l
	}
	a.limMu.Unlock()
	return l.Allow()
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// errorBody is the one JSON shape of every error answer.
type errorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"requestId"`
}

// fail maps an error to its status: the only such mapping in corral.
func (a *API) fail(c *call, err error) int {
	status, code := http.StatusInternalServerError, "internal"
	msg := err.Error()
	field := ""
	var ve *registry.ValidationError
	var mbe *http.MaxBytesError
	var be *badRequest
	var se *shadow.ErrorAWS
	switch {
	case errors.As(err, &se):
		if c.aws {
			c.w.Header().Set("Content-Type", "application/json")
			c.w.WriteHeader(se.Code)
			c.w.Write(se.Payload())
			return se.Code
		}
		status, code, msg = se.Code, shadowStatus(se), se.Message
	case errors.As(err, &ve):
		status, code, field, msg = 400, "invalid_argument", ve.Field, ve.Error()
	case errors.As(err, &be):
		status, code, field = 400, "invalid_argument", be.field
	case errors.As(err, &mbe):
		status, code, msg = 413, "payload_too_large", fmt.Sprintf("request body is over the limit of %d bytes", mbe.Limit)
	case errors.Is(err, distribution.ErrInvalid):
		status, code = 400, "invalid_argument"
	case errors.Is(err, distribution.ErrReadOnly):
		status, code = 403, "permission_denied"
	case errors.Is(err, distribution.ErrNotFound):
		status, code = 404, "not_found"
	case errors.Is(err, distribution.ErrConflict):
		status, code = 409, "conflict"
	case errors.Is(err, jobs.ErrLimit):
		status, code = 409, "limit_reached"
	case errors.Is(err, registry.ErrTooLarge):
		status, code = 413, "payload_too_large"
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrProofOfPossession), errors.Is(err, registry.ErrNotGateway):
		status, code = 400, "invalid_argument"
	case errors.Is(err, registry.ErrUnauthenticated):
		status, code, msg = 401, "unauthenticated", "missing, unknown or wrong API key; send 'Authorization: Bearer {keyId}.{secret}'"
	case errors.Is(err, registry.ErrForbidden):
		status, code = 403, "permission_denied"
	case errors.As(err, new(*tsl.Error)):
		var te *tsl.Error
		errors.As(err, &te)
		status, code, field = 400, "tsl_check_failed", te.Identifier
	case errors.Is(err, thing.ErrOffline), errors.Is(err, gateway.ErrGatewayOffline):
		status, code = 409, "device_offline"
	case errors.Is(err, thing.ErrBadTopic):
		status, code, field = 400, "invalid_argument", "topic"
	case errors.Is(err, thing.ErrTimeout):
		status, code = 504, "device_timeout"
	case errors.Is(err, registry.ErrNoModel):
		status, code = 404, "no_thing_model"
	case errors.Is(err, registry.ErrNotFound):
		status, code = 404, "not_found"
	case errors.Is(err, registry.ErrVersionConflict):
		status, code = 409, "version_conflict"
	case errors.Is(err, registry.ErrConflict):
		status, code = 409, "already_exists"
	case errors.As(err, new(*provision.Error)):
		status = registrationStatus(err)
		code = "registration_refused"
		if status == 500 {
			code = "internal"
		}
		if status == 429 {
			c.w.Header().Set("Retry-After", "1")
		}
	case errors.Is(err, errRateLimited):
		status, code = 429, "rate_limited"
		c.w.Header().Set("Retry-After", "1")
	}
	if status == 500 && se == nil {
		a.log.Error("request failed", "requestId", RequestID(c.ctx()), "err", err)
		msg = "internal error; the request id is in the logs"
	}
	if c.aws {
		writeJSON(c.w, status, awsError{Code: status, Message: msg, Timestamp: a.o.Now().Unix()})
		return status
	}
	writeError(c.w, RequestID(c.ctx()), status, code, msg, field)
	return status
}

func writeError(w http.ResponseWriter, reqID string, status int, code, msg, field string) {
	writeJSON(w, status, errorBody{Code: code, Message: msg, Field: field, RequestID: reqID})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// badRequest is a malformed request (not a domain rule).
type badRequest struct {
	field string
	msg   string
}

func (e *badRequest) Error() string { return e.msg }

// decode reads one JSON object into v, refusing unknown fields and trailing data.
func (c *call) decode(v any) error {
	dec := json.NewDecoder(c.r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return &badRequest{field: "body", msg: "body must hold exactly one JSON object"}
	}
	return nil
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return &badRequest{field: "body", msg: "body is empty; send a JSON object"}
	case errors.As(err, &se):
		return &badRequest{field: "body", msg: fmt.Sprintf("body is not valid JSON (at byte %d)", se.Offset)}
	case errors.As(err, &te):
		return &badRequest{field: te.Field, msg: fmt.Sprintf("%s: must be %s, got JSON %s", te.Field, te.Type, te.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &badRequest{field: name, msg: fmt.Sprintf("unknown field %q", name)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &badRequest{field: "body", msg: "body is truncated JSON"}
	}
	return &badRequest{field: "body", msg: "body is not valid JSON: " + err.Error()}
}

func pathUnescape(s string) (string, error) { return url.PathUnescape(s) }

// Routes lists "METHOD path" of every API operation, for tests and docs.
func (a *API) Routes() []string {
	out := make([]string, len(a.routes))
	for i, rt := range a.routes {
		out[i] = rt.Method + " " + rt.Path
	}
	return out
}
