package httpapi_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

// failsOnTheFixture lists the operations whose documented example cannot
// succeed against this test's fixture, and why; their answer is checked
// against the error schema instead. Every other operation must answer its
// documented success status with a body that matches its schema.
var failsOnTheFixture = map[string]string{
	"put /v1/products/{productKey}/devices/{deviceName}/certificate":            "the example PEM is elided",
	"post /v1/products/{productKey}/devices/{deviceName}/subdevices":            "dev-1 is not a gateway",
	"delete /v1/products/{productKey}/devices/{deviceName}/subdevices":          "dev-1 is not a gateway",
	"get /v1/products/{productKey}/devices/{deviceName}/subdevices":             "dev-1 is not a gateway",
	"post /v1/products/{productKey}/devices/{deviceName}/subdevices:notify-add": "dev-1 is not a gateway",
	"post /v1/products/{productKey}/devices/{deviceName}/subdevices:permit":     "dev-1 is not a gateway",
	"get /v1/products/{productKey}/devices/{deviceName}/found":                  "dev-1 is not a gateway",
	"post /v1/products/{productKey}/devices/{deviceName}/found:accept":          "dev-1 is not a gateway",
	"put /v1/products/{productKey}/devices/{deviceName}/properties":             "dev-1 is offline",
	"post /v1/products/{productKey}/devices/{deviceName}/services/{serviceId}":  "dev-1 is offline",
	"post /v1/products/{productKey}/devices/{deviceName}/rrpc":                  "dev-1 is offline",
	"post /v1/products/{productKey}/config:push":                                "no file yet (posts run before puts)",
	"post /v1/register":                                                       "the example token is not signed with a real key",
	"post /v1/cas":                                                            "the example PEMs are elided",
	"post /v1/distribution/jobs":                                              "the example's devices do not exist here",
	"post /v1/distribution/authorizations":                                    "the example code was never issued",
	"post /v1/distribution/authorizations:release":                            "the example grant was never issued",
	"delete /v1/distribution/grants/{grantId}":                                "no such grant",
	"post /v1/distribution/jobs:plan":                                         "the example's devices do not exist here",
	"get /v1/distribution/jobs/{jobId}":                                       "no such job",
	"get /v1/distribution/jobs/{jobId}/devices":                               "no such job",
	"post /v1/distribution/jobs/{jobId}:abort":                                "no such job",
	"delete /v1/distribution/jobs/{jobId}":                                    "no such job",
	"put /v1/distribution/imports/products/{productKey}/devices/{deviceName}": "the example secret is not sealed for this instance",
	"post /v1/cas/{caId}:revoke":                                              "no such CA",
	"post /v1/certificates/{fingerprint}:activate":                            "no such certificate",
	"post /v1/certificates/{fingerprint}:revoke":                              "no such certificate",
	"delete /things/{thingName}/shadow":                                       "DELETE …/devices/{deviceName}/shadows deleted the classic shadow first",
}

