package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/shadow"
	"github.com/corral-iot/corral/internal/shadowsvc"
)

// Shadows is the shadow service as the REST API uses it (shadowsvc).
type Shadows interface {
	UpdateAWS(ctx context.Context, k shadow.Key, req []byte, o shadowsvc.Origin) (shadow.UpdateAWS, error)
	GetAWS(ctx context.Context, k shadow.Key, clientToken string) ([]byte, error)
	DeleteAWS(ctx context.Context, k shadow.Key, clientToken string, o shadowsvc.Origin) ([]byte, error)
	Since(ctx context.Context, k shadow.Key, version int64) (shadow.Changes, error)
	List(ctx context.Context, pk, dn, after string, limit int) ([]string, error)
	History(ctx context.Context, k shadow.Key) ([]shadow.Stored, error)
	Settings(ctx context.Context, pk string) (shadowsvc.Settings, error)
	UpdateSettings(ctx context.Context, pk string, patch []byte) (shadowsvc.Settings, error)
}

// Documented shapes of shadow answers (the handlers answer the payloads of
// internal/shadow as they are).
type (
	shadowState struct {
		Desired  map[string]any `json:"desired,omitempty"`
		Reported map[string]any `json:"reported,omitempty"`
		Delta    map[string]any `json:"delta,omitempty"`
	}
	shadowDoc struct {
		State       *shadowState    `json:"state,omitempty" doc:"desired, reported and (on a get) the delta"`
		Metadata    map[string]any  `json:"metadata,omitempty" doc:"the shape of state; each leaf {\"timestamp\":T}, epoch seconds"`
		Version     int64           `json:"version"`
		Timestamp   int64           `json:"timestamp" doc:"epoch seconds"`
		ClientToken string          `json:"clientToken,omitempty"`
		Changes     *shadow.Changes `json:"changes,omitempty" doc:"with ?since=N, what changed from version N to version, as an update (state and metadata are then left out); absent when N is older than the history kept: the whole document is sent instead"`
	}
	shadowUpdate struct {
		State       shadowState `json:"state" doc:"desired and/or reported; a null leaf deletes it, \"desired\": null removes the section"`
		ClientToken string      `json:"clientToken,omitempty" doc:"echoed in the answer; at most 64 bytes"`
		Version     int64       `json:"version,omitempty" doc:"when given, must be the current version (409 otherwise)"`
	}
	shadowDeleted struct {
		Version   int64 `json:"version"`
		Timestamp int64 `json:"timestamp"`
	}
	namedShadowList struct {
		Results   []string `json:"results"`
		NextToken string   `json:"nextToken,omitempty"`
		Timestamp int64    `json:"timestamp"`
	}
	shadowVersion struct {
		Version   int64           `json:"version"`
		UpdatedAt string          `json:"updatedAt" doc:"RFC 3339"`
		Document  json.RawMessage `json:"document" doc:"{state, metadata, version} as stored"`
	}
	shadowHistory struct {
		Versions []shadowVersion `json:"versions" doc:"oldest first, at most the product's history setting"`
	}
	// awsError is the body AWS-shaped routes answer with on a refusal.
	awsError struct {
		Code        int    `json:"code"`
		Message     string `json:"message"`
		Timestamp   int64  `json:"timestamp"`
		ClientToken string `json:"clientToken,omitempty"`
	}
)

