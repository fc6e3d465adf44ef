package thing

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/alink"
	"github.com/corral-iot/corral/internal/registry"
)

// ConfigRegistry is what remote configuration needs of the registry.
type ConfigRegistry interface {
	LookupProductConfig(ctx context.Context, pk string) (registry.ProductConfig, error)
}

// CodeNoConfig answers thing.config.get for a product without a
// configuration file (corral's own code, beside 6403–6405).
const CodeNoConfig = 6406

// ConfigOptions configure Configs.
type ConfigOptions struct {
	Broker   Broker
	Registry ConfigRegistry
	// BaseURL is the HTTPS origin devices download from, e.g.
	// https://iot.example.com:8443 (a func: the listener's port is known
	// only once it is bound).
	BaseURL func() string
	// Key signs download URLs (HMAC-SHA256); URLs are good for URLTTL.
	Key    []byte
	URLTTL time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Configs serves remote configuration: thing.config.get answers with the
// product's file's id, size, SHA-256 and a signed HTTPS URL that serves
// it (ServeHTTP), and Push tells online devices of a new file
// (thing.config.push).
type Configs struct {
	o    ConfigOptions
	stop func()
}

// NewConfigs returns the service; Start subscribes it.
func NewConfigs(o ConfigOptions) *Configs {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.URLTTL == 0 {
		o.URLTTL = time.Hour
	}
	return &Configs{o: o}
}

// Start subscribes to devices' thing.config.get.
func (c *Configs) Start() error {
	stop, err := c.o.Broker.SubscribeAll(map[string]func(string, []byte){"/sys/+/+/thing/config/get": c.onGet})
	if err != nil {
		return fmt.Errorf("subscribing to thing.config.get: %w", err)
	}
	c.stop = stop
	return nil
}

// Stop unsubscribes.
func (c *Configs) Stop() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

// describe is the data of thing.config.get and the params of
// thing.config.push.
func (c *Configs) describe(pk string, cfg registry.ProductConfig) map[string]any {
	return map[string]any{"configId": cfg.ConfigID, "configSize": cfg.Size, "sign": cfg.Sign, "signMethod": cfg.SignMethod,
		"url": c.url(pk, cfg.ConfigID), "getType": "file"}
}

func (c *Configs) onGet(topic string, payload []byte) {
	t, err := alink.ParseTopic(topic)
	if err != nil || t.Reply {
		return
	}
	reply := func(r alink.Reply) {
		r.Method = "thing.config.get"
		if err := c.o.Broker.Publish(topic+"_reply", alink.EncodeReply(r), false, 0); err != nil {
			c.o.Logger.Warn("replying", "topic", topic, "err", err)
		}
	}
	req, err := alink.DecodeRequest(payload)
	if err != nil {
		reply(alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Data: map[string]any{}, Message: "malformed request"})
		return
	}
	var params struct {
		ConfigScope string `json:"configScope"`
		GetType     string `json:"getType"`
	}
	if len(req.Params) > 0 && json.Unmarshal(req.Params, &params) != nil ||
		params.ConfigScope != "" && params.ConfigScope != "product" || params.GetType != "" && params.GetType != "file" {
		reply(alink.Reply{ID: req.ID, Code: alink.CodeBadParams, Data: map[string]any{}, Message: `params: configScope "product" and getType "file" are served`})
		return
	}
	cfg, err := c.o.Registry.LookupProductConfig(context.Background(), t.ProductKey)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		reply(alink.Reply{ID: req.ID, Code: CodeNoConfig, Data: map[string]any{}, Message: "the product has no configuration file"})
		return
	case err != nil:
		c.o.Logger.Error("reading a configuration file", "err", err)
		reply(alink.Reply{ID: req.ID, Code: alink.CodeInternal, Data: map[string]any{}, Message: "internal error"})
		return
	}
	if req.WantsReply() {
		reply(alink.Reply{ID: req.ID, Code: alink.CodeSuccess, Data: c.describe(t.ProductKey, cfg)})
	}
}

// Push sends thing.config.push for the product's current file to the
// given devices (the online ones, chosen by the caller); it returns how
// many were sent.
func (c *Configs) Push(ctx context.Context, pk string, deviceNames []string) (int, error) {
	cfg, err := c.o.Registry.LookupProductConfig(ctx, pk)
	if err != nil {
		return 0, err
	}
	params := c.describe(pk, cfg)
	n := 0
	for _, dn := range deviceNames {
		body, _ := alink.Marshal(map[string]any{"id": strconv.FormatInt(c.o.Now().UnixNano(), 10), "version": "1.0", "method": "thing.config.push", "params": params})
		if err := c.o.Broker.Publish(alink.SysTopic(pk, dn, "thing/config/push"), body, false, 1); err != nil {
			return n, fmt.Errorf("pushing the configuration to %s: %w", dn, err)
		}
		n++
	}
	return n, nil
}

// ConfigPath is where configuration files are served: /config/{pk}/{configId}.
const ConfigPath = "/config/"

// url is a download URL good for URLTTL: the path with its expiry and
// an HMAC of both.
func (c *Configs) url(pk, configID string) string {
	path := ConfigPath + pk + "/" + configID
	exp := strconv.FormatInt(c.o.Now().Add(c.o.URLTTL).Unix(), 10)
	return c.o.BaseURL() + path + "?expires=" + exp + "&sig=" + c.sign(path, exp)
}

func (c *Configs) sign(path, exp string) string {
	m := hmac.New(sha256.New, c.o.Key)
	m.Write([]byte(path + "\n" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// ServeHTTP serves a configuration file to a signed, unexpired URL, over
// TLS only; anything else is 404, so the answer does not tell whether a
// product or file exists.
func (c *Configs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	notFound := func() { http.Error(w, "not found", http.StatusNotFound) }
	if r.TLS == nil || r.Method != http.MethodGet {
		notFound()
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, ConfigPath)
	pk, id, ok := strings.Cut(rest, "/")
	q := r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	if !ok || err != nil || c.o.Now().Unix() > exp ||
		!hmac.Equal([]byte(q.Get("sig")), []byte(c.sign(ConfigPath+pk+"/"+id, q.Get("expires")))) {
		notFound()
		return
	}
	cfg, err := c.o.Registry.LookupProductConfig(r.Context(), pk)
	if err != nil || cfg.ConfigID != id {
		notFound() // replaced since: the device asks again
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(cfg.Content)))
	w.Write(cfg.Content)
}
