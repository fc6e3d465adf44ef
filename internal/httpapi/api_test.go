package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/config"
)

type apiError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field"`
	RequestID string `json:"requestId"`
}

func TestBadInputGetsClearErrorsAndChangesNothing(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("thermo", nil)
	devs := "/v1/products/" + p.ProductKey + "/devices"
	s.CreateDevice(p.ProductKey, "existing-1")

	tooMany := make([]string, 10001)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("dev-%05d", i)
	}
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"bad JSON", "POST", devs, `{"deviceName":`, 400, "invalid_argument", "body"},
		{"not JSON", "POST", devs, `hello`, 400, "invalid_argument", "body"},
		{"two objects", "POST", devs, `{"deviceName":"abcd"}{}`, 400, "invalid_argument", "body"},
		{"unknown field", "POST", devs, `{"deviceName":"abcd","colour":"red"}`, 400, "invalid_argument", "colour"},
		{"wrong type", "POST", devs, `{"deviceName":42}`, 400, "invalid_argument", "deviceName"},
		{"name too short", "POST", devs, map[string]any{"deviceName": "abc"}, 400, "invalid_argument", "deviceName"},
		{"name too long", "POST", devs, map[string]any{"deviceName": strings.Repeat("a", 33)}, 400, "invalid_argument", "deviceName"},
		{"illegal character", "POST", devs, map[string]any{"deviceName": "dev#1"}, 400, "invalid_argument", "deviceName"},
		{"duplicate", "POST", devs, map[string]any{"deviceName": "existing-1"}, 409, "already_exists", ""},
		{"batch over 10000", "POST", devs + ":batch", map[string]any{"deviceNames": tooMany}, 413, "payload_too_large", ""},
		{"batch with a bad name", "POST", devs + ":batch", map[string]any{"deviceNames": []string{"good-1", "b d"}}, 400, "invalid_argument", "deviceNames[1]"},
		{"batch with a duplicate inside", "POST", devs + ":batch", map[string]any{"deviceNames": []string{"good-1", "good-1"}}, 409, "already_exists", ""},
		{"batch clashing with existing", "POST", devs + ":batch", map[string]any{"deviceNames": []string{"good-1", "existing-1"}}, 409, "already_exists", ""},
		{"batch count over 10000", "POST", devs + ":batch", map[string]any{"count": 10001}, 413, "payload_too_large", ""},
		{"unknown product", "POST", "/v1/products/AAAAAAAAAAA/devices", map[string]any{"deviceName": "abcd"}, 404, "not_found", ""},
		{"bad node type", "POST", "/v1/products", map[string]any{"name": "x", "nodeType": "hub"}, 400, "invalid_argument", "nodeType"},
		{"product without name", "POST", "/v1/products", map[string]any{}, 400, "invalid_argument", "name"},
		{"product name too long", "POST", "/v1/products", map[string]any{"name": strings.Repeat("n", 65)}, 400, "invalid_argument", "name"},
		{"bad attribute key", "PATCH", devs + "/existing-1", map[string]any{"attributes": map[string]string{"a b": "c"}}, 400, "invalid_argument", "attributes"},
		{"bad limit", "GET", devs + "?limit=0", nil, 400, "invalid_argument", "limit"},
		{"bad cursor", "GET", devs + "?cursor=!!", nil, 400, "invalid_argument", "cursor"},
		{"bad status filter", "GET", devs + "?status=sleepy", nil, 400, "invalid_argument", "status"},
		{"unknown path", "GET", "/v1/nothing", nil, 404, "not_found", ""},
		{"wrong method", "PUT", "/v1/products", nil, 405, "method_not_allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Do(s.AdminKey, tt.method, tt.path, tt.body)
			var e apiError
			r.JSON(t, &e)
			if r.Status != tt.status || e.Code != tt.code || e.Message == "" || e.RequestID == "" {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, tt.status, tt.code)
			}
			if tt.field != "" && e.Field != tt.field {
				t.Fatalf("field = %q, want %q (%s)", e.Field, tt.field, r.Body)
			}
		})
	}
	var list struct {
		Devices []struct{ DeviceName string } `json:"devices"`
	}
	s.Admin("GET", devs, nil, 200).JSON(t, &list)
	if len(list.Devices) != 1 || list.Devices[0].DeviceName != "existing-1" {
		t.Fatalf("bad input changed the registry: %+v", list.Devices)
	}
}

func TestBodyTooLarge(t *testing.T) {
	s := apptest.Start(t)
	r := s.Do(s.AdminKey, "POST", "/v1/products", `{"name":"`+strings.Repeat("x", 5<<20)+`"}`)
	if r.Status != 413 {
		t.Fatalf("status %d %s", r.Status, r.Body)
	}
}

