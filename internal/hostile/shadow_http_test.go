package hostile_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// A tenant reaches no other tenant's shadows through REST, by triple or by
// thing name, whatever its role: every call is 404 and changes nothing;
// its own same-named device's shadow is another shadow.
func TestShadowRESTAcrossTenants(t *testing.T) {
	w := newWorld(t)
	victim := "/v1/products/" + w.T1.Direct.ProductKey + "/devices/devA"
	thing := "/things/" + w.T1.Direct.ProductKey + ".devA/shadow"
	w.do(w.T1.Operator, "PUT", victim+"/shadows", `{"state":{"desired":{"door":"locked"}}}`, 200)
	w.do(w.T1.Operator, "PUT", victim+"/shadows/cfg", `{"state":{"desired":{"door":"locked"}}}`, 200)
	upd := `{"state":{"desired":{"door":"open"}}}`
	attacks := []struct{ method, path, body string }{
		{"GET", victim + "/shadows", ""},
		{"PUT", victim + "/shadows", upd},
		{"POST", victim + "/shadows", upd},
		{"DELETE", victim + "/shadows", ""},
		{"GET", victim + "/shadows/cfg", ""},
		{"PUT", victim + "/shadows/cfg", upd},
		{"DELETE", victim + "/shadows/cfg", ""},
		{"GET", victim + "/shadows/cfg/history", ""},
		{"GET", victim + "/shadow-history", ""},
		{"GET", victim + "/named-shadows", ""},
		{"GET", victim + "/shadows?since=0", ""},
		{"GET", thing, ""},
		{"POST", thing, upd},
		{"POST", thing + "?name=cfg", upd},
		{"DELETE", thing, ""},
		{"GET", "/api/things/shadow/ListNamedShadowsForThing/" + w.T1.Direct.ProductKey + ".devA", ""},
		{"GET", "/v1/products/" + w.T1.Direct.ProductKey + "/shadow-settings", ""},
		{"PUT", "/v1/products/" + w.T1.Direct.ProductKey + "/shadow-settings", `{"maxStateBytes":1}`},
	}
	for _, key := range []string{w.T2.Admin, w.T2.Operator, w.T2.Readonly} {
		for _, a := range attacks {
			var body any
			if a.body != "" {
				body = a.body
			}
			r := w.S.Do(key, a.method, a.path, body)
			// A readonly key is refused writes before the tenancy check (403).
			if r.Status != 404 && !(key == w.T2.Readonly && a.method != "GET" && r.Status == 403) {
				t.Errorf("%s %s by the other tenant = %d %s", a.method, a.path, r.Status, r.Body)
			}
		}
	}
	// The victim's shadows are as they were.
	for _, p := range []string{victim + "/shadows", victim + "/shadows/cfg"} {
		var d struct {
			State struct {
				Desired map[string]any `json:"desired"`
			} `json:"state"`
			Version int64 `json:"version"`
		}
		w.do(w.T1.Readonly, "GET", p, nil, 200).JSON(t, &d)
		if d.Version != 1 || d.State.Desired["door"] != "locked" {
			t.Fatalf("%s changed: %+v", p, d)
		}
	}
	// The other tenant's own devA has a shadow of its own.
	own := "/v1/products/" + w.T2.Direct.ProductKey + "/devices/devA/shadows"
	w.do(w.T2.Operator, "PUT", own, `{"state":{"desired":{"door":"open"}}}`, 200)
	r := w.do(w.T2.Readonly, "GET", own, nil, 200)
	if !strings.Contains(string(r.Body), `"door":"open"`) {
		t.Fatalf("own shadow: %s", r.Body)
	}
	// The AWS answer to an unknown thing is AWS's body.
	var ae struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	json.Unmarshal(w.do(w.T2.Admin, "GET", thing, nil, 404).Body, &ae)
	if ae.Code != 404 || ae.Message != "Thing not found" {
		t.Fatalf("AWS 404: %+v", ae)
	}
}
