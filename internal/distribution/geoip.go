package distribution

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// GeoIP reads a MaxMind-format database (GeoLite2-Country, GeoIP2-City or
// any database with the same country and continent fields).
type GeoIP struct {
	r *maxminddb.Reader
}

// OpenGeoIP opens a database file; Close releases it.
func OpenGeoIP(path string) (*GeoIP, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening GeoIP database: %w", err)
	}
	return &GeoIP{r: r}, nil
}

// OpenGeoIPBytes reads a database held in memory.
func OpenGeoIPBytes(b []byte) (*GeoIP, error) {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("reading GeoIP database: %w", err)
	}
	return &GeoIP{r: r}, nil
}

// geoRecord is the part of a GeoIP2 / GeoLite2 record corral reads.
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
}

// Locate implements Geo: the country (or, lacking one, the registered
// country) and continent codes of addr; "" when the database has none.
func (g *GeoIP) Locate(addr netip.Addr) (country, continent string) {
	var rec geoRecord
	if err := g.r.Lookup(addr.Unmap()).Decode(&rec); err != nil {
		return "", ""
	}
	country = rec.Country.ISOCode
	if country == "" {
		country = rec.RegisteredCountry.ISOCode
	}
	return country, rec.Continent.Code
}

// Close releases the database.
func (g *GeoIP) Close() error { return g.r.Close() }
