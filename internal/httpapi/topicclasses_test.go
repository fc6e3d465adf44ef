package httpapi_test

import (
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

type classList struct {
	ProductKey   string `json:"productKey"`
	TopicClasses []struct {
		Suffix, Operation, Description, Template string
	} `json:"topicClasses"`
}

func (l classList) suffixes() string {
	var out []string
	for _, c := range l.TopicClasses {
		out = append(out, c.Operation+" "+c.Suffix)
	}
	return strings.Join(out, ", ")
}

func TestTopicClassesAPI(t *testing.T) {
	s := apptest.Start(t)
	var p apptest.Product // through the API without classes: the defaults
	s.Admin("POST", "/v1/products", map[string]any{"name": "meters"}, 201).JSON(t, &p)
	path := "/v1/products/" + p.ProductKey + "/topic-classes"
	list := func() classList {
		t.Helper()
		var l classList
		s.Admin("GET", path, nil, 200).JSON(t, &l)
		return l
	}

	l := list()
	if l.ProductKey != p.ProductKey || l.suffixes() != "pub update, pub update/error, sub get" ||
		l.TopicClasses[2].Template != "/"+p.ProductKey+"/${deviceName}/user/get" {
		t.Fatalf("a new product's classes: %+v", l)
	}

	steps := []struct {
		name, method, path string
		body               any
		status             int
		field              string // of a 400
		want               string // the classes after the step
	}{
		{"add", "POST", path, map[string]any{"suffix": "cmd/+", "operation": "sub", "description": "commands"}, 201, "", "pub update, pub update/error, sub get, sub cmd/+"},
		{"add existing", "POST", path, map[string]any{"suffix": "get", "operation": "pub"}, 409, "", ""},
		{"add bad suffix", "POST", path, map[string]any{"suffix": "${deviceName}", "operation": "pub"}, 400, "suffix", ""},
		{"add bad operation", "POST", path, map[string]any{"suffix": "x", "operation": "both"}, 400, "operation", ""},
		{"add unknown field", "POST", path, map[string]any{"suffix": "x", "operation": "pub", "colour": "red"}, 400, "colour", ""},
		{"replace with a duplicate", "PUT", path, map[string]any{"topicClasses": []map[string]string{{"suffix": "a", "operation": "pub"}, {"suffix": "a", "operation": "sub"}}}, 400, "topicClasses[1].suffix", ""},
		{"replace with too long a description", "PUT", path, map[string]any{"topicClasses": []map[string]string{{"suffix": "a", "operation": "pub", "description": strings.Repeat("d", 101)}}}, 400, "topicClasses[0].description", ""},
		{"replace without the list", "PUT", path, map[string]any{}, 400, "topicClasses", ""},
		{"delete missing", "DELETE", path + "/nope", nil, 404, "", ""},
		{"delete with '/' as it is", "DELETE", path + "/cmd/+", nil, 204, "", "pub update, pub update/error, sub get"},
		{"delete with '/' escaped", "DELETE", path + "/update%2Ferror", nil, 204, "", "pub update, sub get"},
		{"replace", "PUT", path, map[string]any{"topicClasses": []map[string]string{{"suffix": "log/#", "operation": "all"}, {"suffix": "#", "operation": "pub"}}}, 200, "", "all log/#, pub #"},
		{"add ahead of '#'", "POST", path, map[string]any{"suffix": "get", "operation": "sub"}, 201, "", "all log/#, sub get, pub #"},
		{"delete '#'", "DELETE", path + "/%23", nil, 204, "", "all log/#, sub get"},
		{"replace with none", "PUT", path, map[string]any{"topicClasses": []any{}}, 200, "", ""},
		{"replace with a GET answer as it is", "PUT", path, map[string]any{"productKey": "AAAAAAAAAAA", "topicClasses": []map[string]string{
			{"suffix": "get", "operation": "sub", "description": "d", "template": "/AAAAAAAAAAA/${deviceName}/user/get"}}}, 200, "", "sub get"},
	}
	want := list().suffixes()
	for _, st := range steps {
		r := s.Do(s.AdminKey, st.method, st.path, st.body)
		if r.Status != st.status {
			t.Fatalf("%s: %d %s, want %d", st.name, r.Status, r.Body, st.status)
		}
		if r.Status >= 300 {
			var e apiError
			r.JSON(t, &e)
			if e.Message == "" || st.field != "" && e.Field != st.field {
				t.Fatalf("%s: error %+v, want one on %q", st.name, e, st.field)
			}
		} else {
			want = st.want
		}
		if got := list().suffixes(); got != want {
			t.Fatalf("%s: classes %q, want %q", st.name, got, want)
		}
	}

	s.Admin("PUT", path, map[string]any{"topicClasses": []any{}}, 200)

	var prod struct {
		ProductKey   string `json:"productKey"`
		TopicClasses []any  `json:"topicClasses"`
	}
	s.Admin("GET", "/v1/products/"+p.ProductKey, nil, 200).JSON(t, &prod)
	if prod.TopicClasses == nil || len(prod.TopicClasses) != 0 {
		t.Fatalf("product with no classes shows %v, want []", prod.TopicClasses)
	}
	s.Admin("POST", "/v1/products", map[string]any{"name": "given", "topicClasses": []map[string]string{{"suffix": "a/+", "operation": "all"}}}, 201).JSON(t, &prod)
	if len(prod.TopicClasses) != 1 {
		t.Fatalf("product created with one class: %+v", prod)
	}
	r := s.Do(s.AdminKey, "POST", "/v1/products", map[string]any{"name": "bad", "topicClasses": []map[string]string{{"suffix": "a/#/b", "operation": "all"}}})
	var e apiError
	if r.JSON(t, &e); r.Status != 400 || e.Field != "topicClasses[0].suffix" {
		t.Fatalf("product with a bad class: %d %s", r.Status, r.Body)
	}
}

func TestTopicClassesRolesAndTenants(t *testing.T) {
	s := apptest.Start(t)
	p := s.CreateProduct("p", nil)
	path := "/v1/products/" + p.ProductKey + "/topic-classes"
	mk := func(role string) string {
		var k struct{ Token string }
		s.Admin("POST", "/v1/apikeys", map[string]any{"name": role, "role": role}, 201).JSON(t, &k)
		return k.Token
	}
	var other struct{ Token string }
	s.Admin("POST", "/v1/accounts", map[string]any{"name": "tenant-b"}, 201).JSON(t, &other)
	ro, op := mk("readonly"), mk("operator")
	one := map[string]any{"suffix": "x", "operation": "pub"}
	set := map[string]any{"topicClasses": []any{one}}
	tests := []struct {
		name, token, method, path string
		body                      any
		status                    int
	}{
		{"readonly lists", ro, "GET", path, nil, 200},
		{"readonly cannot add", ro, "POST", path, one, 403},
		{"readonly cannot replace", ro, "PUT", path, set, 403},
		{"readonly cannot delete", ro, "DELETE", path + "/get", nil, 403},
		{"another account cannot list", other.Token, "GET", path, nil, 404},
		{"another account cannot add", other.Token, "POST", path, one, 404},
		{"another account cannot replace", other.Token, "PUT", path, set, 404},
		{"another account cannot delete", other.Token, "DELETE", path + "/get", nil, 404},
		{"operator adds", op, "POST", path, one, 201},
		{"operator deletes", op, "DELETE", path + "/x", nil, 204},
		{"operator replaces", op, "PUT", path, set, 200},
	}
	for _, tt := range tests {
		if r := s.Do(tt.token, tt.method, tt.path, tt.body); r.Status != tt.status {
			t.Fatalf("%s: %d %s, want %d", tt.name, r.Status, r.Body, tt.status)
		}
	}
	var l classList
	s.Admin("GET", path, nil, 200).JSON(t, &l)
	if l.suffixes() != "pub x" {
		t.Fatalf("classes %q after the operator's replace only", l.suffixes())
	}
	s.CreateDevice(p.ProductKey, "audit-fence") // audit rows commit with the next durable write
	var audit struct {
		Entries []struct{ Action, Target, Actor string } `json:"entries"`
	}
	s.Admin("GET", "/v1/audit?target="+p.ProductKey, nil, 200).JSON(t, &audit)
	got := map[string]int{}
	for _, e := range audit.Entries {
		got[e.Action]++
	}
	if got["product.topicclass.add"] != 1 || got["product.topicclass.delete"] != 1 || got["product.topicclasses.set"] != 1 {
		t.Fatalf("audit: %+v", audit.Entries)
	}
}
