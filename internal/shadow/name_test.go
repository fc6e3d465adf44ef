package shadow

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"lamp":                  true,
		"$a-Z:0_9":              true,
		strings.Repeat("n", 64): true,
		"":                      false,
		strings.Repeat("n", 65): false,
		"a/b":                   false,
		"a+":                    false,
		"a#":                    false,
		"a b":                   false,
		"é":                     false,
		"a.b":                   false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
