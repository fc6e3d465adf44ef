package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// apiClient talks to a corral server's REST API for the CLI.
type apiClient struct {
	server  string
	apiKey  string
	dataDir string
	json    bool
	out     io.Writer
	http    *http.Client
}

// apiError is the API's one error shape.
type apiError struct {
	Status    int    `json:"-"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field"`
	RequestID string `json:"requestId"`
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	if e.Field != "" {
		msg += " [field " + e.Field + "]"
	}
	return msg
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// addClientCommands adds the API client commands.
func addClientCommands(root *cobra.Command) {
	c := &apiClient{http: &http.Client{Timeout: 120 * time.Second}}
	pf := root.PersistentFlags()
	pf.StringVar(&c.server, "server", envOr("CORRAL_SERVER", "http://127.0.0.1:8080"), "corral API URL (CORRAL_SERVER)")
	pf.StringVar(&c.apiKey, "api-key", os.Getenv("CORRAL_API_KEY"), "API key {id}.{secret} (CORRAL_API_KEY; default: <data-dir>/admin.key)")
	pf.StringVar(&c.dataDir, "data-dir", envOr("CORRAL_DATA_DIR", "./corral-data"), "data directory whose admin.key is the default API key")
	pf.BoolVar(&c.json, "json", false, "print raw JSON instead of a table")
	root.AddCommand(c.productCmd(), c.deviceCmd(), c.apikeyCmd(), c.accountCmd(), c.auditCmd(), c.registerCmd(), c.caCmd(), c.certCmd(), c.distCmd(), c.shadowCmd())
}

func (c *apiClient) key() (string, error) {
	if c.apiKey != "" {
		return c.apiKey, nil
	}
	data, err := os.ReadFile(filepath.Join(c.dataDir, "admin.key"))
	if err != nil {
		return "", fmt.Errorf("no API key: pass --api-key, set CORRAL_API_KEY, or run where %s holds admin.key", c.dataDir)
	}
	return strings.TrimSpace(string(data)), nil
}

// do sends a request; a nil out discards the body.
func (c *apiClient) do(cmd *cobra.Command, method, path string, body any, contentType string, auth bool, out any) ([]byte, error) {
	c.out = cmd.OutOrStdout()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, contentType = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, strings.TrimRight(c.server, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth {
		k, err := c.key()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+k)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Code, e.Message = "http_error", strings.TrimSpace(string(data))
		}
		return nil, e
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("decoding the answer: %w", err)
		}
	}
	return data, nil
}

// show prints raw JSON with --json, or runs the table printer.
func (c *apiClient) show(raw []byte, table func(w *tabwriter.Writer)) error {
	if c.json {
		var v any
		json.Unmarshal(raw, &v)
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func short(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func attrsFlag(pairs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q: want key=value", p)
		}
		m[k] = v
	}
	return m, nil
}

func esc(s string) string { return url.PathEscape(s) }
