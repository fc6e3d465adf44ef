// Package gateway owns gateways and their sub-devices as the Alibaba Link
// SDK drives them over the gateway's own MQTT connection: topology
// (thing.topo.add/delete/get, thing.topo.change pushed down), sub-device
// sessions (combine.login, batch_login, logout, batch_logout) and
// sub-device registration (thing.sub.register,
// thing.proxy.provisioning.product_register).
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// Limits of one request.
const (
	MaxTopoAdd  = registry.MaxTopoBatch // thing.topo.add, thing.sub.register, product_register
	MaxBatchLog = 50                    // combine.batch_login, batch_logout
)

// Broker is what the gateway logic needs of the MQTT broker.
type Broker interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
	SubscribeAll(hs map[string]func(topic string, payload []byte)) (func(), error)
	LoginSub(gwPk, gwDn string, sub registry.Device) error
	LogoutSub(gwPk, gwDn, subPk, subDn, reason string) bool
	SubLoggedIn(gwPk, gwDn, subPk, subDn string) bool
	// MayReceiveCredentials reports whether a device's live session may
	// be sent a credential: it came in over TLS, or the operator allows
	// plain listeners for labs.
	MayReceiveCredentials(pk, dn string) bool
	// Online reports whether a device has a live session.
	Online(pk, dn string) bool
	// SendToGateway writes a message straight to a gateway's live
	// session (a sub-device's lifecycle downlinks).
	SendToGateway(gwPk, gwDn, topic string, payload []byte) error
}

// Registry is what it needs of the registry.
type Registry interface {
	LookupDevice(ctx context.Context, pk, dn string) (registry.Device, error)
	LookupProduct(ctx context.Context, pk string) (registry.Product, error)
	AttachSubdevices(ctx context.Context, gw registry.Device, subs []registry.Device) (registry.TopologyChange, error)
	DetachSubdevices(ctx context.Context, gw registry.Device, subs [][2]string) (registry.TopologyChange, error)
	Subdevices(ctx context.Context, gw registry.Device) ([]registry.Device, error)
	DeleteDevice(ctx context.Context, p registry.Principal, pk, dn string) error
	AddFound(ctx context.Context, gw registry.Device, subs [][2]string) error
	LookupFound(ctx context.Context, gw registry.Device) ([]registry.FoundDevice, error)
	RemoveFound(ctx context.Context, gw registry.Device, subs [][2]string) error
}

// Provisioner registers sub-devices.
type Provisioner interface {
	ProxyRegister(ctx context.Context, req provision.Request, gatewayAccount string, signed bool) (provision.Result, error)
}

// Options configure the Service.
type Options struct {
	Broker      Broker
	Registry    Registry
	Provisioner Provisioner
	Logger      *slog.Logger
	Now         func() time.Time
}

// Service answers gateways.
type Service struct {
	o    Options
	log  *slog.Logger
	stop func()
}

// New returns a Service; Start subscribes it to the gateway topics.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o, log: o.Logger}
}

// Start subscribes in-process to the request topics of every gateway.
func (s *Service) Start() error {
	hs := map[string]func(string, []byte){}
	for _, f := range []string{
		"/sys/+/+/thing/topo/add", "/sys/+/+/thing/topo/delete", "/sys/+/+/thing/topo/get",
		"/sys/+/+/thing/sub/register", "/sys/+/+/thing/proxy/provisioning/product_register",
		"/sys/+/+/thing/list/found", "/sys/+/+/thing/sub/unregister",
		"/ext/session/+/+/combine/login", "/ext/session/+/+/combine/batch_login",
		"/ext/session/+/+/combine/logout", "/ext/session/+/+/combine/batch_logout",
	} {
		hs[f] = s.handle
	}
	stop, err := s.o.Broker.SubscribeAll(hs)
	if err != nil {
		return fmt.Errorf("subscribing to gateway topics: %w", err)
	}
	s.stop = stop
	return nil
}

// Stop unsubscribes.
func (s *Service) Stop() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// failure is a refused gateway request (alink.Failure); fail makes one.
type failure = alink.Failure

var fail = alink.Fail

