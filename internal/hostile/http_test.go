package hostile_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// httpPage is one page of any list answer: the items under their key, and
// the cursor to the next page.
type httpPage struct {
	Devices    []map[string]any `json:"devices"`
	Entries    []map[string]any `json:"entries"`
	Products   []map[string]any `json:"products"`
	NextCursor string           `json:"nextCursor"`
}

func (p httpPage) items() []map[string]any {
	switch {
	case p.Devices != nil:
		return p.Devices
	case p.Entries != nil:
		return p.Entries
	}
	return p.Products
}

// httpWalk lists path page by page with limit and returns every item's
// key field, failing on a duplicate or a short page that carries a cursor.
func (w *world) httpWalk(t *testing.T, token, path, limit, key string) []string {
	t.Helper()
	var got []string
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 2000 {
			t.Fatalf("%s: more than 2000 pages", path)
		}
		q := url.Values{"limit": {limit}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p httpPage
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		w.do(token, "GET", path+sep+q.Encode(), nil, 200).JSON(t, &p)
		for _, it := range p.items() {
			k := toString(it[key])
			if seen[k] {
				t.Fatalf("%s: %s twice", path, k)
			}
			seen[k] = true
			got = append(got, k)
		}
		if p.NextCursor == "" {
			return got
		}
		cursor = p.NextCursor
	}
}

func toString(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprint(v)
}

// TestHTTPPagingLosesNothing: a product of 1,005 devices listed at the
// largest page size (and at a small one) yields every device once, each
// page that is not the last carrying a cursor; a limit over the maximum
// is refused naming it. The audit trail pages the same way.
func TestHTTPPagingLosesNothing(t *testing.T) {
	w := newWorld(t)
	p := w.S.CreateProduct("many", nil)
	var batch struct {
		Devices []map[string]any `json:"devices"`
	}
	w.do(w.T1.Admin, "POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"count": 1005}, 201).JSON(t, &batch)
	if len(batch.Devices) != 1005 {
		t.Fatalf("batch created %d devices", len(batch.Devices))
	}
	devices := "/v1/products/" + p.ProductKey + "/devices"
	for _, limit := range []string{"1000", "333"} {
		if got := w.httpWalk(t, w.T1.Readonly, devices, limit, "deviceName"); len(got) != 1005 {
			t.Fatalf("limit=%s walked %d of 1005 devices", limit, len(got))
		}
	}
	for _, path := range []string{devices, "/v1/products", "/v1/audit"} {
		r := w.S.Do(w.T1.Admin, "GET", path+"?limit=1001", nil)
		if r.Status != 400 || !strings.Contains(string(r.Body), `"field":"limit"`) || !strings.Contains(string(r.Body), "1000") {
			t.Fatalf("%s?limit=1001 = %d %s, want 400 naming limit and its maximum 1000", path, r.Status, r.Body)
		}
	}

	// The audit trail: more than a page of entries (secret reads are audited).
	names := make(chan string, len(batch.Devices))
	for _, d := range batch.Devices {
		names <- d["deviceName"].(string)
	}
	close(names)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dn := range names {
				if r := w.S.Do(w.T1.Admin, "GET", devices+"/"+dn+"/secret", nil); r.Status != 200 {
					t.Errorf("reading %s's secret: %d", dn, r.Status)
				}
			}
		}()
	}
	wg.Wait()
	// Audit rows are written in the store's next group commit; a durable
	// write queued after them (a device created) commits no earlier, so
	// once it is answered every read is in the trail.
	w.S.CreateDevice(p.ProductKey, "audit-fence")
	reads := func(limit string) int {
		return len(w.httpWalk(t, w.T1.Admin, "/v1/audit?action=device.secret.read", limit, "id"))
	}
	if n := reads("1000"); n != 1005 {
		t.Fatalf("audit at limit=1000 walked %d of 1005 secret reads", n)
	}
	if n := reads("400"); n != 1005 {
		t.Fatalf("audit at limit=400 walked %d of 1005 secret reads", n)
	}
}

// TestHTTPPrefixIsLiteral: LIKE wildcards in prefix= match themselves.
func TestHTTPPrefixIsLiteral(t *testing.T) {
	w := newWorld(t)
	devices := "/v1/products/" + w.T1.Direct.ProductKey + "/devices"
	for _, prefix := range []string{"%", "dev%", "%A", "_", "de_A", `\`, `dev\`} {
		if got := w.httpWalk(t, w.T1.Readonly, devices+"?prefix="+url.QueryEscape(prefix), "100", "deviceName"); len(got) != 0 {
			t.Fatalf("prefix=%q listed %v, want nothing (no name starts with it)", prefix, got)
		}
	}
	if got := w.httpWalk(t, w.T1.Readonly, devices+"?prefix=devA", "100", "deviceName"); len(got) != 1 || got[0] != "devA" {
		t.Fatalf("prefix=devA listed %v", got)
	}
}
