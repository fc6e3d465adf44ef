package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DesiredValue is a desired property value and its version.
type DesiredValue struct {
	Value   json.RawMessage `json:"value"`
	Version int64           `json:"version"`
}

// Desired reads desired property values (thing.property.desired.get):
// the named ones, or all when none are named.
func (c *Client) Desired(ctx context.Context, ids ...string) (map[string]DesiredValue, error) {
	if ids == nil {
		ids = []string{}
	}
	r, err := c.Call(ctx, "thing/property/desired/get", ids)
	if err != nil {
		return nil, err
	}
	out := map[string]DesiredValue{}
	return out, json.Unmarshal(r.Data, &out)
}

// DeleteDesired clears desired values the device has applied
// (thing.property.desired.delete): each at the version given; a value set
// again since stays.
func (c *Client) DeleteDesired(ctx context.Context, versions map[string]int64) error {
	params := make(map[string]map[string]int64, len(versions))
	for id, v := range versions {
		params[id] = map[string]int64{"version": v}
	}
	_, err := c.Call(ctx, "thing/property/desired/delete", params)
	return err
}

// TimedValue is a property value with the time it was taken.
type TimedValue struct {
	Value any   `json:"value"`
	Time  int64 `json:"time"` // epoch ms
}

// PostBatch reports several timed values per property at once
// (thing.event.property.batch.post).
func (c *Client) PostBatch(ctx context.Context, values map[string][]TimedValue) error {
	_, err := c.Call(ctx, "thing/event/property/batch/post", map[string]any{"properties": values})
	return err
}

// ConfigFile describes the product's remote configuration file.
type ConfigFile struct {
	ConfigID   string `json:"configId"`
	Size       int    `json:"configSize"`
	Sign       string `json:"sign"`
	SignMethod string `json:"signMethod"`
	URL        string `json:"url"`
	GetType    string `json:"getType"`
}

// ErrConfigSign means a downloaded configuration file does not match its
// announced SHA-256.
var ErrConfigSign = errors.New("configuration file does not match its sign")

// Config asks for the product's configuration file (thing.config.get),
// downloads it with hc (nil: a client trusting Options.TLS's roots) and
// checks its size and SHA-256 before returning it.
func (c *Client) Config(ctx context.Context, hc *http.Client) (ConfigFile, []byte, error) {
	r, err := c.Call(ctx, "thing/config/get", map[string]string{"configScope": "product", "getType": "file"})
	if err != nil {
		return ConfigFile{}, nil, err
	}
	var f ConfigFile
	if err := json.Unmarshal(r.Data, &f); err != nil {
		return ConfigFile{}, nil, fmt.Errorf("thing.config.get answer: %w", err)
	}
	body, err := c.Download(ctx, hc, f)
	return f, body, err
}

// Download fetches a configuration file announced by thing.config.get or
// thing.config.push and checks it.
func (c *Client) Download(ctx context.Context, hc *http.Client, f ConfigFile) ([]byte, error) {
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if c.o.TLS != nil {
			tr.TLSClientConfig = c.o.TLS.Clone()
		}
		hc = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading configuration %s: %w", f.ConfigID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading configuration %s: HTTP %d", f.ConfigID, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(f.Size)+1))
	if err != nil {
		return nil, fmt.Errorf("downloading configuration %s: %w", f.ConfigID, err)
	}
	sum := sha256.Sum256(body)
	if len(body) != f.Size || hex.EncodeToString(sum[:]) != f.Sign {
		return nil, fmt.Errorf("%s: %w", f.ConfigID, ErrConfigSign)
	}
	return body, nil
}

// OnConfigPush registers h for thing.config.push: the platform announcing
// a new configuration file (fetch it with Download).
func (c *Client) OnConfigPush(ctx context.Context, h func(ConfigFile)) error {
	topic := "/sys/" + c.o.Triple.ProductKey + "/" + c.o.Triple.DeviceName + "/thing/config/push"
	return c.listen(ctx, topic, 1, func(m Message) {
		var req struct {
			Params ConfigFile `json:"params"`
		}
		if json.Unmarshal(m.Payload, &req) == nil && req.Params.URL != "" {
			h(req.Params)
		}
	})
}
