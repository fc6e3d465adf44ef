package httpapi

import (
	"bytes"
	"encoding/csv"
	"errors"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/registry"
)

// FuzzNamesCSVRoundTrip: names written as CSV (first column, any other
// columns after, an optional header) read back as the same names, trimmed;
// more names than the limit is ErrTooLarge, never a silent cut.
func FuzzNamesCSVRoundTrip(f *testing.F) {
	f.Add("dev-0001\ndev-0002", "nickname", true, uint8(10))
	f.Add("\ufeffSN-0001\n\"quoted,name\"\n  padded  ", "", false, uint8(2))
	f.Add("a\"b\nc\rd", "x,y", true, uint8(1))
	f.Add("deviceName\nx", "", false, uint8(5))
	f.Fuzz(func(t *testing.T, joined, extra string, header bool, max uint8) {
		var want []string
		for _, n := range strings.Split(joined, "\n") {
			n = strings.TrimSpace(n)
			if n != "" && !strings.Contains(n, "\r") && !strings.HasPrefix(n, "\ufeff") {
				want = append(want, n)
			}
		}
		if !header && len(want) > 0 && strings.EqualFold(want[0], "deviceName") {
			want = want[1:] // a first row reading deviceName is a header
		}
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		if header {
			w.Write([]string{"deviceName", extra})
		}
		for _, n := range want {
			rec := []string{n}
			if extra != "" {
				rec = append(rec, extra)
			}
			w.Write(rec)
		}
		w.Flush()
		names, _, err := ReadNamesCSV(bytes.NewReader(buf.Bytes()), int(max))
		switch {
		case len(want) == 0:
			if err == nil {
				t.Fatalf("%q: no names, yet %q", buf.String(), names)
			}
		case len(want) > int(max):
			if !errors.Is(err, registry.ErrTooLarge) {
				t.Fatalf("%d names over a limit of %d: %v", len(want), max, err)
			}
		default:
			if err != nil || strings.Join(names, "\n") != strings.Join(want, "\n") {
				t.Fatalf("wrote %q as\n%s\nread %q, %v", want, buf.String(), names, err)
			}
		}
	})
}
