package httpapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/registry"
)

func TestReadNamesCSV(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{"a1\nb2\n", "a1,b2", false},
		{"deviceName\na1\n", "a1", false},
		{"\ufeffDeviceName,nickname\na1,x\n\n b2 ,y\n", "a1,b2", false},
		{"", "", true},
		{"deviceName\n", "", true},
		{"a,\"b\n", "", true},
	}
	for _, tt := range tests {
		got, _, err := ReadNamesCSV(strings.NewReader(tt.in), 10)
		if (err != nil) != tt.err || strings.Join(got, ",") != tt.want {
			t.Errorf("ReadNamesCSV(%q) = %q, %v", tt.in, got, err)
		}
	}
	_, _, err := ReadNamesCSV(strings.NewReader(strings.Repeat("abcd\n", 11)), 10)
	if !errors.Is(err, registry.ErrTooLarge) {
		t.Fatalf("11 rows with max 10: %v", err)
	}
}

func TestReadNamesCSVThingNames(t *testing.T) {
	names, things, err := ReadNamesCSV(strings.NewReader("deviceName,nickname,thingName\na1,x,t-1\nb2\nc3,,\n"), 10)
	if err != nil || strings.Join(names, ",") != "a1,b2,c3" || strings.Join(things, ",") != "t-1,," {
		t.Fatalf("got %q %q %v", names, things, err)
	}
	if _, things, _ := ReadNamesCSV(strings.NewReader("a1,t-1\n"), 10); things != nil {
		t.Fatalf("thing names without a header: %q", things)
	}
}

func FuzzReadNamesCSV(f *testing.F) {
	for _, s := range []string{"a1\nb2\n", "deviceName\nx\n", "\"q\"\"x\",y\n", "a,\"b\n", "\ufeff\n\n", "deviceName,thingName\na1,t\nb2\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		names, things, err := ReadNamesCSV(strings.NewReader(in), 50)
		if err != nil {
			if len(names) != 0 || len(things) != 0 {
				t.Fatal("names returned with an error")
			}
			return
		}
		if len(names) == 0 || len(names) > 50 {
			t.Fatalf("%d names without error", len(names))
		}
		if len(things) != 0 && len(things) != len(names) {
			t.Fatalf("%d thing names for %d names", len(things), len(names))
		}
		for _, n := range names {
			if strings.ContainsAny(n, "\n") && !strings.Contains(in, "\"") {
				t.Fatalf("name %q holds a newline from unquoted input", n)
			}
		}
	})
}
