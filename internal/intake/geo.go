package intake

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Geo looks up the country and autonomous system of source addresses in
// MMDB files (MaxMind's GeoLite2/GeoIP2 Country and ASN databases, IPinfo's
// country and ASN databases), read with MaxMind's pure-Go reader. Each file
// is asked in turn; the first value found for each field is kept. It is
// safe for concurrent use.
type Geo struct {
	readers []*maxminddb.Reader
}

// GeoInfo is what the files say about an address; empty fields are unknown.
type GeoInfo struct {
	Country string // ISO 3166-1 alpha-2 code
	ASN     int64
	ASOrg   string
}

// geoRecord holds the fields of the databases we read: MaxMind's names,
// then IPinfo's.
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	ASN         uint32 `maxminddb:"autonomous_system_number"`
	ASOrg       string `maxminddb:"autonomous_system_organization"`
	CountryCode string `maxminddb:"country_code"` // IPinfo
	IPinfoASN   string `maxminddb:"asn"`          // IPinfo: "AS64500"
	ASName      string `maxminddb:"as_name"`      // IPinfo
}

// OpenGeo opens the MMDB files at paths (none: nil, no lookups).
func OpenGeo(paths []string) (*Geo, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	g := &Geo{}
	for _, p := range paths {
		r, err := maxminddb.Open(p)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("intake: geoip file %s: %w", p, err)
		}
		g.readers = append(g.readers, r)
	}
	return g, nil
}

// Close closes the files.
func (g *Geo) Close() error {
	if g == nil {
		return nil
	}
	for _, r := range g.readers {
		r.Close()
	}
	return nil
}

// Lookup returns what the files know of ip. A file that cannot decode its
// record for ip is skipped.
func (g *Geo) Lookup(ip netip.Addr) GeoInfo {
	var out GeoInfo
	if g == nil {
		return out
	}
	for _, r := range g.readers {
		var rec geoRecord
		if err := r.Lookup(ip.Unmap()).Decode(&rec); err != nil {
			continue
		}
		if out.Country == "" {
			out.Country = strings.ToUpper(firstNonEmpty(rec.Country.ISOCode, rec.CountryCode))
		}
		if out.ASN == 0 {
			out.ASN = int64(rec.ASN)
			if n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(rec.IPinfoASN), "AS"), 10, 32); out.ASN == 0 && err == nil {
				out.ASN = int64(n)
			}
		}
		if out.ASOrg == "" {
			out.ASOrg = firstNonEmpty(rec.ASOrg, rec.ASName)
		}
	}
	return out
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
