package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

// TestOpenAPIMatchesHandlers walks the served document: every operation it
// lists is routed (never "no such path" or 405), and every documented
// success answer carries the required properties of its schema.
func TestOpenAPIMatchesHandlers(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	s.CreateDevice(p.ProductKey, "dev-1")

	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comps   struct {
			Schemas map[string]struct {
				Required []string `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	s.Do("", "GET", "/v1/openapi.json", nil).JSON(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) < 10 {
		t.Fatalf("document: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
	ops := 0
	for path, methods := range doc.Paths {
		for method, raw := range methods {
			ops++
			var op struct {
				Responses map[string]struct {
					Content map[string]struct {
						Schema struct {
							Ref string `json:"$ref"`
						} `json:"schema"`
					} `json:"content"`
				} `json:"responses"`
			}
			json.Unmarshal(raw, &op)
			concrete := strings.NewReplacer("{productKey}", p.ProductKey, "{deviceName}", "dev-1", "{keyId}", "ckNONE").Replace(path)
			if method == "delete" {
				concrete = strings.Replace(concrete, p.ProductKey, "AAAAAAAAAAA", 1) // keep the fixtures
			}
			r := s.Do(s.AdminKey, strings.ToUpper(method), concrete, "{}")
			if r.Status == 405 || strings.Contains(string(r.Body), "no such API path") {
				t.Errorf("%s %s is documented but not routed: %d %s", method, path, r.Status, r.Body)
				continue
			}
			if r.Status >= 300 {
				continue
			}
			resp, ok := op.Responses[itoa(r.Status)]
			if !ok {
				t.Errorf("%s %s answered %d, which the document does not list", method, path, r.Status)
				continue
			}
			ref := resp.Content["application/json"].Schema.Ref
			if ref == "" {
				continue
			}
			name := strings.TrimPrefix(ref, "#/components/schemas/")
			var body map[string]any
			r.JSON(t, &body)
			for _, req := range doc.Comps.Schemas[name].Required {
				if _, ok := body[req]; !ok {
					t.Errorf("%s %s: answer lacks required %s.%s: %s", method, path, name, req, r.Body)
				}
			}
		}
	}
	if ops < 20 {
		t.Fatalf("only %d operations documented", ops)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
