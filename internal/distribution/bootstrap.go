package distribution

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/time/rate"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/registry"
)

// MaxAnswer is the Link SDK's buffer for the bootstrap answer's body.
const MaxAnswer = 192

// Bootstrap refusals; each *Refusal carries its HTTP status.
var (
	ErrBadRequest  = errors.New("bad bootstrap request")
	ErrRateLimited = errors.New("too many bootstrap requests")
)

// Refusal is a refused bootstrap: the HTTP status to answer and a message
// that names the problem (never a secret, never whether a device exists).
type Refusal struct {
	Err     error
	Status  int
	Message string
}

func (r *Refusal) Error() string { return r.Message }
func (r *Refusal) Unwrap() error { return r.Err }

func refuse(err error, status int, format string, args ...any) *Refusal {
	return &Refusal{Err: err, Status: status, Message: fmt.Sprintf(format, args...)}
}

// Request is a device's bootstrap request.
type Request struct {
	ProductKey, DeviceName, ClientID string
	// RegionID is the v4 SDK's numeric region (GET …/regionId/{id}); -1
	// for a POST.
	RegionID int
	// Source is the request's remote address (host:port).
	Source string
	// TLS says the request came over HTTPS: the answer prefers the
	// instance's MQTT over TLS endpoint (plain MQTT otherwise).
	TLS bool
}

// Answer is where the device connects.
type Answer struct {
	Host string
	Port int
	IP   string // backup address, < 16 characters, or ""
	// Instance and Region say which instance answered and Rule which rule
	// chose it (default, record, region, cidr, country, continent,
	// fallback, webhook); for the audit trail, not the device.
	Instance, Region, Rule string
}

// Body is the answer as the Link SDK reads it: code 200, then host and
// port as the first such keys, the backup ip when set, within MaxAnswer
// bytes (hosts are validated to need no JSON escaping).
func (a Answer) Body() []byte {
	b := make([]byte, 0, MaxAnswer)
	b = append(b, `{"code":200,"data":{"resources":{"mqtt":{"host":"`...)
	b = append(b, a.Host...)
	b = append(b, `","port":`...)
	b = strconv.AppendInt(b, int64(a.Port), 10)
	if a.IP != "" {
		b = append(b, `,"ip":"`...)
		b = append(b, a.IP...)
		b = append(b, '"')
	}
	return append(b, `}}},"message":"success"}`...)
}

// endpoint is the answer an instance gives: over TLS its MQTTS endpoint
// when it has one, over plain HTTP its MQTT endpoint when it has one.
func endpoint(in Instance, tls bool) (Answer, error) {
	e := in.MQTT
	if (tls && in.MQTTS != "") || e == "" {
		e = in.MQTTS
	}
	host, port, err := net.SplitHostPort(e)
	if err != nil {
		return Answer{}, fmt.Errorf("instance %s has no usable endpoint %q: %w", in.ID, e, err)
	}
	p, _ := strconv.Atoi(port)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return Answer{Host: host, Port: p, IP: in.BackupIP, Instance: in.ID, Region: in.Region}, nil
}

// maxClientID is the longest clientId the bootstrap form accepts.
const maxClientID = 64

func (req Request) validate() *Refusal {
	if req.RegionID >= 0 {
		return nil
	}
	if req.ProductKey == "" {
		return refuse(ErrBadRequest, 400, "request parameter error: productKey is missing")
	}
	if registry.ValidateProductKey(req.ProductKey) != nil {
		return refuse(ErrBadRequest, 400, "request parameter error: productKey must be 11 letters and digits")
	}
	if req.DeviceName == "" {
		return refuse(ErrBadRequest, 400, "request parameter error: deviceName is missing")
	}
	if err := registry.ValidateDeviceName(req.DeviceName); err != nil {
		var ve *registry.ValidationError
		if errors.As(err, &ve) {
			return refuse(ErrBadRequest, 400, "request parameter error: deviceName: %s", ve.Reason)
		}
		return refuse(ErrBadRequest, 400, "request parameter error: deviceName is not valid")
	}
	if len(req.ClientID) > maxClientID {
		return refuse(ErrBadRequest, 400, "request parameter error: clientId is over %d characters", maxClientID)
	}
	for _, c := range req.ClientID {
		if c < 0x21 || c > 0x7e {
			return refuse(ErrBadRequest, 400, "request parameter error: clientId holds a character other than printable ASCII")
		}
	}
	return nil
}