// handle answers one gateway request. The topic names the gateway: the
// broker lets a device publish only under its own prefix.
func (s *Service) handle(topic string, payload []byte) {
	t, err := alink.ParseTopic(topic)
	if err != nil || t.Reply {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := alink.DecodeRequest(payload)
	if err != nil {
		// The id is echoed whenever it could be read, even when refused.
		s.reply(topic, alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Message: "request parameter error: " + err.Error(), Method: t.Method() + "_reply", Version: "1.0"})
		return
	}
	data, err := s.dispatch(ctx, t, req)
	rep := alink.Reply{ID: req.ID, Code: alink.CodeSuccess, Data: data, Message: "success", Method: t.Method() + "_reply", Version: "1.0"}
	var f *failure
	switch {
	case err == nil:
	case errors.As(err, &f):
		rep.Code, rep.Message, rep.Data = f.Code, f.Msg, data
	default:
		s.log.Error("gateway request failed", "topic", topic, "err", err)
		rep.Code, rep.Message = alink.CodeInternal, "internal error"
	}
	if req.WantsReply() {
		s.reply(topic, rep)
	}
}

func (s *Service) reply(topic string, r alink.Reply) {
	if err := s.o.Broker.Publish(topic+"_reply", alink.EncodeReply(r), false, 0); err != nil {
		s.log.Warn("replying to gateway", "topic", topic, "err", err)
	}
}

func (s *Service) dispatch(ctx context.Context, t alink.Topic, req alink.Request) (any, error) {
	gw, err := s.gateway(ctx, t.ProductKey, t.DeviceName)
	if err != nil {
		return nil, err
	}
	switch t.Method() {
	case "thing.topo.add":
		return s.topoAdd(ctx, gw, req.Params)
	case "thing.topo.delete":
		return s.topoDelete(ctx, gw, req.Params)
	case "thing.topo.get":
		return s.topoGet(ctx, gw)
	case "combine.login":
		return s.login(ctx, gw, req.Params)
	case "combine.batch_login":
		return s.batchLogin(ctx, gw, req.Params)
	case "combine.logout":
		return s.logout(gw, req.Params, false)
	case "combine.batch_logout":
		return s.logout(gw, req.Params, true)
	case "thing.list.found":
		return s.listFound(ctx, gw, req.Params)
	case "thing.sub.unregister":
		return s.subUnregister(ctx, gw, req.Params)
	case "thing.sub.register", "thing.proxy.provisioning.product_register":
		// Both answer sub-devices' DeviceSecrets.
		if !s.o.Broker.MayReceiveCredentials(gw.ProductKey, gw.DeviceName) {
			return nil, fail(alink.CodeNeedsTLS, "sub-device registration answers DeviceSecrets, so it is served only to a gateway connected over TLS")
		}
		if t.Method() == "thing.sub.register" {
			return s.subRegister(ctx, gw, req.Params)
		}
		return s.productRegister(ctx, gw, req.Params)
	}
	return nil, fail(alink.CodeBadTopic, "unknown method %s", t.Method())
}

// gateway returns the requesting device, which must be of a gateway product.
func (s *Service) gateway(ctx context.Context, pk, dn string) (registry.Device, error) {
	d, err := s.o.Registry.LookupDevice(ctx, pk, dn)
	if errors.Is(err, registry.ErrNotFound) {
		return d, fail(alink.CodeDeviceNotFound, "gateway %s/%s not found", pk, dn)
	}
	if err != nil {
		return d, err
	}
	p, err := s.o.Registry.LookupProduct(ctx, pk)
	if err != nil {
		return d, err
	}
	if p.NodeType != registry.NodeGateway {
		return d, fail(alink.CodeNotGateway, "device %s/%s is not of a gateway product", pk, dn)
	}
	return d, nil
}

// ident names a sub-device in requests and replies.
type ident struct {
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
}

