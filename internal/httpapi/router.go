package httpapi

import (
	"net/http"
	"strings"
)

// route is one operation of the API. The table of routes drives both the
// dispatcher and the OpenAPI document, so the two cannot drift apart.
type route struct {
	Method  string
	Path    string // OpenAPI form: /v1/products/{productKey}/devices/{deviceName}:disable
	Summary string
	Tag     string
	Role    string // minimum role; "" means no API key needed
	System  bool   // needs a system administrator
	Body    any    // request body type, for decoding docs; nil when none
	Query   []param
	Status  int // success status
	Resp    any // response body type; nil for 204
	Raw     string
	// AuditDenied, when set, is the audit action recorded when a key
	// without the role is refused.
	AuditDenied string
	// Rest makes the last path parameter take the rest of the path, '/'
	// included (a topic class suffix such as cmd/+).
	Rest bool
	// ErrResp, when set, is the body type of error answers (the AWS-shaped
	// routes answer AWS's), in place of errorBody.
	ErrResp any
	// PathDoc describes path parameters in the OpenAPI document.
	PathDoc map[string]string
	h       func(c *call) (any, error)

	segs []string
}

// param documents a query parameter.
type param struct {
	Name, Type, Desc string
}

// match reports whether path matches the route and fills params.
func (rt *route) match(segs []string, params map[string]string) bool {
	if len(segs) != len(rt.segs) && !(rt.Rest && len(segs) > len(rt.segs)) {
		return false
	}
	for i, pat := range rt.segs {
		s := segs[i]
		if rt.Rest && i == len(rt.segs)-1 {
			s = strings.Join(segs[i:], "/")
		}
		if pat[0] != '{' {
			if s != pat {
				return false
			}
			continue
		}
		end := strings.IndexByte(pat, '}')
		name, verb := pat[1:end], pat[end+1:]
		if verb != "" {
			if !strings.HasSuffix(s, verb) || len(s) == len(verb) {
				return false
			}
			s = s[:len(s)-len(verb)]
		}
		if s == "" {
			return false
		}
		params[name] = s
	}
	return true
}

// router dispatches requests to routes: literal segments win over
// parameters because routes are tried in table order and the table lists
// the more specific first.
type router struct {
	routes []*route
}

func newRouter(routes []*route) *router {
	for _, rt := range routes {
		rt.segs = strings.Split(strings.Trim(rt.Path, "/"), "/")
	}
	return &router{routes: routes}
}

// find returns the route for a request, or the allowed methods when the
// path exists with other methods.
func (rr *router) find(r *http.Request) (*route, map[string]string, []string) {
	segs := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	for i, s := range segs {
		if u, err := unescape(s); err == nil {
			segs[i] = u
		}
	}
	var allowed []string
	for _, rt := range rr.routes {
		params := map[string]string{}
		if !rt.match(segs, params) {
			continue
		}
		if rt.Method == r.Method {
			return rt, params, nil
		}
		allowed = append(allowed, rt.Method)
	}
	return nil, nil, allowed
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	return pathUnescape(s)
}