func TestAuthAndRoles(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	s.CreateDevice(p.ProductKey, "dev-1")
	mk := func(role string) string {
		var k struct{ Token string }
		s.Admin("POST", "/v1/apikeys", map[string]any{"name": role, "role": role}, 201).JSON(t, &k)
		return k.Token
	}
	ro, op := mk("readonly"), mk("operator")
	devPath := "/v1/products/" + p.ProductKey + "/devices/dev-1"
	tests := []struct {
		name, token, method, path string
		body                      any
		status                    int
	}{
		{"no key", "", "GET", "/v1/products", nil, 401},
		{"garbage key", "nonsense", "GET", "/v1/products", nil, 401},
		{"wrong secret", strings.Split(ro, ".")[0] + ".wrong", "GET", "/v1/products", nil, 401},
		{"readonly reads", ro, "GET", devPath, nil, 200},
		{"readonly cannot create", ro, "POST", "/v1/products", map[string]any{"name": "x"}, 403},
		{"readonly cannot read secrets", ro, "GET", devPath + "/secret", nil, 403},
		{"operator creates", op, "POST", "/v1/products", map[string]any{"name": "x"}, 201},
		{"operator disables", op, "POST", devPath + ":disable", nil, 200},
		{"operator cannot read secrets", op, "GET", devPath + "/secret", nil, 403},
		{"operator cannot make keys", op, "POST", "/v1/apikeys", map[string]any{"role": "admin"}, 403},
		{"operator cannot list accounts", op, "GET", "/v1/accounts", nil, 403},
		{"admin reads secret", s.AdminKey, "GET", devPath + "/secret", nil, 200},
		{"health needs no key", "", "GET", "/healthz", nil, 200},
		{"openapi needs no key", "", "GET", "/v1/openapi.json", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := s.Do(tt.token, tt.method, tt.path, tt.body); r.Status != tt.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Body, tt.status)
			}
		})
	}
	// The secret read was audited. Audit rows go to the store's next group
	// commit without being waited for; a durable write queued after them
	// (a device created) commits no earlier.
	s.CreateDevice(p.ProductKey, "audit-fence")
	var audit struct {
		Entries []struct{ Action, Target, Outcome string } `json:"entries"`
	}
	s.Admin("GET", "/v1/audit?action=device.secret.read", nil, 200).JSON(t, &audit)
	var ok, denied int
	for _, e := range audit.Entries {
		if e.Target == p.ProductKey+"/dev-1" {
			switch e.Outcome {
			case "ok":
				ok++
			case "denied":
				denied++
			}
		}
	}
	if ok != 1 || denied != 2 {
		t.Fatalf("audit: %d ok, %d denied: %+v", ok, denied, audit.Entries)
	}
}

func TestAccountIsolation(t *testing.T) {
	s := apptest.Start(t)
	var created struct{ Token string }
	s.Admin("POST", "/v1/accounts", map[string]any{"name": "tenant-b"}, 201).JSON(t, &created)
	b := created.Token

	pa := s.CreateProduct("a's product", nil)
	s.CreateDevice(pa.ProductKey, "dev-a")
	var keys struct {
		Keys []struct{ ID string } `json:"keys"`
	}
	s.Admin("GET", "/v1/apikeys", nil, 200).JSON(t, &keys)

	for _, tt := range []struct{ method, path string }{
		{"GET", "/v1/products/" + pa.ProductKey},
		{"PATCH", "/v1/products/" + pa.ProductKey},
		{"DELETE", "/v1/products/" + pa.ProductKey},
		{"GET", "/v1/products/" + pa.ProductKey + "/devices"},
		{"GET", "/v1/products/" + pa.ProductKey + "/devices/dev-a"},
		{"GET", "/v1/products/" + pa.ProductKey + "/devices/dev-a/secret"},
		{"POST", "/v1/products/" + pa.ProductKey + "/devices/dev-a:disable"},
		{"DELETE", "/v1/products/" + pa.ProductKey + "/devices/dev-a"},
		{"POST", "/v1/products/" + pa.ProductKey + "/devices"},
		{"DELETE", "/v1/apikeys/" + keys.Keys[0].ID},
	} {
		var body any
		if tt.method == "PATCH" {
			body = map[string]any{"name": "stolen"}
		} else if tt.method == "POST" && strings.HasSuffix(tt.path, "/devices") {
			body = map[string]any{"deviceName": "intruder"}
		}
		if r := s.Do(b, tt.method, tt.path, body); r.Status != 404 {
			t.Errorf("%s %s from another account = %d %s, want 404", tt.method, tt.path, r.Status, r.Body)
		}
	}
	var list struct {
		Products []any `json:"products"`
	}
	if r := s.Do(b, "GET", "/v1/products", nil); r.Status != 200 {
		t.Fatal(r.Status)
	} else if r.JSON(t, &list); len(list.Products) != 0 {
		t.Fatalf("tenant b sees %d products", len(list.Products))
	}
	var self struct{ ID, Name string }
	if r := s.Do(b, "GET", "/v1/accounts/self", nil); r.Status != 200 {
		t.Fatal(r.Status)
	} else if r.JSON(t, &self); self.Name != "tenant-b" {
		t.Fatalf("self = %+v", self)
	}
	if r := s.Do(b, "GET", "/v1/accounts", nil); r.Status != 403 {
		t.Fatalf("tenant admin listed accounts: %d", r.Status)
	}
	// a's device is untouched
	s.Admin("GET", "/v1/products/"+pa.ProductKey+"/devices/dev-a", nil, 200)
}

