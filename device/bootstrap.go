package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-iot/corral/internal/credential"
)

// Endpoint is where a distribution centre sends a device.
type Endpoint struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	IP   string `json:"ip,omitempty"` // backup address when Host does not resolve
}

func (e Endpoint) addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// ErrBootstrap wraps a failed bootstrap request.
var ErrBootstrap = errors.New("device bootstrap failed")

// Bootstrap asks a distribution centre (an origin such as
// https://iot.example.com:8443) where the device connects, as the Link
// SDK does: POST /auth/bootstrap with productKey, deviceName, clientId and
// resources=mqtt. hc nil is a client with the SDK's 5 s timeout.
func Bootstrap(ctx context.Context, centre string, hc *http.Client, t Triple) (Endpoint, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	form := url.Values{"productKey": {t.ProductKey}, "deviceName": {t.DeviceName}, "clientId": {t.ProductKey + "." + t.DeviceName}, "resources": {"mqtt"}}
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(centre, "/")+"/auth/bootstrap", strings.NewReader(form.Encode()))
	if err != nil {
		return Endpoint{}, fmt.Errorf("%w: %v", ErrBootstrap, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	req.Header.Set("Accept", "text/xml,text/javascript,text/html,application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%w: %v", ErrBootstrap, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return Endpoint{}, fmt.Errorf("%w: reading the answer: %v", ErrBootstrap, err)
	}
	return ParseBootstrapAnswer(resp.StatusCode, body)
}

// ParseBootstrapAnswer reads a distribution centre's answer: HTTP 200 and
// data.resources.mqtt's host and port (and ip, kept when shorter than 16
// characters, as the Link SDK does).
func ParseBootstrapAnswer(status int, body []byte) (Endpoint, error) {
	var ans struct {
		Code int `json:"code"`
		Data struct {
			Resources struct {
				MQTT Endpoint `json:"mqtt"`
			} `json:"resources"`
		} `json:"data"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || status != 200 {
		if len(ans.Message) > 200 {
			ans.Message = ans.Message[:200]
		}
		return Endpoint{}, fmt.Errorf("%w: HTTP %d: %q", ErrBootstrap, status, ans.Message)
	}
	ep := ans.Data.Resources.MQTT
	if ep.Host == "" || ep.Port < 1 || ep.Port > 65535 {
		return Endpoint{}, fmt.Errorf("%w: the answer names no MQTT endpoint", ErrBootstrap)
	}
	if len(ep.IP) >= 16 {
		ep.IP = ""
	}
	return ep, nil
}

// BootstrapOptions configure a distributed device: one that asks a
// distribution centre where to connect.
type BootstrapOptions struct {
	// Centre is the distribution centre's origin, e.g. https://iot.example.com:8443.
	Centre string
	// HTTPClient makes the bootstrap requests (TLS roots for the centre);
	// nil: a client with a 5 s timeout.
	HTTPClient *http.Client
	// Cache, when set, is a file the endpoint is kept in, so that a
	// restart connects without asking the centre; it is asked again when
	// connecting to the cached endpoint fails.
	Cache string
	// OnMoved is told of the new client after the platform moved the
	// device (thing.bootstrap.notify or a v3 config push).
	OnMoved func(*Client)
}

// Distributed is a device connected where its distribution centre said.
// It reconnects itself when the connection is lost (unless
// Options.AutoReconnect is false): to the same endpoint, else, when that
// fails, wherever a new bootstrap says, trying every second until Close.
// It follows thing.bootstrap.notify (answers on notify_reply, bootstraps
// again and reconnects) and the v3 /thing/bootstrap/config/push (answers
// on push_reply and reconnects to the endpoint pushed). Safe for
// concurrent use.
type Distributed struct {
	o Options
	b BootstrapOptions

	mu     sync.Mutex
	c      *Client  // current client; guarded by mu
	ep     Endpoint // its endpoint; guarded by mu
	closed bool     // guarded by mu
	moving bool     // a move is replacing c; guarded by mu
	stop   chan struct{}
	wg     sync.WaitGroup // moves in progress
}

// ConnectBootstrapped connects a device through a distribution centre:
// to the cached endpoint when there is one and it accepts the device,
// else to the one a bootstrap answers (then cached). o.Broker is ignored;
// o.TLS set means MQTT over TLS to the endpoint.
func ConnectBootstrapped(ctx context.Context, o Options, b BootstrapOptions) (*Distributed, error) {
	d := &Distributed{o: o, b: b, stop: make(chan struct{})}
	c, ep, err := d.connect(ctx, nil, false)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.c, d.ep = c, ep
	d.mu.Unlock()
	return d, nil
}

// Client is the current connection (another after a move).
func (d *Distributed) Client() *Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

// Endpoint is the current endpoint.
func (d *Distributed) Endpoint() Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ep
}

// Close disconnects and stops following moves.
func (d *Distributed) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	close(d.stop)
	d.mu.Unlock()
	d.wg.Wait()
	d.mu.Lock()
	c := d.c
	d.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// connect connects to to (a pushed endpoint); else, unless fresh, to the
// cached or current endpoint; else where a bootstrap says.
func (d *Distributed) connect(ctx context.Context, to *Endpoint, fresh bool) (*Client, Endpoint, error) {
	if to != nil {
		c, err := d.dial(ctx, *to)
		if err == nil {
			d.writeCache(*to)
		}
		return c, *to, err
	}
	ep, ok := d.readCache()
	if !ok {
		d.mu.Lock()
		ep, ok = d.ep, d.ep.Host != ""
		d.mu.Unlock()
	}
	if ok && !fresh {
		if c, err := d.dial(ctx, ep); err == nil {
			return c, ep, nil
		}
	}
	ep, err := Bootstrap(ctx, d.b.Centre, d.b.HTTPClient, d.o.Triple)
	if err != nil {
		return nil, Endpoint{}, err
	}
	c, err := d.dial(ctx, ep)
	if err != nil {
		return nil, ep, err
	}
	d.writeCache(ep)
	return c, ep, nil
}

func (d *Distributed) topic(suffix string) string {
	return "/sys/" + d.o.Triple.ProductKey + "/" + d.o.Triple.DeviceName + "/thing/bootstrap/" + suffix
}

// dial connects to one endpoint with the bootstrap handlers in place.
func (d *Distributed) dial(ctx context.Context, ep Endpoint) (*Client, error) {
	o := d.o
	scheme := "tcp://"
	if o.TLS != nil {
		scheme = "ssl://"
	}
	o.Broker = scheme + ep.addr()
	var self *Client
	var selfMu sync.Mutex
	current := func() *Client { selfMu.Lock(); defer selfMu.Unlock(); return self }
	o.Handlers = map[string]Handler{}
	for f, h := range d.o.Handlers {
		o.Handlers[f] = h
	}
	o.Handlers[d.topic("notify")] = func(m Message) { d.onNotify(current(), m) }
	o.Handlers[d.topic("config/push")] = func(m Message) { d.onPush(current(), m) }
	// Reconnects are this type's: a lost connection goes through the
	// cached endpoint and, failing that, a new bootstrap.
	reconnect := d.o.AutoReconnect == nil || *d.o.AutoReconnect
	o.AutoReconnect = new(bool)
	o.OnConnectionChange = func(up bool, err error) {
		if d.o.OnConnectionChange != nil {
			d.o.OnConnectionChange(up, err)
		}
		if !up && reconnect {
			d.move(current(), nil, false)
		}
	}
	c, err := Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	selfMu.Lock()
	self = c
	selfMu.Unlock()
	if !o.ServerSubscribe {
		for _, s := range []string{"notify", "config/push"} {
			if err := c.Subscribe(ctx, d.topic(s), 0, o.Handlers[d.topic(s)]); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	return c, nil
}

// onNotify answers thing.bootstrap.notify and moves the device.
func (d *Distributed) onNotify(c *Client, m Message) {
	var req struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(m.Payload, &req) != nil || c == nil {
		return
	}
	reply, _ := json.Marshal(map[string]any{"id": req.ID, "code": 200, "data": map[string]any{}})
	c.mc.Publish(d.topic("notify_reply"), 0, false, reply)
	d.move(c, nil, true)
}

// onPush answers the v3 config push and moves the device to its endpoint.
func (d *Distributed) onPush(c *Client, m Message) {
	var req struct {
		ID     string `json:"id"`
		Params struct {
			Endpoint struct {
				MQTT Endpoint `json:"mqtt"`
			} `json:"endpoint"`
		} `json:"params"`
	}
	if json.Unmarshal(m.Payload, &req) != nil || c == nil {
		return
	}
	ep := req.Params.Endpoint.MQTT
	code := 200
	if ep.Host == "" || ep.Port < 1 || ep.Port > 65535 {
		code = 400
	}
	reply, _ := json.Marshal(map[string]any{"id": req.ID, "code": code, "data": map[string]any{}})
	c.mc.Publish(d.topic("config/push_reply"), 0, false, reply)
	if code == 200 {
		d.move(c, &ep, true)
	}
}

// move replaces the connection c, off the MQTT callback: to the pushed
// endpoint; else, unless fresh, to the current one; else by bootstrapping
// again (retrying every second until Close).
func (d *Distributed) move(c *Client, to *Endpoint, fresh bool) {
	d.mu.Lock()
	if d.closed || c == nil || d.c != c || d.moving {
		d.mu.Unlock()
		return
	}
	d.moving = true
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		defer func() {
			d.mu.Lock()
			d.moving = false
			d.mu.Unlock()
		}()
		time.Sleep(100 * time.Millisecond) // let the reply go out
		c.Close()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			nc, ep, err := d.connect(ctx, to, fresh)
			cancel()
			if err == nil {
				d.mu.Lock()
				if d.closed {
					d.mu.Unlock()
					nc.Close()
					return
				}
				d.c, d.ep = nc, ep
				d.mu.Unlock()
				if d.b.OnMoved != nil {
					d.b.OnMoved(nc)
				}
				return
			}
			to, fresh = nil, true // what failed: ask the centre
			select {
			case <-d.stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()
}

func (d *Distributed) readCache() (Endpoint, bool) {
	if d.b.Cache == "" {
		return Endpoint{}, false
	}
	b, err := os.ReadFile(d.b.Cache)
	if err != nil {
		return Endpoint{}, false
	}
	var ep Endpoint
	if json.Unmarshal(b, &ep) != nil || ep.Host == "" || ep.Port == 0 {
		return Endpoint{}, false
	}
	return ep, true
}

func (d *Distributed) writeCache(ep Endpoint) {
	if d.b.Cache == "" {
		return
	}
	b, _ := json.Marshal(ep)
	credential.WriteFileAtomic(d.b.Cache, b, 0o600)
}