func (a *API) shadowRoutes() []*route {
	if a.o.Shadows == nil {
		return nil
	}
	dev := "/v1/products/{productKey}/devices/{deviceName}"
	nameDoc := map[string]string{"shadowName": "a named shadow, [$a-zA-Z0-9:_-]{1,64}"}
	since := []param{{"since", "integer", "answer only what changed since this version (see changes)"}}
	page := []param{{"pageSize", "integer", "1 to 100 (default 25)"}, {"nextToken", "string", "nextToken of the previous page"}}
	thingDoc := map[string]string{"thingName": "the device's thing name ({productKey}.{deviceName} or the one set)"}
	named := []param{{"name", "string", "a named shadow; absent: the classic shadow"}}
	return []*route{
		{Method: "GET", Path: "/v1/products/{productKey}/shadow-settings", Summary: "The product's shadow settings", Tag: "shadows", Role: readonly, Status: 200, Resp: shadowsvc.Settings{}, h: a.getShadowSettings},
		{Method: "PUT", Path: "/v1/products/{productKey}/shadow-settings", Summary: "Change the product's shadow settings (members left out keep their value): maxStateBytes of desired + reported (1 to 65536, default 8192), checkThingModel (check values against the thing model, default off), presence (reported.connected in the classic shadow, default on), history (versions kept per shadow, 0 to 100, default 10)", Tag: "shadows", Role: operator, Body: shadowsvc.Settings{}, Status: 200, Resp: shadowsvc.Settings{}, h: a.setShadowSettings},

		{Method: "GET", Path: dev + "/shadows", Summary: "The device's classic shadow (AWS get/accepted: state with delta, metadata, version)", Tag: "shadows", Role: readonly, Query: since, Status: 200, Resp: shadowDoc{}, h: a.getShadow},
		{Method: "PUT", Path: dev + "/shadows", Summary: "Update the device's classic shadow (an AWS update request; answers update/accepted). An online device gets the delta (AWS) or a control push (Alibaba) at once", Tag: "shadows", Role: operator, Body: shadowUpdate{}, Status: 200, Resp: shadowDoc{}, h: a.updateShadow(a.shadowKey)},
		{Method: "POST", Path: dev + "/shadows", Summary: "Update the device's classic shadow (as PUT)", Tag: "shadows", Role: operator, Body: shadowUpdate{}, Status: 200, Resp: shadowDoc{}, h: a.updateShadow(a.shadowKey)},
		{Method: "DELETE", Path: dev + "/shadows", Summary: "Delete the device's classic shadow; recreated within 48 h it continues the version", Tag: "shadows", Role: operator, Status: 200, Resp: shadowDeleted{}, h: a.deleteShadow(a.shadowKey)},
		{Method: "GET", Path: dev + "/shadow-history", Summary: "The last versions kept of the classic shadow (the product's history setting)", Tag: "shadows", Role: readonly, Status: 200, Resp: shadowHistory{}, h: a.shadowHistory},
		{Method: "GET", Path: dev + "/named-shadows", Summary: "The device's named shadows, in name order", Tag: "shadows", Role: readonly, Query: page, Status: 200, Resp: namedShadowList{}, h: a.listShadows(a.shadowKey)},
		{Method: "GET", Path: dev + "/shadows/{shadowName}", Summary: "A named shadow", Tag: "shadows", Role: readonly, Query: since, PathDoc: nameDoc, Status: 200, Resp: shadowDoc{}, h: a.getShadow},
		{Method: "PUT", Path: dev + "/shadows/{shadowName}", Summary: "Update (or create) a named shadow", Tag: "shadows", Role: operator, Body: shadowUpdate{}, PathDoc: nameDoc, Status: 200, Resp: shadowDoc{}, h: a.updateShadow(a.shadowKey)},
		{Method: "POST", Path: dev + "/shadows/{shadowName}", Summary: "Update (or create) a named shadow (as PUT)", Tag: "shadows", Role: operator, Body: shadowUpdate{}, PathDoc: nameDoc, Status: 200, Resp: shadowDoc{}, h: a.updateShadow(a.shadowKey)},
		{Method: "DELETE", Path: dev + "/shadows/{shadowName}", Summary: "Delete a named shadow", Tag: "shadows", Role: operator, PathDoc: nameDoc, Status: 200, Resp: shadowDeleted{}, h: a.deleteShadow(a.shadowKey)},
		{Method: "GET", Path: dev + "/shadows/{shadowName}/history", Summary: "The last versions kept of a named shadow", Tag: "shadows", Role: readonly, PathDoc: nameDoc, Status: 200, Resp: shadowHistory{}, h: a.shadowHistory},

		{Method: "GET", Path: "/things/{thingName}/shadow", Summary: "AWS IoT data plane GetThingShadow: the shadow document, or AWS's error body", Tag: "shadows (AWS)", Role: readonly, Query: named, PathDoc: thingDoc, Status: 200, Resp: shadowDoc{}, ErrResp: awsError{}, h: a.awsGetShadow},
		{Method: "POST", Path: "/things/{thingName}/shadow", Summary: "AWS IoT data plane UpdateThingShadow: answers update/accepted, or AWS's error body with its status", Tag: "shadows (AWS)", Role: operator, Query: named, PathDoc: thingDoc, Body: shadowUpdate{}, Status: 200, Resp: shadowDoc{}, ErrResp: awsError{}, h: a.updateShadow(a.thingKey)},
		{Method: "DELETE", Path: "/things/{thingName}/shadow", Summary: "AWS IoT data plane DeleteThingShadow", Tag: "shadows (AWS)", Role: operator, Query: named, PathDoc: thingDoc, Status: 200, Resp: shadowDeleted{}, ErrResp: awsError{}, h: a.deleteShadow(a.thingKey)},
		{Method: "GET", Path: "/api/things/shadow/ListNamedShadowsForThing/{thingName}", Summary: "AWS IoT data plane ListNamedShadowsForThing (the classic shadow is not listed)", Tag: "shadows (AWS)", Role: readonly, Query: page, PathDoc: thingDoc, Status: 200, Resp: namedShadowList{}, ErrResp: awsError{}, h: a.listShadows(a.thingKey)},
	}
}