// Bootstrap answers where a device connects. A device with a record gets
// its instance (or its policy's choice for its source address); one with
// none, known here or not, gets the default instance: the answer does not
// tell whether a device exists, and both take the same store read.
func (s *Service) Bootstrap(ctx context.Context, req Request) (Answer, error) {
	if !s.allow(hostOf(req.Source), s.o.RatePerIP) {
		s.audit(ctx, req, Answer{}, "limited", "rate limit")
		return Answer{}, refuse(ErrRateLimited, 429, "too many bootstrap requests from this address; retry later")
	}
	if r := req.validate(); r != nil {
		s.audit(ctx, req, Answer{}, "refused", "bad request")
		return Answer{}, r
	}
	a, err := s.answer(ctx, req)
	if err != nil {
		s.log.Error("bootstrap answer", "productKey", req.ProductKey, "deviceName", req.DeviceName, "err", err)
		return Answer{}, err
	}
	s.audit(ctx, req, a, "ok", a.Rule)
	return a, nil
}

func (s *Service) answer(ctx context.Context, req Request) (Answer, error) {
	if req.RegionID >= 0 {
		return s.regionAnswer(ctx, req)
	}
	rec, err := s.record(ctx, req.ProductKey, req.DeviceName)
	switch {
	case errors.Is(err, ErrNotFound):
		return s.defaultAnswer(ctx, req.TLS)
	case err != nil:
		return Answer{}, err
	}
	id, rule := rec.TargetIotInstanceID, "record"
	if rec.PolicyID != "" {
		pol, err := s.policy(ctx, rec.AccountID, rec.PolicyID)
		if err != nil {
			return Answer{}, fmt.Errorf("record's policy %s: %w", rec.PolicyID, err)
		}
		id, rule = s.choose(ctx, &pol, req)
	}
	in, err := s.instance(ctx, rec.AccountID, id)
	if err != nil {
		return Answer{}, fmt.Errorf("record's instance: %w", err)
	}
	a, err := endpoint(in, req.TLS)
	a.Rule = rule
	return a, err
}

func (s *Service) defaultAnswer(ctx context.Context, tls bool) (Answer, error) {
	in, err := s.instance(ctx, "", s.o.Default)
	if err != nil {
		return Answer{}, fmt.Errorf("default instance: %w", err)
	}
	a, err := endpoint(in, tls)
	a.Rule = "default"
	return a, err
}

// regionAnswer serves GET …/regionId/{id}: the first system instance of
// that region (this corral first), else the default instance.
func (s *Service) regionAnswer(ctx context.Context, req Request) (Answer, error) {
	name := RegionName(req.RegionID)
	if name == "" {
		return s.defaultAnswer(ctx, req.TLS)
	}
	if s.o.Self.Region == name {
		a, err := endpoint(s.o.Self, req.TLS)
		a.Rule = "region"
		return a, err
	}
	sts, err := s.o.Store.ListInstances(ctx, "")
	if err != nil {
		return Answer{}, err
	}
	for _, st := range sts {
		if st.Region == name {
			a, err := endpoint(st.Instance, req.TLS)
			a.Rule = "region"
			return a, err
		}
	}
	return s.defaultAnswer(ctx, req.TLS)
}

// AllocationRequest is the body of a policy's allocation webhook call.
type AllocationRequest struct {
	ProductKey string         `json:"productKey"`
	DeviceName string         `json:"deviceName"`
	SourceIP   string         `json:"sourceIp"`
	PolicyID   string         `json:"policyId"`
	Regions    []PolicyRegion `json:"regions"`
	// Proposed is the instance the tables would choose.
	Proposed string `json:"proposedInstanceId"`
}

