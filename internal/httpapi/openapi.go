package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// openAPI builds the OpenAPI 3.1 document from the route table and the Go
// types of request and response bodies.
func openAPI(routes []*route, version string) map[string]any {
	g := &schemaGen{components: map[string]any{}}
	paths := map[string]any{}
	for _, rt := range routes {
		item, _ := paths[rt.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.Path] = item
		}
		op := map[string]any{
			"summary":     rt.Summary,
			"operationId": operationID(rt),
			"tags":        []string{rt.Tag},
		}
		var params []any
		for _, s := range strings.Split(rt.Path, "/") {
			if strings.HasPrefix(s, "{") {
				name := s[1:strings.IndexByte(s, '}')]
				pp := map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}}
				if d, ok := rt.PathDoc[name]; ok {
					pp["description"] = d
				}
				params = append(params, pp)
			}
		}
		for _, q := range rt.Query {
			qp := map[string]any{"name": q.Name, "in": "query", "description": q.Desc, "schema": map[string]any{"type": q.Type}}
			if ex, ok := queryExamples[rt.Method+" "+rt.Path][q.Name]; ok {
				qp["example"] = ex
			}
			params = append(params, qp)
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.Body != nil {
			media := map[string]any{"schema": g.schema(reflect.TypeOf(rt.Body))}
			if ex, ok := examples[rt.Method+" "+rt.Path]; ok {
				media["example"] = ex
			}
			content := map[string]any{"application/json": media}
			if rt.Raw == "csv" {
				content["text/csv"] = map[string]any{"schema": map[string]any{"type": "string", "description": "one DeviceName a line; an optional header line 'deviceName'"}}
			}
			op["requestBody"] = map[string]any{"required": true, "content": content}
		}
		resp := map[string]any{"description": http.StatusText(rt.Status)}
		if rt.Resp != nil {
			resp["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.Resp))}}
		}
		var errBody any = errorBody{}
		if rt.ErrResp != nil {
			errBody = rt.ErrResp
		}
		responses := map[string]any{strconv.Itoa(rt.Status): resp, "default": map[string]any{
			"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(errBody))}}}}
		op["responses"] = responses
		if rt.Role != "" {
			op["security"] = []any{map[string]any{"apiKey": []string{}}}
			op["description"] = "Needs role " + rt.Role + " or stronger" + map[bool]string{true: ", and a system administrator key.", false: "."}[rt.System]
		}
		item[strings.ToLower(rt.Method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "corral API", "version": version, "description": "Device registry and provisioning API of corral."},
		"paths":   paths,
		"components": map[string]any{
			"schemas": g.components,
			"securitySchemes": map[string]any{"apiKey": map[string]any{
				"type": "http", "scheme": "bearer", "description": "An API key as {keyId}.{secret}"}},
		},
	}
}

func operationID(rt *route) string {
	p := strings.NewReplacer("/v1/", "", "{", "", "}", "", ":", "_", "/", "_").Replace(rt.Path)
	return strings.ToLower(rt.Method) + "_" + p
}

type schemaGen struct {
	components map[string]any
}

var (
	timeType    = reflect.TypeOf(time.Time{})
	rawJSONType = reflect.TypeOf(json.RawMessage{})
)

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawJSONType:
		return map[string]any{"description": "any JSON value"}
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return map[string]any{"type": "integer"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return map[string]any{"type": "number"}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case t.Kind() == reflect.Interface:
		return map[string]any{}
	case t.Kind() == reflect.Struct:
		name := t.Name()
		if name != "" {
			if _, ok := g.components[name]; !ok {
				g.components[name] = map[string]any{} // placeholder against recursion
				g.components[name] = g.object(t)
			}
			return map[string]any{"$ref": "#/components/schemas/" + name}
		}
		return g.object(t)
	}
	return map[string]any{}
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			inner := g.object(f.Type)
			for k, v := range inner["properties"].(map[string]any) {
				props[k] = v
			}
			if req, ok := inner["required"].([]string); ok {
				required = append(required, req...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		s := g.schema(f.Type)
		if d := f.Tag.Get("doc"); d != "" {
			s = map[string]any{"allOf": []any{s}, "description": d}
		}
		props[name] = s
		if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
			required = append(required, name)
		}
	}
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}