func TestListingsNeverShowSecretsAndPaginate(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	var batch struct {
		Devices []apptest.Device `json:"devices"`
	}
	s.Admin("POST", "/v1/products/"+p.ProductKey+"/devices:batch", map[string]any{"count": 250}, 201).JSON(t, &batch)
	if len(batch.Devices) != 250 || batch.Devices[0].DeviceSecret == "" {
		t.Fatalf("batch answer: %d devices", len(batch.Devices))
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		r := s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices?limit=100&cursor="+cursor, nil, 200)
		if strings.Contains(string(r.Body), "eviceSecret") || strings.Contains(string(r.Body), batch.Devices[0].DeviceSecret) {
			t.Fatal("listing shows a secret")
		}
		var page struct {
			Devices    []apptest.Device `json:"devices"`
			NextCursor string           `json:"nextCursor"`
		}
		r.JSON(t, &page)
		for _, d := range page.Devices {
			if seen[d.DeviceName] {
				t.Fatalf("%s listed twice", d.DeviceName)
			}
			seen[d.DeviceName] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != 250 {
		t.Fatalf("listed %d of 250", len(seen))
	}
	r := s.Admin("GET", "/v1/products/"+p.ProductKey, nil, 200)
	if strings.Contains(string(r.Body), p.ProductSecret) {
		t.Fatal("product GET shows its secret")
	}
}

func TestFilters(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	base := "/v1/products/" + p.ProductKey + "/devices"
	for _, n := range []string{"lamp_01", "lamp-02", "lampx03", "pump-01"} {
		s.CreateDevice(p.ProductKey, n)
	}
	s.Admin("PATCH", base+"/pump-01", map[string]any{"attributes": map[string]string{"site": "north"}}, 200)
	s.Admin("POST", base+"/lamp-02:disable", nil, 200)
	names := func(q string) string {
		var l struct {
			Devices []apptest.Device `json:"devices"`
		}
		s.Admin("GET", base+q, nil, 200).JSON(t, &l)
		var out []string
		for _, d := range l.Devices {
			out = append(out, d.DeviceName)
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"?prefix=lamp":              "lamp-02,lamp_01,lampx03",
		"?prefix=lamp_":             "lamp_01",
		"?status=disabled":          "lamp-02",
		"?status=inactive&prefix=l": "lamp_01,lampx03",
		"?attribute=site%3Dnorth":   "pump-01",
		"?attribute=site%3Dsouth":   "",
	} {
		if got := names(q); got != want {
			t.Errorf("%s: got %q want %q", q, got, want)
		}
	}
}

func TestCSVBatchIsAllOrNothing(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	path := "/v1/products/" + p.ProductKey + "/devices:batch"
	req := func(body string) *http.Response {
		rq, _ := http.NewRequest("POST", s.URL+path, strings.NewReader(body))
		rq.Header.Set("Content-Type", "text/csv")
		rq.Header.Set("Authorization", "Bearer "+s.AdminKey)
		resp, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := req("deviceName\ncsv-0001\ncsv-0002\n\ncsv-0003\n")
	var out struct {
		Devices []apptest.Device `json:"devices"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 201 || len(out.Devices) != 3 {
		t.Fatalf("csv batch: %d, %d devices", resp.StatusCode, len(out.Devices))
	}
	resp = req("csv-0004\ncsv-0001\n")
	resp.Body.Close()
	if resp.StatusCode != 409 {
		t.Fatalf("clash: %d", resp.StatusCode)
	}
	s.Admin("GET", "/v1/products/"+p.ProductKey+"/devices/csv-0004", nil, 404)
	resp = req("a,\"b\n")
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("broken csv: %d", resp.StatusCode)
	}
}

func TestRateLimit(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.APIRateLimit = 1 })
	got429 := false
	for i := 0; i < 10; i++ {
		r := s.Do(s.AdminKey, "GET", "/v1/products", nil)
		if r.Status == 429 {
			got429 = r.Header.Get("Retry-After") != ""
			break
		}
	}
	if !got429 {
		t.Fatal("no 429 with Retry-After after 10 quick calls at 1/s")
	}
}
