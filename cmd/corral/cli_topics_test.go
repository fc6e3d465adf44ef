package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

func TestCLIProductTopicClasses(t *testing.T) {
	s := apptest.Start(t)
	var p struct{ ProductKey string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "meter", "--json")), &p)
	pk := p.ProductKey
	file := filepath.Join(t.TempDir(), "classes.json")
	os.WriteFile(file, []byte(`[{"suffix":"telemetry/#","operation":"pub"},{"suffix":"config","operation":"all","description":"settings"}]`), 0o600)

	steps := []struct {
		name string
		args []string
		want []string // in the output, in order
		not  []string // absent from the output
	}{
		{"list the defaults", []string{"product", "topic", "list", pk},
			[]string{"SUFFIX", "update", "pub", "/" + pk + "/${deviceName}/user/update", "update/error", "get", "sub"}, nil},
		{"add", []string{"product", "topic", "add", pk, "--suffix", "cmd/+", "--op", "sub", "--desc", "commands"},
			[]string{"update", "get", "cmd/+", "sub", "/" + pk + "/${deviceName}/user/cmd/+", "commands"}, nil},
		{"product get sums them up", []string{"product", "get", pk}, []string{"Topic classes:", "pub update, pub update/error, sub get, sub cmd/+"}, nil},
		{"delete", []string{"product", "topic", "delete", pk, "update/error"}, []string{"deleted topic class update/error of " + pk}, nil},
		{"list after delete", []string{"product", "topic", "list", pk}, []string{"update", "get", "cmd/+"}, []string{"update/error"}},
		{"set with flags", []string{"product", "topic", "set", pk, "--class", "pub:update", "--class", "sub:cmd/+:commands: with a colon", "--class", "all:#"},
			[]string{"update", "cmd/+", "commands: with a colon", "#", "all"}, []string{"get"}},
		{"delete '#'", []string{"product", "topic", "delete", pk, "#"}, []string{"deleted topic class # of " + pk}, nil},
		{"set from a file", []string{"product", "topic", "set", pk, "--file", file}, []string{"telemetry/#", "config", "all", "settings"}, []string{"cmd/+"}},
		{"set none", []string{"product", "topic", "set", pk, "--none"}, []string{"SUFFIX"}, []string{"config"}},
		{"product get shows none", []string{"product", "get", pk}, []string{"Topic classes:", "none"}, nil},
	}
	for _, st := range steps {
		out := must(t, s, st.args...)
		rest := out
		for _, w := range st.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Fatalf("%s: %q missing (or out of order) in\n%s", st.name, w, out)
			}
			rest = rest[i+len(w):]
		}
		for _, n := range st.not {
			if strings.Contains(out, n) {
				t.Fatalf("%s: %q in\n%s", st.name, n, out)
			}
		}
	}

	var l struct {
		TopicClasses []map[string]any `json:"topicClasses"`
	}
	must(t, s, "product", "topic", "add", pk, "--suffix", "get", "--op", "sub")
	listed := must(t, s, "product", "topic", "list", pk, "--json")
	json.Unmarshal([]byte(listed), &l)
	if len(l.TopicClasses) != 1 || l.TopicClasses[0]["template"] != "/"+pk+"/${deviceName}/user/get" {
		t.Fatalf("--json list: %+v", l)
	}
	// What list --json prints, set --file takes back, on another product too.
	os.WriteFile(file, []byte(listed), 0o600)
	var q struct{ ProductKey string }
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "copy", "--json")), &q)
	if out := must(t, s, "product", "topic", "set", q.ProductKey, "--file", file); !strings.Contains(out, "/"+q.ProductKey+"/${deviceName}/user/get") || strings.Contains(out, "update") {
		t.Fatalf("set --file from list --json:\n%s", out)
	}

	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "lamp", "--class", "pub:update", "--class", "sub:cmd/+:commands", "--json")), &q)
	if out := must(t, s, "product", "topic", "list", q.ProductKey); strings.Count(out, "\n") != 3 || !strings.Contains(out, "cmd/+") || strings.Contains(out, "update/error") {
		t.Fatalf("product create --class:\n%s", out)
	}
	json.Unmarshal([]byte(must(t, s, "product", "create", "--name", "dark", "--no-topic-classes", "--json")), &q)
	if out := must(t, s, "product", "get", q.ProductKey); !strings.Contains(out, "none") {
		t.Fatalf("product create --no-topic-classes:\n%s", out)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"product", "topic", "add", pk, "--suffix", "get", "--op", "pub"}, "already_exists"},
		{[]string{"product", "topic", "add", pk, "--suffix", "a//b", "--op", "pub"}, "field suffix"},
		{[]string{"product", "topic", "add", pk, "--suffix", "x", "--op", "both"}, "field operation"},
		{[]string{"product", "topic", "delete", pk, "nope"}, "not_found"},
		{[]string{"product", "topic", "set", pk, "--class", "pub:a", "--class", "sub:a"}, "field topicClasses[1].suffix"},
		{[]string{"product", "topic", "set", pk, "--class", "update"}, "OPERATION:SUFFIX"},
		{[]string{"product", "topic", "set", pk}, "--none"},
		{[]string{"product", "topic", "list", "AAAAAAAAAAA"}, "not_found"},
		{[]string{"product", "create", "--name", "x", "--class", "pub:a/#/b"}, "field topicClasses[0].suffix"},
	} {
		out, err := run(t, s, bad.args...)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("corral %s: %v, want an error with %q\n%s", strings.Join(bad.args, " "), err, bad.want, out)
		}
	}
	if out := must(t, s, "product", "topic", "list", pk); strings.Count(out, "\n") != 2 || !strings.Contains(out, "get") {
		t.Fatalf("refused commands changed the classes:\n%s", out)
	}
}
