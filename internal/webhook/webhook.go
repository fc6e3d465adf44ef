// Package webhook owns corral's outbound calls to user functions (any HTTP
// endpoint, e.g. a FaaS URL): JSON bodies signed with an HMAC header,
// bounded timeouts and retries for synchronous calls, a queue that
// delivers events asynchronously with retries, and the address policy
// that keeps user URLs off the server's own and private networks.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	neturl "net/url"
	"strconv"
	"sync"
	"time"
)

// SignatureHeader carries "t={unix seconds},v1={hex HMAC-SHA256(secret, t + "." + body)}".
const SignatureHeader = "X-Corral-Signature"

// Sign returns the signature header value for a body at a time.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header (for receivers, and tests), allowing
// the given clock skew.
func Verify(secret []byte, header string, body []byte, now time.Time, skew time.Duration) bool {
	var ts int64
	var sig string
	for _, part := range bytes.Split([]byte(header), []byte(",")) {
		k, v, _ := bytes.Cut(part, []byte("="))
		switch string(k) {
		case "t":
			ts, _ = strconv.ParseInt(string(v), 10, 64)
		case "v1":
			sig = string(v)
		}
	}
	if ts == 0 || sig == "" {
		return false
	}
	t := time.Unix(ts, 0)
	if now.Sub(t) > skew || t.Sub(now) > skew {
		return false
	}
	want := Sign(secret, t, body)
	return hmac.Equal([]byte(want), []byte("t="+strconv.FormatInt(ts, 10)+",v1="+sig))
}

// Options configure a Client.
type Options struct {
	Secret []byte // signing key
	// Policy says which addresses calls may reach (default: public
	// addresses only), enforced by the HTTP client calls are made with.
	Policy Policy
	Logger *slog.Logger
	Now    func() time.Time
	// Retries of a synchronous call after a failed attempt (network error
	// or 5xx), within the call's timeout. Default 1.
	Retries int
	// QueueSize bounds the asynchronous queue (default 10000); events
	// past it are dropped and logged.
	QueueSize int
	// EventAttempts is how often an event is tried (default 5), with
	// exponential backoff from EventBackoff (default 500 ms).
	EventAttempts int
	EventBackoff  time.Duration
}

// Client calls webhooks.
type Client struct {
	o     Options
	http  *http.Client
	queue chan event
	wg    sync.WaitGroup
	stop  chan struct{}
	once  sync.Once
}

type event struct {
	url  string
	body []byte
}

// New returns a Client; Start runs its event workers.
func New(o Options) *Client {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retries == 0 {
		o.Retries = 1
	}
	if o.QueueSize == 0 {
		o.QueueSize = 10000
	}
	if o.EventAttempts == 0 {
		o.EventAttempts = 5
	}
	if o.EventBackoff == 0 {
		o.EventBackoff = 500 * time.Millisecond
	}
	return &Client{o: o, http: o.Policy.HTTPClient(), queue: make(chan event, o.QueueSize), stop: make(chan struct{})}
}

// ErrStatus means the endpoint answered with a non-2xx status.
var ErrStatus = errors.New("webhook answered with an error status")

// Call posts v as JSON and decodes a 2xx JSON answer into out (if not
// nil). It retries network errors and 5xx within timeout.
func (c *Client) Call(ctx context.Context, url string, v any, out any, timeout time.Duration) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding webhook body: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for attempt := 0; attempt <= c.o.Retries; attempt++ {
		retry, err := c.post(ctx, url, body, out)
		if err == nil {
			return nil
		}
		last = err
		if !retry || ctx.Err() != nil {
			break
		}
	}
	return last
}

func (c *Client) post(ctx context.Context, url string, body []byte, out any) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("webhook request to %s: %w", Redact(url), ErrBadURL)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "corral-webhook/1")
	req.Header.Set(SignatureHeader, Sign(c.o.Secret, c.o.Now(), body))
	resp, err := c.http.Do(req)
	if err != nil {
		// The url.Error names the whole URL, whose path or query often is
		// the function's key: keep only its cause.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		// A refused address stays refused: no retry.
		return !errors.Is(err, ErrForbiddenAddress), fmt.Errorf("calling webhook %s: %w", Redact(url), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return true, fmt.Errorf("reading webhook answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		// Redirects are not followed (see Policy.HTTPClient): a 3xx fails
		// the call like any other non-2xx answer.
		return resp.StatusCode >= 500, fmt.Errorf("%w: %d", ErrStatus, resp.StatusCode)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return false, fmt.Errorf("webhook answer is not the expected JSON: %w", err)
		}
	}
	return false, nil
}

// Redact returns the scheme and host of a webhook URL, for logs and
// errors: its path and query often carry the function's key (a Slack or
// Azure Functions URL is its own credential).
func Redact(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// Start runs n workers delivering queued events until Stop.
func (c *Client) Start(n int) {
	for i := 0; i < n; i++ {
		c.wg.Add(1)
		go c.worker()
	}
}

// Stop ends the workers; events still queued are dropped.
func (c *Client) Stop() {
	c.once.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// Post queues v for asynchronous delivery to url with retries.
func (c *Client) Post(url string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		c.o.Logger.Error("encoding webhook event", "err", err)
		return
	}
	select {
	case c.queue <- event{url, body}:
	default:
		c.o.Logger.Warn("webhook event queue full; event dropped", "url", Redact(url))
	}
}

func (c *Client) worker() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case ev := <-c.queue:
			c.deliver(ev)
		}
	}
}

func (c *Client) deliver(ev event) {
	backoff := c.o.EventBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		retry, err := c.post(ctx, ev.url, ev.body, nil)
		cancel()
		if err == nil {
			return
		}
		if !retry || attempt >= c.o.EventAttempts {
			c.o.Logger.Warn("webhook event not delivered", "url", Redact(ev.url), "attempts", attempt, "err", err)
			return
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-c.stop:
			return
		}
	}
}