// AllocationAnswer is the webhook's answer: one of the policy's instances.
type AllocationAnswer struct {
	InstanceID string `json:"instanceId"`
}

// choose applies a policy: its webhook when set and answering in time
// with one of its instances, else its tables.
func (s *Service) choose(ctx context.Context, pol *Policy, req Request) (id, rule string) {
	addr, _ := netip.ParseAddr(hostOf(req.Source))
	id, _, rule = pol.Choose(req.ProductKey, req.DeviceName, addr, s.o.Geo)
	if pol.Webhook == "" || s.o.Allocator == nil {
		return id, rule
	}
	var out AllocationAnswer
	err := s.o.Allocator.Call(ctx, pol.Webhook, AllocationRequest{ProductKey: req.ProductKey, DeviceName: req.DeviceName,
		SourceIP: addr.String(), PolicyID: pol.ID, Regions: pol.Regions, Proposed: id}, &out, s.o.AllocationTimeout)
	switch {
	case err != nil:
		s.log.Warn("allocation webhook failed; the policy's tables decide", "policyId", pol.ID, "err", err)
	case !contains(pol.instanceIDs(), out.InstanceID):
		s.log.Warn("allocation webhook answered an instance not in the policy; the policy's tables decide", "policyId", pol.ID)
	default:
		return out.InstanceID, "webhook"
	}
	return id, rule
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (s *Service) audit(ctx context.Context, req Request, a Answer, outcome, reason string) {
	if s.o.Auditor == nil {
		return
	}
	target := ""
	if req.RegionID >= 0 {
		target = "regionId/" + strconv.Itoa(req.RegionID)
	} else if len(req.ProductKey) <= 64 && len(req.DeviceName) <= 64 {
		target = req.ProductKey + "/" + req.DeviceName
	}
	if a.Instance != "" {
		reason += " → " + a.Instance
	}
	s.o.Auditor.Record(ctx, audit.Entry{Action: "device.bootstrap", Target: target, Outcome: outcome, Reason: reason, Source: hostOf(req.Source)})
}

// regions are the v4 SDK's numeric region ids.
var regions = []string{"cn-shanghai", "ap-southeast-1", "ap-northeast-1", "us-east-1", "eu-central-1", "us-west-1",
	"cn-hangzhou", "cn-shenzhen", "cn-beijing", "cn-qingdao", "cn-zhangjiakou", "cn-huhehaote", "cn-heyuan", "cn-chengdu",
	"cn-hongkong", "ap-southeast-2", "ap-southeast-3", "ap-southeast-5", "ap-south-1", "eu-west-1", "me-east-1"}

// RegionName is the region of a v4 SDK region id ("" for an unknown id).
func RegionName(id int) string {
	if id < 0 || id >= len(regions) {
		return ""
	}
	return regions[id]
}

// --- rate limits: the pattern of provision's registration limits ---

// maxLimiters is how many source addresses are held before idle ones are
// swept out.
const maxLimiters = 100000

// limiters are token buckets by source address.
type limiters struct {
	m     map[string]*rate.Limiter
	sweep int // size at which idle buckets are next swept out (0: maxLimiters)
}

func newLimiters() limiters { return limiters{m: map[string]*rate.Limiter{}} }

// allow takes one token from key's bucket (rate r, burst 2r+1). Full
// buckets are swept out when the map reaches its sweep size: a full
// bucket is what a new key gets anyway, so nobody gains by it.
func (s *Service) allow(key string, r float64) bool {
	if r <= 0 {
		return true
	}
	now := s.o.Now()
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := s.lims.m[key]
	if l == nil {
		if len(s.lims.m) >= max(s.lims.sweep, maxLimiters) {
			for k, old := range s.lims.m {
				if old.TokensAt(now) >= float64(old.Burst()) {
					delete(s.lims.m, k)
				}
			}
			s.lims.sweep = 2 * len(s.lims.m)
		}
		l = rate.NewLimiter(rate.Limit(r), int(2*r)+1)
		s.lims.m[key] = l
	}
	return l.AllowN(now, 1)
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
