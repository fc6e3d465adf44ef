package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-iot/corral/internal/apptest"
	"github.com/corral-iot/corral/internal/shadow"
)

// shadowFixture is a server with one product, device dev-1, and keys of
// each role.
type shadowFixture struct {
	s      *apptest.Server
	pk     string
	ro, op string
	dev    string // /v1/products/{pk}/devices/dev-1
	thing  string // /things/{pk}.dev-1/shadow
}

func newShadowFixture(t *testing.T, opts ...apptest.Option) *shadowFixture {
	s := apptest.Start(t, opts...)
	p := s.CreateProduct("p", nil)
	s.CreateDevice(p.ProductKey, "dev-1")
	mk := func(role string) string {
		var k struct{ Token string }
		s.Admin("POST", "/v1/apikeys", map[string]any{"name": role, "role": role}, 201).JSON(t, &k)
		return k.Token
	}
	return &shadowFixture{s: s, pk: p.ProductKey, ro: mk("readonly"), op: mk("operator"),
		dev: "/v1/products/" + p.ProductKey + "/devices/dev-1", thing: "/things/" + p.ProductKey + ".dev-1/shadow"}
}

func (f *shadowFixture) do(t *testing.T, token, method, path string, body any, want int) apptest.Response {
	t.Helper()
	r := f.s.Do(token, method, path, body)
	if r.Status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, r.Status, r.Body, want)
	}
	return r
}

type restDoc struct {
	State struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
		Delta    map[string]any `json:"delta"`
	} `json:"state"`
	Version     int64           `json:"version"`
	ClientToken string          `json:"clientToken"`
	Changes     *shadow.Changes `json:"changes"`
}

func TestShadowREST(t *testing.T) {
	f := newShadowFixture(t)
	// An application sets desired, the device's state is reported (here
	// through REST too), a reader sees the delta until they agree.
	var d restDoc
	f.do(t, f.op, "PUT", f.dev+"/shadows", `{"state":{"desired":{"color":"green","level":3}},"clientToken":"c-1"}`, 200).JSON(t, &d)
	if d.Version != 1 || d.ClientToken != "c-1" || d.State.Desired["color"] != "green" {
		t.Fatalf("update/accepted = %+v", d)
	}
	f.do(t, f.op, "POST", f.dev+"/shadows", `{"state":{"reported":{"color":"green"}},"version":1}`, 200)
	d = restDoc{}
	f.do(t, f.ro, "GET", f.dev+"/shadows", nil, 200).JSON(t, &d)
	if d.Version != 2 || d.State.Delta["level"] != float64(3) || d.State.Delta["color"] != nil {
		t.Fatalf("get = %+v", d)
	}
	d = restDoc{}
	f.do(t, f.ro, "GET", f.dev+"/shadows?since=1", nil, 200).JSON(t, &d)
	if d.Changes == nil || d.Changes.From != 1 || d.Changes.To != 2 || d.Changes.Reported["color"] != "green" || d.Changes.Desired != nil {
		t.Fatalf("since 1 = %+v", d.Changes)
	}
	var h struct {
		Versions []struct {
			Version  int64           `json:"version"`
			Document json.RawMessage `json:"document"`
		} `json:"versions"`
	}
	f.do(t, f.ro, "GET", f.dev+"/shadow-history", nil, 200).JSON(t, &h)
	if len(h.Versions) != 2 || h.Versions[0].Version != 1 || !strings.Contains(string(h.Versions[1].Document), `"reported":{"color":"green"}`) {
		t.Fatalf("history = %+v", h)
	}

	// The AWS data plane sees the same shadow, by thing name.
	d = restDoc{}
	f.do(t, f.ro, "GET", f.thing, nil, 200).JSON(t, &d)
	if d.Version != 2 {
		t.Fatalf("AWS get = %+v", d)
	}
	// Named shadows: created by an update, listed in pages, deleted.
	for _, n := range []string{"b", "a", "c"} {
		f.do(t, f.op, "PUT", f.dev+"/shadows/"+n, `{"state":{"reported":{"on":true}}}`, 200)
	}
	f.do(t, f.op, "POST", f.thing+"?name=d", `{"state":{"reported":{"on":true}}}`, 200)
	var page struct {
		Results   []string `json:"results"`
		NextToken string   `json:"nextToken"`
	}
	f.do(t, f.ro, "GET", f.dev+"/named-shadows?pageSize=3", nil, 200).JSON(t, &page)
	if strings.Join(page.Results, ",") != "a,b,c" || page.NextToken == "" {
		t.Fatalf("page 1 = %+v", page)
	}
	next := page.NextToken
	page.NextToken = ""
	f.do(t, f.ro, "GET", "/api/things/shadow/ListNamedShadowsForThing/"+f.pk+".dev-1?pageSize=3&nextToken="+next, nil, 200).JSON(t, &page)
	if strings.Join(page.Results, ",") != "d" || page.NextToken != "" {
		t.Fatalf("page 2 = %+v", page)
	}
	f.do(t, f.ro, "GET", f.dev+"/shadows/a/history", nil, 200)
	var del struct{ Version int64 }
	f.do(t, f.op, "DELETE", f.dev+"/shadows/a", nil, 200).JSON(t, &del)
	if del.Version != 1 {
		t.Fatalf("delete = %+v", del)
	}
	f.do(t, f.ro, "GET", f.dev+"/shadows/a", nil, 404)
	f.do(t, f.op, "DELETE", f.thing+"?name=a", nil, 404)
	f.do(t, f.op, "DELETE", f.thing, nil, 200)
	r := f.do(t, f.ro, "GET", f.thing, nil, 404)
	var ae struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(r.Body, &ae); ae.Code != 404 || ae.Message != "No shadow exists with name: "+f.pk+".dev-1" {
		t.Fatalf("AWS 404 body %s", r.Body)
	}
}

