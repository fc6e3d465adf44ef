package registry

import "testing"

func TestMatchTopicClass(t *testing.T) {
	classes := append(DefaultTopicClasses(), TopicClass{Suffix: "cmd/+", Operation: TopicSub}, TopicClass{Suffix: "log/#", Operation: TopicAll})
	cases := []struct {
		suffix string
		want   TopicOperation // "" when no class matches
	}{
		{"update", TopicPub},
		{"update/error", TopicPub},
		{"update/other", ""},
		{"get", TopicSub},
		{"get/x", ""},
		{"cmd/reboot", TopicSub},
		{"cmd", ""},
		{"cmd/a/b", ""},
		{"log", TopicAll},
		{"log/a/b", TopicAll},
		{"", ""},
		{"upd", ""},
	}
	for _, c := range cases {
		got, ok := MatchTopicClass(classes, c.suffix)
		if ok != (c.want != "") || got.Operation != c.want {
			t.Errorf("MatchTopicClass(%q) = %v, %v; want %q", c.suffix, got.Operation, ok, c.want)
		}
	}
}