var web = shadowsvc.Origin{Source: "rest"}

// shadowKey checks that the caller's account holds the device (404
// otherwise) and names the shadow of the route.
func (a *API) shadowKey(c *call) (shadow.Key, error) {
	pk, dn := c.param("productKey"), c.param("deviceName")
	if _, err := a.reg.GetDevice(c.ctx(), c.p, pk, dn); err != nil {
		return shadow.Key{}, err
	}
	return shadow.Key{ProductKey: pk, DeviceName: dn, Name: c.param("shadowName")}, nil
}

// thingKey is shadowKey for the AWS-shaped routes: the thing by its name,
// the shadow by ?name=; an unknown thing is AWS's 404.
func (a *API) thingKey(c *call) (shadow.Key, error) {
	d, err := a.reg.GetThing(c.ctx(), c.p, c.param("thingName"))
	if errors.Is(err, registry.ErrNotFound) {
		return shadow.Key{}, shadow.NewErrorAWS(http.StatusNotFound, shadow.MsgThingNotFound, "", a.now())
	}
	if err != nil {
		return shadow.Key{}, err
	}
	return shadow.Key{ProductKey: d.ProductKey, DeviceName: d.DeviceName, Name: c.r.URL.Query().Get("name")}, nil
}

func (a *API) now() time.Time { return a.o.Now() }

// body reads a request body whole.
func (c *call) body() ([]byte, error) {
	b, err := io.ReadAll(c.r.Body)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (a *API) getShadow(c *call) (any, error) {
	k, err := a.shadowKey(c)
	if err != nil {
		return nil, err
	}
	doc, err := a.o.Shadows.GetAWS(c.ctx(), k, "")
	if err != nil {
		return nil, err
	}
	s := c.r.URL.Query().Get("since")
	if s == "" {
		return json.RawMessage(doc), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return nil, &badRequest{field: "since", msg: "since must be a version: an integer from 0"}
	}
	ch, err := a.o.Shadows.Since(c.ctx(), k, n)
	if errors.Is(err, shadow.ErrVersionNotKept) {
		return json.RawMessage(doc), nil
	}
	if err != nil {
		return nil, err
	}
	return shadowDoc{Version: ch.To, Timestamp: a.now().Unix(), Changes: &ch}, nil
}

func (a *API) shadowHistory(c *call) (any, error) {
	k, err := a.shadowKey(c)
	if err != nil {
		return nil, err
	}
	h, err := a.o.Shadows.History(c.ctx(), k)
	if errors.Is(err, shadow.ErrNoShadow) {
		return nil, shadowNotFound(k, c.param("deviceName"), a.now())
	}
	if err != nil {
		return nil, err
	}
	out := shadowHistory{Versions: make([]shadowVersion, len(h))}
	for i, s := range h {
		out.Versions[i] = shadowVersion{Version: s.Version, UpdatedAt: s.UpdatedAt.UTC().Format(time.RFC3339Nano), Document: s.Doc}
	}
	return out, nil
}

func shadowNotFound(k shadow.Key, dn string, now time.Time) error {
	name := k.Name
	if name == "" {
		name = k.ProductKey + "." + dn
	}
	return shadow.NewErrorAWS(http.StatusNotFound, shadow.MsgNoShadow(name), "", now)
}

// namedShadows answers a page of a device's named shadows, AWS-style
// (pageSize, nextToken).
func (a *API) namedShadows(c *call, k shadow.Key) (any, error) {
	q := c.r.URL.Query()
	size := 25
	if s := q.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return nil, a.shadowBad(c, "pageSize", "pageSize must be an integer from 1 to 100")
		}
		size = n
	}
	after, err := base64.RawURLEncoding.DecodeString(q.Get("nextToken"))
	if err != nil {
		return nil, a.shadowBad(c, "nextToken", "nextToken is not one this API handed out")
	}
	names, err := a.o.Shadows.List(c.ctx(), k.ProductKey, k.DeviceName, string(after), size+1)
	if err != nil {
		return nil, err
	}
	out := namedShadowList{Results: names, Timestamp: a.now().Unix()}
	if len(names) > size {
		out.Results = names[:size]
		out.NextToken = encodeCursor(names[size-1])
	}
	return out, nil
}