func TestShadowRESTRoles(t *testing.T) {
	f := newShadowFixture(t)
	f.do(t, f.op, "PUT", f.dev+"/shadows", `{"state":{"reported":{"x":1}}}`, 200)
	var other struct {
		Token string `json:"token"`
	}
	f.s.Admin("POST", "/v1/accounts", map[string]any{"name": "other"}, 201).JSON(t, &other)
	otherKey := other.Token
	upd := `{"state":{"desired":{"x":2}}}`
	cases := []struct {
		name, token, method, path string
		body                      any
		status                    int
	}{
		{"readonly gets", f.ro, "GET", f.dev + "/shadows", nil, 200},
		{"readonly lists", f.ro, "GET", f.dev + "/named-shadows", nil, 200},
		{"readonly gets (AWS)", f.ro, "GET", f.thing, nil, 200},
		{"readonly cannot update", f.ro, "PUT", f.dev + "/shadows", upd, 403},
		{"readonly cannot update (AWS)", f.ro, "POST", f.thing, upd, 403},
		{"readonly cannot delete", f.ro, "DELETE", f.dev + "/shadows", nil, 403},
		{"readonly cannot change settings", f.ro, "PUT", "/v1/products/" + f.pk + "/shadow-settings", `{"history":1}`, 403},
		{"no key", "", "GET", f.thing, nil, 401},
		{"other account gets 404", otherKey, "GET", f.dev + "/shadows", nil, 404},
		{"other account updates 404", otherKey, "PUT", f.dev + "/shadows", upd, 404},
		{"other account, AWS, 404", otherKey, "GET", f.thing, nil, 404},
		{"other account, AWS update, 404", otherKey, "POST", f.thing, upd, 404},
		{"other account lists 404", otherKey, "GET", "/api/things/shadow/ListNamedShadowsForThing/" + f.pk + ".dev-1", nil, 404},
		{"other account settings 404", otherKey, "GET", "/v1/products/" + f.pk + "/shadow-settings", nil, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.do(t, c.token, c.method, c.path, c.body, c.status)
		})
	}
	// Nothing the refused calls sent was applied.
	var d restDoc
	f.do(t, f.ro, "GET", f.dev+"/shadows", nil, 200).JSON(t, &d)
	if d.Version != 1 || d.State.Desired != nil {
		t.Fatalf("after refusals: %+v", d)
	}
}