// signedIdent is a sub-device signing for itself (topo.add, login). The
// SDKs differ in the details, all accepted: timestamp as a JSON string
// (Link SDK C) or number (Node SDK); signmethod (v3) or signMethod (v4,
// Node) in any case; cleanSession as a string or a boolean.
type signedIdent struct {
	ident
	ClientID     scalar `json:"clientId"`
	Timestamp    scalar `json:"timestamp"`
	SignMethod   string `json:"signmethod"`
	SignMethodV4 string `json:"signMethod"`
	Sign         string `json:"sign"`
	CleanSession scalar `json:"cleanSession,omitempty"`
}

// method is the sign method named by the entry, else the request's
// (batch_login of Link SDK C v4 names it once, beside deviceList), else
// hmacsha256, the SDKs' default.
func (si signedIdent) method(fallback string) string {
	m := si.SignMethod
	if m == "" {
		m = si.SignMethodV4
	}
	if m == "" {
		m = fallback
	}
	if m == "" {
		m = "hmacsha256"
	}
	return strings.ToLower(m)
}

// scalar is a JSON string, number or boolean read as its text: "1524448722000"
// and 1524448722000 are the same timestamp.
type scalar string

// UnmarshalJSON implements json.Unmarshaler.
func (s *scalar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return errors.New("empty value")
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = scalar(v)
	case string(b) == "null":
		*s = ""
	case string(b) == "true" || string(b) == "false":
		*s = scalar(b)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("must be a string or a number")
		}
		*s = scalar(n.String())
	}
	return nil
}

func decodeParams(raw json.RawMessage, v any, what string) error {
	if len(raw) == 0 {
		return fail(alink.CodeBadParams, "request parameter error: params missing (%s)", what)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fail(alink.CodeBadParams, "request parameter error: params must be %s", what)
	}
	return nil
}

// checkSub verifies a sub-device for the gateway: it exists in the
// gateway's account, is enabled, is not the gateway itself, and (when
// signed) the signature is made with its own DeviceSecret over
// clientId…deviceName…productKey…timestamp….
func (s *Service) checkSub(ctx context.Context, gw registry.Device, si signedIdent, signed bool, method string) (registry.Device, error) {
	if si.ProductKey == "" || si.DeviceName == "" {
		return registry.Device{}, fail(alink.CodeBadParams, "request parameter error: productKey and deviceName are required")
	}
	if si.ProductKey == gw.ProductKey && si.DeviceName == gw.DeviceName {
		return registry.Device{}, fail(alink.CodeTopoAddSelf, "topo relation cannot add by self")
	}
	d, err := s.o.Registry.LookupDevice(ctx, si.ProductKey, si.DeviceName)
	if errors.Is(err, registry.ErrNotFound) || err == nil && d.AccountID != gw.AccountID {
		return registry.Device{}, fail(alink.CodeDeviceNotFound, "device %s/%s not found", si.ProductKey, si.DeviceName)
	}
	if err != nil {
		return registry.Device{}, err
	}
	if d.Status == registry.StatusDisabled {
		return registry.Device{}, fail(alink.CodeDeviceDisabled, "device %s/%s is disabled", si.ProductKey, si.DeviceName)
	}
	if signed {
		if si.Sign == "" || si.ClientID == "" {
			return registry.Device{}, fail(alink.CodeBadParams, "request parameter error: %s/%s: clientId and sign are required", si.ProductKey, si.DeviceName)
		}
		m := si.method(method)
		if _, err := credential.Sign(m, "", ""); err != nil {
			return registry.Device{}, fail(alink.CodeBadParams, "request parameter error: %s/%s: signmethod %s is not supported (hmacSha256, hmacSha1, hmacMd5)", si.ProductKey, si.DeviceName, m)
		}
		content := credential.MQTTSignContent(string(si.ClientID), si.DeviceName, si.ProductKey, string(si.Timestamp))
		if !credential.VerifyPassword(m, d.DeviceSecret, content, si.Sign) {
			return registry.Device{}, fail(alink.CodeAuthFailed, "request auth error: signature of %s/%s does not match", si.ProductKey, si.DeviceName)
		}
	}
	return d, nil
}

func identsOf(ds []registry.Device) []ident {
	out := make([]ident, len(ds))
	for i, d := range ds {
		out[i] = ident{d.ProductKey, d.DeviceName}
	}
	return out
}
