package distribution_test

import (
	"bytes"
	"net"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/corral-iot/corral/internal/distribution"
)

// geoDB builds a small MaxMind-format database: addr → country, continent
// ("" leaves a field out).
func geoDB(t testing.TB, rows map[string][2]string) []byte {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", IncludeReservedNetworks: true, RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, loc := range rows {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{}
		if loc[0] != "" {
			rec["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(loc[0])}
		}
		if loc[1] != "" {
			rec["continent"] = mmdbtype.Map{"code": mmdbtype.String(loc[1])}
		}
		if err := w.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openGeo(t testing.TB, rows map[string][2]string) *distribution.GeoIP {
	t.Helper()
	g, err := distribution.OpenGeoIPBytes(geoDB(t, rows))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}