// Bad input through REST: each gets its exact error (AWS's status and
// message), nothing is stored, the version does not move.
func TestShadowRESTBadInput(t *testing.T) {
	f := newShadowFixture(t)
	f.do(t, f.op, "PUT", f.dev+"/shadows", `{"state":{"reported":{"a":1}}}`, 200)
	f.do(t, f.op, "PUT", "/v1/products/"+f.pk+"/shadow-settings", `{"checkThingModel":true}`, 200)
	f.do(t, f.op, "PUT", "/v1/products/"+f.pk+"/tsl", `{"properties":[{"identifier":"a","name":"a","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"10"}}}]}`, 200)
	cases := []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"invalid JSON", f.dev + "/shadows", `{"state":`, 400, shadow.MsgInvalidJSON},
		{"no state", f.dev + "/shadows", `{"desired":{}}`, 400, shadow.MsgMissingState},
		{"state a string", f.dev + "/shadows", `{"state":"x"}`, 400, shadow.MsgStateNotObject},
		{"reported an array", f.dev + "/shadows", `{"state":{"reported":[1]}}`, 400, shadow.MsgReportedNotObject},
		{"version a string", f.dev + "/shadows", `{"state":{"reported":{"a":2}},"version":"1"}`, 400, shadow.MsgInvalidVersion},
		{"array with null", f.dev + "/shadows", `{"state":{"reported":{"a":[1,null]}}}`, 400, shadow.MsgInvalidNode},
		{"too deep", f.dev + "/shadows", `{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`, 400, shadow.MsgTooDeep},
		{"too big", f.dev + "/shadows", `{"state":{"reported":{"s":"` + strings.Repeat("x", 9000) + `"}}}`, 413, shadow.MsgTooLarge},
		{"stale version", f.dev + "/shadows", `{"state":{"reported":{"a":2}},"version":5}`, 409, shadow.MsgVersionConflict},
		{"long clientToken", f.dev + "/shadows", `{"state":{"reported":{"a":2}},"clientToken":"` + strings.Repeat("t", 65) + `"}`, 400, shadow.MsgInvalidToken},
		{"not UTF-8", f.dev + "/shadows", "{\"state\":{\"reported\":{\"a\":\"\xc3\x28\"}}}", 415, shadow.MsgNotUTF8},
		{"thing model", f.dev + "/shadows", `{"state":{"reported":{"a":11}}}`, 400, "reported.a: "},
		{"unknown thing", "/things/nobody.nobody/shadow", `{"state":{"reported":{"a":2}}}`, 404, shadow.MsgThingNotFound},
		{"bad shadow name", f.thing + "?name=a%2Fb", `{"state":{"reported":{"a":2}}}`, 400, "Invalid shadow name"},
	}
	for _, c := range cases {
		for _, path := range []string{c.path, strings.Replace(c.path, f.dev+"/shadows", f.thing, 1)} {
			aws := strings.HasPrefix(path, "/things/")
			t.Run(fmt.Sprintf("%s aws=%v", c.name, aws), func(t *testing.T) {
				method := "PUT"
				if aws {
					method = "POST"
				}
				r := f.do(t, f.op, method, path, c.body, c.status)
				var body struct {
					Code    any    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(r.Body, &body); err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(body.Message, c.msg) {
					t.Fatalf("message %q, want %q", body.Message, c.msg)
				}
				if aws && body.Code != float64(c.status) {
					t.Fatalf("AWS body code %v", body.Code)
				}
				var d restDoc
				f.do(t, f.ro, "GET", f.dev+"/shadows", nil, 200).JSON(t, &d)
				if d.Version != 1 || d.State.Reported["a"] != float64(1) {
					t.Fatalf("stored %+v", d)
				}
			})
		}
	}
	f.do(t, f.ro, "GET", f.dev+"/shadows/no-such", nil, 404)
	f.do(t, f.ro, "GET", f.dev+"/shadows?since=x", nil, 400)
	f.do(t, f.ro, "GET", f.dev+"/named-shadows?pageSize=0", nil, 400)
	f.do(t, f.ro, "GET", "/api/things/shadow/ListNamedShadowsForThing/"+f.pk+".dev-1?nextToken=!!!", nil, 400)
	for _, bad := range []string{`{"maxStateBytes":65537}`, `{"history":101}`, `{"nope":1}`, `{"presence":1}`} {
		f.do(t, f.op, "PUT", "/v1/products/"+f.pk+"/shadow-settings", bad, 400)
	}
	var set struct {
		MaxStateBytes   int  `json:"maxStateBytes"`
		CheckThingModel bool `json:"checkThingModel"`
		Presence        bool `json:"presence"`
		History         int  `json:"history"`
	}
	f.do(t, f.ro, "GET", "/v1/products/"+f.pk+"/shadow-settings", nil, 200).JSON(t, &set)
	if set.MaxStateBytes != 8192 || !set.CheckThingModel || !set.Presence || set.History != 10 {
		t.Fatalf("settings = %+v", set)
	}
}

// Every accepted change goes to the product's event webhooks with the
// previous and current version.
func TestShadowWebhooks(t *testing.T) {
	got := make(chan map[string]any, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev map[string]any
		if json.Unmarshal(b, &ev) == nil && strings.HasPrefix(fmt.Sprint(ev["event"]), "shadow.") {
			got <- ev
		}
	}))
	defer hook.Close()
	f := newShadowFixture(t, apptest.AllowWebhooksTo("127.0.0.1/32"))
	f.do(t, f.op, "PATCH", "/v1/products/"+f.pk, map[string]any{"provisioning": map[string]any{"eventUrls": []string{hook.URL + "/events"}}}, 200)
	f.do(t, f.op, "PUT", f.dev+"/shadows/cfg", `{"state":{"desired":{"on":true}}}`, 200)
	f.do(t, f.op, "PUT", f.dev+"/shadows/cfg", `{"state":{"reported":{"on":true}}}`, 200)
	f.do(t, f.op, "DELETE", f.dev+"/shadows/cfg", nil, 200)
	// Webhook calls are queued and may be delivered by several workers:
	// the versions, not the arrival order, say which change came first.
	want := []string{"shadow.deleted 2→2", "shadow.updated 0→1", "shadow.updated 1→2"}
	var seen []string
	for range want {
		select {
		case ev := <-got:
			if ev["shadowName"] != "cfg" || ev["deviceName"] != "dev-1" {
				t.Fatalf("event for another shadow: %v", ev)
			}
			seen = append(seen, fmt.Sprintf("%v %v→%v", ev["event"], ev["previousVersion"], ev["version"]))
		case <-time.After(10 * time.Second):
			t.Fatalf("events %q, want %q", seen, want)
		}
	}
	slices.Sort(seen)
	if !slices.Equal(seen, want) {
		t.Fatalf("events %q, want %q", seen, want)
	}
}
