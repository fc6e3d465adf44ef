package registry

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateDeviceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"abcd": true, "dev-01_A@b.c:d": true, strings.Repeat("a", 32): true,
		"abc": false, strings.Repeat("a", 33): false, "dev 01": false, "dev/01": false, "dév-01": false, "": false, "dev#": false,
	} {
		err := ValidateDeviceName(name)
		if (err == nil) != ok {
			t.Errorf("ValidateDeviceName(%q) = %v", name, err)
		}
		var ve *ValidationError
		if err != nil && (!errors.As(err, &ve) || ve.Field != "deviceName" || !errors.Is(err, ErrInvalid)) {
			t.Errorf("error %v does not name the field", err)
		}
	}
}

func TestValidateAttributes(t *testing.T) {
	tests := []struct {
		attrs map[string]string
		ok    bool
	}{
		{map[string]string{"site": "north", "a.b-c_d": ""}, true},
		{map[string]string{"": "x"}, false},
		{map[string]string{"a b": "x"}, false},
		{map[string]string{strings.Repeat("k", 65): "x"}, false},
		{map[string]string{"k": strings.Repeat("v", 1025)}, false},
		{map[string]string{"k": "\xff"}, false},
	}
	for _, tt := range tests {
		if err := ValidateAttributes("attributes", tt.attrs); (err == nil) != tt.ok {
			t.Errorf("ValidateAttributes(%v) = %v", tt.attrs, err)
		}
	}
	many := map[string]string{}
	for i := 0; i < 65; i++ {
		many[strings.Repeat("k", i+1)] = ""
	}
	if ValidateAttributes("attributes", many) == nil {
		t.Error("65 attributes accepted")
	}
}

func TestRoles(t *testing.T) {
	if !RoleAdmin.Allows(RoleOperator) || RoleReadonly.Allows(RoleOperator) || Role("root").Allows(RoleReadonly) || RoleAdmin.Allows("") {
		t.Fatal("role order")
	}
}

func TestCoalescePresence(t *testing.T) {
	on := func(dn string, at int) Presence {
		return Presence{ProductKey: "p", DeviceName: dn, Online: true, At: at0(at)}
	}
	off := func(dn string, at int) Presence { return Presence{ProductKey: "p", DeviceName: dn, At: at0(at)} }
	got := Coalesce([]Presence{on("a", 1), off("a", 2), on("b", 3), off("c", 4), on("a", 5)})
	if len(got) != 3 || !got[0].Online || !got[0].At.Equal(at0(5)) || got[1].DeviceName != "b" || got[2].Online {
		t.Fatalf("%+v", got)
	}
	got = Coalesce([]Presence{on("a", 1), off("a", 2)})
	if len(got) != 1 || got[0].Online || !got[0].ConnectedAt.Equal(at0(1)) {
		t.Fatalf("short session: %+v", got)
	}
}

func FuzzValidateDeviceName(f *testing.F) {
	for _, s := range []string{"abcd", "dev-01", "a b c d", "ééééé", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateDeviceName(s) != nil {
			return
		}
		if len(s) < 4 || len(s) > 32 {
			t.Fatalf("accepted length %d", len(s))
		}
		for i := 0; i < len(s); i++ {
			if !deviceNameByte(s[i]) {
				t.Fatalf("accepted byte %q", s[i])
			}
		}
	})
}

func FuzzValidateAttributes(f *testing.F) {
	f.Add("site", "north")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, k, v string) {
		err := ValidateAttributes("attributes", map[string]string{k: v})
		if err == nil && (k == "" || len(k) > MaxAttrKeyLen || len(v) > MaxAttrValueLen || strings.ContainsAny(k, " /\"'")) {
			t.Fatalf("accepted %q=%q", k, v)
		}
	})
}

func at0(s int) time.Time { return time.Unix(int64(s), 0) }

func TestNewIotIDSortsByTimeAndIsUnique(t *testing.T) {
	times := []time.Time{time.UnixMilli(0), time.UnixMilli(1), time.UnixMilli(61), time.UnixMilli(62),
		time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 4, 0, 0, 1e6, time.UTC), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}
	seen := map[string]bool{}
	prev := ""
	for _, at := range times {
		for i := 0; i < 100; i++ {
			id, err := newIotID(nil, at)
			if err != nil {
				t.Fatal(err)
			}
			if len(id) != 20 || strings.Trim(id, base62) != "" {
				t.Fatalf("iotId %q: want 20 base-62 characters", id)
			}
			if seen[id] {
				t.Fatalf("iotId %q issued twice", id)
			}
			seen[id] = true
			if id[:8] < prev {
				t.Fatalf("iotId %q at %v sorts before the earlier prefix %q", id, at, prev)
			}
			prev = id[:8]
		}
	}
}

func TestValidateThingName(t *testing.T) {
	for _, ok := range []string{"a", "factory:7", "A-b_c:9", strings.Repeat("x", 128)} {
		if err := ValidateThingName(ok); err != nil {
			t.Errorf("ValidateThingName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "x y", "$aws", "a/b", "a+", "a#", "é", strings.Repeat("x", 129)} {
		err := ValidateThingName(bad)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "thingName" {
			t.Errorf("ValidateThingName(%q) = %v, want a thingName error", bad, err)
		}
	}
}

// FuzzThingName checks that no explicit thing name can take the form of a
// default one, nor break out of its topic level.
func FuzzThingName(f *testing.F) {
	for _, s := range []string{"factory:7", "PK.dn", "a/b", "+", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateThingName(name) != nil {
			return
		}
		if strings.ContainsAny(name, "./+#$") || name == "" || len(name) > MaxThingNameLen {
			t.Fatalf("accepted %q", name)
		}
		pk, dn := "a1B2c3D4e5F", "dev"
		if got, _ := thingName(pk, dn, name); got != name {
			t.Fatalf("thingName(%q) = %q", name, got)
		}
		if ExplicitThingName(Device{ProductKey: pk, DeviceName: dn, ThingName: name}) != name {
			t.Fatalf("%q taken for a default name", name)
		}
	})
}
