package registry

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

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

func TestValidateTopicClasses(t *testing.T) {
	pub := func(suffix string) TopicClass { return TopicClass{Suffix: suffix, Operation: TopicPub} }
	fifty := make([]TopicClass, 0, MaxTopicClasses+1)
	for i := 0; i <= MaxTopicClasses; i++ {
		fifty = append(fifty, pub(fmt.Sprintf("c%d", i)))
	}
	tests := []struct {
		name    string
		classes []TopicClass
		field   string // "" when valid
	}{
		{"defaults", DefaultTopicClasses(), ""},
		{"none", []TopicClass{}, ""},
		{"wildcards", []TopicClass{pub("cmd/+"), pub("a/+/b"), pub("log/#"), {Suffix: "x_Y-9", Operation: TopicAll, Description: strings.Repeat("d", 100)}, pub("+")}, ""},
		{"specific before general", []TopicClass{pub("cmd/reboot"), pub("cmd/+"), pub("#")}, ""},
		{"fifty", fifty[:MaxTopicClasses], ""},
		{"fifty-one", fifty, "topicClasses"},
		{"empty suffix", []TopicClass{pub("a"), pub("")}, "topicClasses[1].suffix"},
		{"leading slash", []TopicClass{pub("/a")}, "topicClasses[0].suffix"},
		{"trailing slash", []TopicClass{pub("a/")}, "topicClasses[0].suffix"},
		{"empty segment", []TopicClass{pub("a//b")}, "topicClasses[0].suffix"},
		{"hash not last", []TopicClass{pub("a/#/b")}, "topicClasses[0].suffix"},
		{"wildcard in a segment", []TopicClass{pub("a+")}, "topicClasses[0].suffix"},
		{"hash in a segment", []TopicClass{pub("a#")}, "topicClasses[0].suffix"},
		{"placeholder", []TopicClass{pub("${deviceName}/x")}, "topicClasses[0].suffix"},
		{"space", []TopicClass{pub("a b")}, "topicClasses[0].suffix"},
		{"dot", []TopicClass{pub("a.b")}, "topicClasses[0].suffix"},
		{"too long", []TopicClass{pub(strings.Repeat("a", 129))}, "topicClasses[0].suffix"},
		{"longest", []TopicClass{pub(strings.Repeat("a", 128))}, ""},
		{"bad operation", []TopicClass{pub("a"), pub("b"), {Suffix: "c", Operation: "both"}}, "topicClasses[2].operation"},
		{"no operation", []TopicClass{{Suffix: "c"}}, "topicClasses[0].operation"},
		{"long description", []TopicClass{{Suffix: "c", Operation: TopicSub, Description: strings.Repeat("d", 101)}}, "topicClasses[0].description"},
		{"control character", []TopicClass{{Suffix: "c", Operation: TopicSub, Description: "a\nb"}}, "topicClasses[0].description"},
		{"duplicate", []TopicClass{pub("a"), pub("b"), {Suffix: "a", Operation: TopicSub}}, "topicClasses[2].suffix"},
		{"hidden by #", []TopicClass{pub("#"), pub("update")}, "topicClasses[1].suffix"},
		{"hidden by +", []TopicClass{pub("cmd/+"), pub("cmd/reboot")}, "topicClasses[1].suffix"},
		{"hidden by a/#", []TopicClass{pub("a/#"), pub("a")}, "topicClasses[1].suffix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTopicClasses("topicClasses", tt.classes)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a validation error on %s", err, tt.field)
			}
		})
	}
}

func TestCoversFilter(t *testing.T) {
	tests := []struct {
		general, specific string
		want              bool
	}{
		{"#", "a/b", true},
		{"#", "#", true},
		{"a/#", "a", true},
		{"a/#", "a/+/c", true},
		{"a/#", "b", false},
		{"+", "a", true},
		{"+", "+", true},
		{"+", "#", false},
		{"+", "a/b", false},
		{"a", "+", false},
		{"a/+", "a/b", true},
		{"a/b", "a/b", true},
		{"a/b", "a", false},
		{"a", "a/b", false},
	}
	for _, tt := range tests {
		if got := coversFilter(tt.general, tt.specific); got != tt.want {
			t.Errorf("coversFilter(%q, %q) = %v", tt.general, tt.specific, got)
		}
	}
}

func TestInsertTopicClass(t *testing.T) {
	migrated := append(DefaultTopicClasses(), TopicClass{Suffix: "#", Operation: TopicAll})
	got := insertTopicClass(migrated, TopicClass{Suffix: "cmd/+", Operation: TopicSub})
	if len(got) != 5 || got[3].Suffix != "cmd/+" || got[4].Suffix != "#" || len(migrated) != 4 {
		t.Fatalf("insert ahead of '#': %+v (from %+v)", got, migrated)
	}
	if c, _ := MatchTopicClass(got, "cmd/reboot"); c.Operation != TopicSub {
		t.Fatalf("the new class does not apply: %+v", c)
	}
	got = insertTopicClass(DefaultTopicClasses(), TopicClass{Suffix: "cmd/+", Operation: TopicSub})
	if len(got) != 4 || got[3].Suffix != "cmd/+" {
		t.Fatalf("append: %+v", got)
	}
}