// TestOpenAPIMatchesHandlers walks the served document: every operation
// is routed; every operation with a body documents an example; each is
// called once with its example, and its answer, success or error, is
// checked against the schema the document gives for that status.
func TestOpenAPIMatchesHandlers(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	s.CreateDevice(p.ProductKey, "dev-1")
	var spare struct {
		ID string `json:"id"`
	}
	s.Admin("POST", "/v1/apikeys", map[string]any{"name": "spare", "role": "readonly"}, 201).JSON(t, &spare)

	var doc struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	s.Do("", "GET", "/v1/openapi.json", nil).JSON(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) < 10 {
		t.Fatalf("document: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
	type op struct {
		method, path string
		spec         map[string]any
	}
	var ops []op
	for path, methods := range doc.Paths {
		for method, spec := range methods {
			ops = append(ops, op{method, path, spec})
		}
	}
	// Writes first, so reads find what they made; deletions last, so they
	// do not take the fixture away from the rest, a resource's parts before
	// the resource.
	rank := map[string]int{"post": 0, "put": 1, "patch": 2, "get": 3, "delete": 4}
	sort.Slice(ops, func(i, j int) bool {
		if ri, rj := rank[ops[i].method], rank[ops[j].method]; ri != rj {
			return ri < rj
		}
		if ops[i].method == "delete" && len(ops[i].path) != len(ops[j].path) {
			return len(ops[i].path) > len(ops[j].path)
		}
		return ops[i].path < ops[j].path
	})
	fixture := strings.NewReplacer("a1B2c3D4e5F", p.ProductKey)
	v := validator{schemas: doc.Components.Schemas}
	succeeded, failed := 0, 0
	for _, o := range ops {
		name := o.method + " " + o.path
		concrete := strings.NewReplacer("{productKey}", p.ProductKey, "{deviceName}", "dev-1", "{keyId}", spare.ID,
			"{thingName}", p.ProductKey+".dev-1", "{caId}", "caNONE", "{fingerprint}", strings.Repeat("0", 64), "{serviceId}", "Calibrate", "{suffix}", "cmd/+",
			"{instanceId}", "sg-1", "{policyId}", "nearest", "{shadowName}", "cfg").Replace(o.path)
		var body any
		if rb, ok := o.spec["requestBody"].(map[string]any); ok {
			media, _ := rb["content"].(map[string]any)["application/json"].(map[string]any)
			ex, ok := media["example"]
			if !ok {
				t.Errorf("%s takes a body but documents no example", name)
				continue
			}
			data, _ := json.Marshal(ex)
			body = []byte(fixture.Replace(string(data)))
		}
		params, _ := o.spec["parameters"].([]any)
		var query []string
		for _, q := range params {
			q := q.(map[string]any)
			if ex, ok := q["example"].(string); ok && q["in"] == "query" {
				query = append(query, q["name"].(string)+"="+url.QueryEscape(fixture.Replace(ex)))
			}
		}
		if len(query) > 0 {
			concrete += "?" + strings.Join(query, "&")
		}
		if o.method == "delete" && o.path == "/v1/products/{productKey}" {
			concrete = "/v1/products/AAAAAAAAAAA" // keep the fixture for the other deletions
			failsOnTheFixture[name] = "no such product"
		}
		r := s.Do(s.AdminKey, strings.ToUpper(o.method), concrete, body)
		if r.Status == 405 || strings.Contains(string(r.Body), "no such API path") {
			t.Errorf("%s is documented but not routed: %d %s", name, r.Status, r.Body)
			continue
		}
		responses, _ := o.spec["responses"].(map[string]any)
		resp, listed := responses[fmt.Sprint(r.Status)].(map[string]any)
		_, expectFail := failsOnTheFixture[name]
		switch {
		case r.Status < 300 && expectFail:
			t.Errorf("%s answered %d though its example should fail here (%s): fix the fixture note", name, r.Status, failsOnTheFixture[name])
		case r.Status >= 300 && !expectFail:
			t.Errorf("%s with its documented example answered %d %s", name, r.Status, r.Body)
			continue
		case r.Status < 300 && !listed:
			t.Errorf("%s answered %d, which the document does not list", name, r.Status)
			continue
		case r.Status >= 300:
			resp, _ = responses["default"].(map[string]any)
		}
		schema := schemaOf(resp)
		if schema == nil {
			if r.Status != 204 && len(r.Body) > 0 {
				t.Errorf("%s answered %d with a body the document does not describe", name, r.Status)
			}
		} else {
			var got any
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Errorf("%s: answer is not JSON: %v", name, err)
				continue
			}
			for _, problem := range v.check(schema, got, "body") {
				t.Errorf("%s answered %d: %s\n%s", name, r.Status, problem, r.Body)
			}
		}
		if r.Status < 300 {
			succeeded++
		} else {
			failed++
		}
	}
	failed += checkErrorAnswers(t, s, doc.Paths, v, p.ProductKey)
	if len(ops) < 30 || succeeded < len(ops)-len(failsOnTheFixture)-1 || failed < len(failsOnTheFixture)-1 {
		t.Fatalf("%d operations: %d successes and %d errors schema-checked", len(ops), succeeded, failed)
	}
	t.Logf("%d operations, %d successes and %d error answers checked against their schemas", len(ops), succeeded, failed)
}

// checkErrorAnswers sends bad requests to operations whose examples
// succeed and checks each answer against the operation's error schema.
func checkErrorAnswers(t *testing.T, s *apptest.Server, paths map[string]map[string]map[string]any, v validator, pk string) int {
	t.Helper()
	classes := "/v1/products/{productKey}/topic-classes"
	bad := []struct {
		method, path, concrete string
		body                   any
		status                 int
	}{
		{"put", classes, "", map[string]any{"topicClasses": []map[string]string{{"suffix": "a//b", "operation": "pub"}}}, 400},
		{"post", classes, "", map[string]any{"suffix": "get", "operation": "sub"}, 409},
		{"get", classes, "/v1/products/AAAAAAAAAAA/topic-classes", nil, 404},
		{"delete", classes + "/{suffix}", "/v1/products/{productKey}/topic-classes/no/such", nil, 404},
	}
	for _, b := range bad {
		name := b.method + " " + b.path
		spec, ok := paths[b.path][b.method]
		if !ok {
			t.Errorf("%s is not documented", name)
			continue
		}
		concrete := b.concrete
		if concrete == "" {
			concrete = b.path
		}
		r := s.Do(s.AdminKey, strings.ToUpper(b.method), strings.ReplaceAll(concrete, "{productKey}", pk), b.body)
		if r.Status != b.status {
			t.Errorf("%s (bad request) answered %d %s, want %d", name, r.Status, r.Body, b.status)
			continue
		}
		var got any
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Errorf("%s: error answer is not JSON: %v", name, err)
			continue
		}
		responses, _ := spec["responses"].(map[string]any)
		def, _ := responses["default"].(map[string]any)
		for _, problem := range v.check(schemaOf(def), got, "body") {
			t.Errorf("%s answered %d: %s\n%s", name, r.Status, problem, r.Body)
		}
	}
	return len(bad)
}

