package intake

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// writeMMDB writes an MMDB file of dbType with one record per network.
func writeMMDB(t *testing.T, dbType string, records map[string]mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range records {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), dbType+".mmdb")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return p
}

// geoFiles are a MaxMind-style country file, a MaxMind-style ASN file and
// an IPinfo-style file, written by the test.
func geoFiles(t *testing.T) []string {
	return []string{
		writeMMDB(t, "GeoLite2-Country", map[string]mmdbtype.Map{
			"192.0.2.0/24": {"country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")}},
		}),
		writeMMDB(t, "GeoLite2-ASN", map[string]mmdbtype.Map{
			"192.0.2.0/24": {"autonomous_system_number": mmdbtype.Uint32(64500), "autonomous_system_organization": mmdbtype.String("ESP Example AG")},
		}),
		writeMMDB(t, "ipinfo_lite", map[string]mmdbtype.Map{
			"198.51.100.0/24": {"country_code": mmdbtype.String("fr"), "asn": mmdbtype.String("AS64511"), "as_name": mmdbtype.String("Own MX SAS")},
			"192.0.2.0/24":    {"country_code": mmdbtype.String("US"), "asn": mmdbtype.String("AS1")},
		}),
	}
}

// TestGeo: fields come from the first file that has them, in MaxMind's and
// IPinfo's names; an address in no file is unknown; a file that is not an
// MMDB is refused at open.
func TestGeo(t *testing.T) {
	g, err := OpenGeo(geoFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for ip, want := range map[string]GeoInfo{
		"192.0.2.10":   {Country: "DE", ASN: 64500, ASOrg: "ESP Example AG"},
		"198.51.100.5": {Country: "FR", ASN: 64511, ASOrg: "Own MX SAS"},
		"203.0.113.9":  {},
		"2001:db8::1":  {},
	} {
		if got := g.Lookup(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Lookup(%s) = %+v, want %+v", ip, got, want)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.mmdb")
	os.WriteFile(bad, []byte("not an mmdb"), 0o644)
	if _, err := OpenGeo([]string{bad}); err == nil {
		t.Error("a file that is not an MMDB was opened")
	}
	if g, err := OpenGeo(nil); g != nil || err != nil || g.Lookup(netip.MustParseAddr("192.0.2.1")) != (GeoInfo{}) {
		t.Error("no files: no lookups")
	}
}

// TestEnrichGeo: the enricher stores country and AS with the PTR name, and
// the senders show them per address.
func TestEnrichGeo(t *testing.T) {
	st := openStore(t, "")
	g, err := OpenGeo(geoFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := dnstest.New(t, sendersZone)
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1, ErrTTL: -1, StaleTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	scenario(t, newIntake(st, nil, "example.com"))
	e := NewEnricher(st, r, EnrichConfig{Geo: g, Now: func() time.Time { return testNow }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	if !e.Drain(10*time.Second, cancel) {
		t.Fatal("enrichment not finished")
	}
	src, err := st.GetSource(context.Background(), netip.MustParseAddr("192.0.2.10"))
	if err != nil || src.Country != "DE" || src.ASN != 64500 || src.ASOrg != "ESP Example AG" || src.PTRState != store.PTRFound {
		t.Errorf("source = %+v, %v", src, err)
	}
	rep, err := Senders(context.Background(), st, "example.com", dec1, dec1.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if ip := rep.Senders[1].IPs[0]; ip.Country != "FR" || ip.ASN != 64511 {
		t.Errorf("own MX address: %+v", ip)
	}
}