// shadowBad is a malformed request: AWS's 400 on the AWS-shaped routes.
func (a *API) shadowBad(c *call, field, msg string) error {
	if c.aws {
		return shadow.NewErrorAWS(http.StatusBadRequest, msg, "", a.now())
	}
	return &badRequest{field: field, msg: msg}
}

func (a *API) getShadowSettings(c *call) (any, error) {
	pk := c.param("productKey")
	if _, err := a.reg.GetProduct(c.ctx(), c.p, pk); err != nil {
		return nil, err
	}
	return a.o.Shadows.Settings(c.ctx(), pk)
}

func (a *API) setShadowSettings(c *call) (any, error) {
	pk := c.param("productKey")
	if _, err := a.reg.GetProduct(c.ctx(), c.p, pk); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	set, err := a.o.Shadows.UpdateSettings(c.ctx(), pk, b)
	if errors.Is(err, shadowsvc.ErrInvalidSettings) {
		return nil, &badRequest{field: "body", msg: err.Error()}
	}
	return set, err
}

// --- AWS IoT data plane ---

func (a *API) awsGetShadow(c *call) (any, error) {
	k, err := a.thingKey(c)
	if err != nil {
		return nil, err
	}
	doc, err := a.o.Shadows.GetAWS(c.ctx(), k, "")
	if err != nil {
		return nil, err
	}
	return json.RawMessage(doc), nil
}

// shadowStatus maps a shadow refusal to corral's error code.
func shadowStatus(e *shadow.ErrorAWS) string {
	switch e.Code {
	case 400:
		return "invalid_argument"
	case 401:
		return "unauthenticated"
	case 403:
		return "permission_denied"
	case 404:
		return "not_found"
	case 409:
		return "version_conflict"
	case 413:
		return "payload_too_large"
	case 415:
		return "unsupported_encoding"
	case 429:
		return "rate_limited"
	}
	return "internal"
}

// A shadowKeyer reads the shadow a request names: by ProductKey, DeviceName
// and shadow name under /v1 (shadowKey), by thing name and ?name= on AWS's
// paths (thingKey). Update, delete and list are the same on both.
type shadowKeyer func(c *call) (shadow.Key, error)

func (a *API) updateShadow(key shadowKeyer) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		k, err := key(c)
		if err != nil {
			return nil, err
		}
		req, err := c.body()
		if err != nil {
			return nil, err
		}
		res, err := a.o.Shadows.UpdateAWS(c.ctx(), k, req, web)
		if err != nil {
			return nil, err
		}
		return json.RawMessage(res.Accepted), nil
	}
}

func (a *API) deleteShadow(key shadowKeyer) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		k, err := key(c)
		if err != nil {
			return nil, err
		}
		out, err := a.o.Shadows.DeleteAWS(c.ctx(), k, "", web)
		if err != nil {
			return nil, err
		}
		return json.RawMessage(out), nil
	}
}

func (a *API) listShadows(key shadowKeyer) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		k, err := key(c)
		if err != nil {
			return nil, err
		}
		return a.namedShadows(c, k)
	}
}
