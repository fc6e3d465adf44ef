package hostile_test

import (
	"encoding/json"
	"testing"
)

// TestHTTPTopicClassesOfAnotherAccount: a tenant's keys of every role, and
// a client without a key, can neither read nor change another account's
// topic classes (which decide what its devices may publish and receive);
// within the account a readonly key only reads. Nothing they try changes
// the classes.
func TestHTTPTopicClassesOfAnotherAccount(t *testing.T) {
	w := newWorld(t)
	path := "/v1/products/" + w.T1.Direct.ProductKey + "/topic-classes"
	before := string(w.do(w.T1.Admin, "GET", path, nil, 200).Body)
	// The fixture's products have one catch-all class; an attack replaces
	// it (a set that differs, so a success would show), adds, or deletes it.
	widen := map[string]any{"topicClasses": []map[string]string{{"suffix": "update", "operation": "pub"}}}
	sub := map[string]any{"suffix": "cmd/+", "operation": "sub"}
	attacks := []struct {
		name, token, method, path string
		body                      any
		status                    int
	}{
		{"anonymous lists", "", "GET", path, nil, 401},
		{"anonymous widens", "", "PUT", path, widen, 401},
		{"other admin lists", w.T2.Admin, "GET", path, nil, 404},
		{"other admin widens", w.T2.Admin, "PUT", path, widen, 404},
		{"other operator adds", w.T2.Operator, "POST", path, sub, 404},
		{"other operator deletes", w.T2.Operator, "DELETE", path + "/%23", nil, 404},
		{"other readonly lists", w.T2.Readonly, "GET", path, nil, 404},
		{"own readonly widens", w.T1.Readonly, "PUT", path, widen, 403},
		{"own readonly adds", w.T1.Readonly, "POST", path, sub, 403},
		{"own readonly deletes", w.T1.Readonly, "DELETE", path + "/%23", nil, 403},
		{"other admin reads the product", w.T2.Admin, "GET", "/v1/products/" + w.T1.Direct.ProductKey, nil, 404},
	}
	for _, a := range attacks {
		if r := w.S.Do(a.token, a.method, a.path, a.body); r.Status != a.status {
			t.Errorf("%s: %d %s, want %d", a.name, r.Status, r.Body, a.status)
		}
	}
	if after := string(w.do(w.T1.Admin, "GET", path, nil, 200).Body); after != before {
		t.Fatalf("the classes changed: %s, were %s", after, before)
	}
	// The other tenant's own product of the same name keeps its own classes.
	var theirs struct {
		TopicClasses []json.RawMessage `json:"topicClasses"`
	}
	w.do(w.T2.Admin, "GET", "/v1/products/"+w.T2.Direct.ProductKey+"/topic-classes", nil, 200).JSON(t, &theirs)
	if len(theirs.TopicClasses) != 1 {
		t.Fatalf("tenant two's classes: %d, want the fixture's one", len(theirs.TopicClasses))
	}
}