func schemaOf(resp map[string]any) map[string]any {
	content, _ := resp["content"].(map[string]any)
	media, _ := content["application/json"].(map[string]any)
	s, _ := media["schema"].(map[string]any)
	return s
}

// validator checks a JSON value against the subset of JSON Schema the
// document uses: $ref, allOf, type, properties, required, items,
// additionalProperties.
type validator struct{ schemas map[string]map[string]any }

func (v validator) check(s map[string]any, x any, at string) []string {
	if ref, ok := s["$ref"].(string); ok {
		target, ok := v.schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if !ok {
			return []string{at + ": dangling " + ref}
		}
		return v.check(target, x, at)
	}
	var out []string
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			out = append(out, v.check(sub.(map[string]any), x, at)...)
		}
	}
	typ, _ := s["type"].(string)
	if typ != "" && x == nil {
		return append(out, at+": null, want "+typ)
	}
	switch typ {
	case "object":
		m, ok := x.(map[string]any)
		if !ok {
			return append(out, fmt.Sprintf("%s: %T, want an object", at, x))
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				out = append(out, at+": lacks required "+r.(string))
			}
		}
		props, _ := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		for k, val := range m {
			if ps, ok := props[k].(map[string]any); ok {
				out = append(out, v.check(ps, val, at+"."+k)...)
			} else if extra != nil {
				out = append(out, v.check(extra, val, at+"."+k)...)
			} else if props != nil {
				out = append(out, at+": undocumented property "+k)
			}
		}
	case "array":
		a, ok := x.([]any)
		if !ok {
			return append(out, fmt.Sprintf("%s: %T, want an array", at, x))
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range a {
				out = append(out, v.check(items, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case "string":
		if _, ok := x.(string); !ok {
			out = append(out, fmt.Sprintf("%s: %T, want a string", at, x))
		}
	case "boolean":
		if _, ok := x.(bool); !ok {
			out = append(out, fmt.Sprintf("%s: %T, want a boolean", at, x))
		}
	case "integer":
		if f, ok := x.(float64); !ok || f != math.Trunc(f) {
			out = append(out, fmt.Sprintf("%s: %v, want an integer", at, x))
		}
	case "number":
		if _, ok := x.(float64); !ok {
			out = append(out, fmt.Sprintf("%s: %T, want a number", at, x))
		}
	}
	return out
}
