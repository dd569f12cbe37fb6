package mailout

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRUA(t *testing.T) {
	t.Parallel()
	type got struct {
		Raw, Address, Host string
		Reason             Reason
	}
	ok := func(raw, addr, host string) got { return got{raw, addr, host, ReasonNone} }
	no := func(raw string, r Reason) got { return got{Raw: raw, Reason: r} }
	for _, tc := range []struct {
		name string
		rua  string
		want []got
	}{
		{"empty value", "", nil},
		{"white space only", " \t", nil},
		{"one", "mailto:dmarc@example.com", []got{ok("mailto:dmarc@example.com", "dmarc@example.com", "example.com")}},
		{"scheme and domain case", "MailTo:Rua@Example.COM", []got{ok("MailTo:Rua@Example.COM", "Rua@example.com", "example.com")}},
		{"two with white space", " mailto:a@example.com ,\tmailto:b@example.net ", []got{
			ok("mailto:a@example.com", "a@example.com", "example.com"),
			ok("mailto:b@example.net", "b@example.net", "example.net"),
		}},
		{"size suffix ignored", "mailto:a@example.com!10m,mailto:b@example.com!500", []got{
			ok("mailto:a@example.com!10m", "a@example.com", "example.com"),
			ok("mailto:b@example.com!500", "b@example.com", "example.com"),
		}},
		{"bad size suffix", "mailto:a@example.com!ten", []got{no("mailto:a@example.com!ten", ReasonMalformed)}},
		{"percent-decoding", "mailto:d%6Darc+rua@example.com", []got{ok("mailto:d%6Darc+rua@example.com", "dmarc+rua@example.com", "example.com")}},
		{"encoded '!' in the local part", "mailto:a%21b@example.com", []got{ok("mailto:a%21b@example.com", "a!b@example.com", "example.com")}},
		{"hfields ignored", "mailto:a@example.com?subject=report&to=b@evil.example", []got{ok("mailto:a@example.com?subject=report&to=b@evil.example", "a@example.com", "example.com")}},
		{"IDN domain as A-label", "mailto:a@b%C3%BCcher.example", []got{ok("mailto:a@b%C3%BCcher.example", "a@xn--bcher-kva.example", "xn--bcher-kva.example")}},
		{"quoted local part", "mailto:%22a%20b%22@example.com", []got{ok("mailto:%22a%20b%22@example.com", `"a b"@example.com`, "example.com")}},
		{"quoted local part with a comma", "mailto:%22a%2Cb%22@example.com", []got{ok("mailto:%22a%2Cb%22@example.com", `"a,b"@example.com`, "example.com")}},
		{"trailing comma", "mailto:a@example.com,", []got{ok("mailto:a@example.com", "a@example.com", "example.com"), no("", ReasonEmpty)}},
		{"duplicate", "mailto:a@example.com,mailto:a@EXAMPLE.com", []got{ok("mailto:a@example.com", "a@example.com", "example.com"), no("mailto:a@EXAMPLE.com", ReasonDuplicate)}},
		{"local part case kept: not a duplicate", "mailto:a@example.com,mailto:A@example.com", []got{ok("mailto:a@example.com", "a@example.com", "example.com"), ok("mailto:A@example.com", "A@example.com", "example.com")}},
		{"malformed then good", "mailto:a b@example.com,mailto:c@example.com", []got{
			no("mailto:a b@example.com", ReasonMalformed),
			ok("mailto:c@example.com", "c@example.com", "example.com"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g []got
			for _, u := range ParseRUA(tc.rua) {
				g = append(g, got{u.Raw, u.Address, u.Host, u.Reason})
				if (u.Reason == ReasonNone) != (u.Err == nil) || u.Err != nil && !errors.Is(u.Err, ErrURI) {
					t.Errorf("%q: reason %q with error %v", u.Raw, u.Reason, u.Err)
				}
			}
			if d := cmp.Diff(tc.want, g); d != "" {
				t.Errorf("ParseRUA(%q) (-want +got):\n%s", tc.rua, d)
			}
		})
	}
}

// TestParseRUABad lists URIs that are not used, one per line with the
// reason.
func TestParseRUABad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		uri  string
		want Reason
	}{
		{"https://reports.example.com/dmarc", ReasonScheme},                   // only mailto is defined for rua
		{"ftp:x", ReasonScheme},                                               // another scheme
		{"mailto:", ReasonMalformed},                                          // nothing after the scheme
		{"dmarc@example.com", ReasonMalformed},                                // no scheme
		{"1mailto:a@example.com", ReasonMalformed},                            // scheme must start with a letter
		{"mailto:a@example.com;x", ReasonMalformed},                           // ';' must be encoded
		{"mailto:a@exa%2mple.com", ReasonMalformed},                           // bad percent-encoding
		{"mailto:a%0D%0ARCPT@example.com", ReasonMalformed},                   // CR LF: SMTP command injection
		{"mailto:a%FF@example.com", ReasonMalformed},                          // not UTF-8
		{"mailto:a@example.com%2Cb@example.net", ReasonMultiple},              // encoded comma: two addresses
		{"mailto:example.com", ReasonAddress},                                 // no '@'
		{"mailto:a@[192.0.2.1]", ReasonAddress},                               // domain literal
		{"mailto:a@", ReasonAddress},                                          // no domain
		{"mailto:@example.com", ReasonAddress},                                // no local part
		{"mailto:a..b@example.com", ReasonAddress},                            // empty atom
		{"mailto:.a@example.com", ReasonAddress},                              // leading dot
		{"mailto:%C3%A4@example.com", ReasonAddress},                          // non-ASCII local part needs SMTPUTF8
		{"mailto:a%22b@example.com", ReasonAddress},                           // stray quote
		{"mailto:%22a%22b%22@example.com", ReasonAddress},                     // unescaped quote inside quotes
		{"mailto:a@example..com", ReasonAddress},                              // empty label
		{"mailto:a@example.com.", ReasonAddress},                              // trailing dot is not RFC 5321 syntax
		{"mailto:a@exa mple.com", ReasonMalformed},                            // white space
		{"mailto:" + strings.Repeat("a", 65) + "@example.com", ReasonAddress}, // local part > 64
		{"mailto:" + strings.Repeat("a", 60) + "@" + strings.Repeat(strings.Repeat("b", 60)+".", 4) + "com", ReasonAddress}, // path > 256
	} {
		us := ParseRUA(tc.uri)
		if len(us) != 1 || us[0].Reason != tc.want {
			t.Errorf("ParseRUA(%q) = %+v, want one URI with reason %q", tc.uri, us, tc.want)
		}
	}
}

func TestParseRUATooMany(t *testing.T) {
	t.Parallel()
	var list []string
	for i := range MaxURIs + 5 {
		list = append(list, "mailto:r"+strings.Repeat("x", i)+"@example.com")
	}
	us := ParseRUA(strings.Join(list, ","))
	if len(us) != MaxURIs+1 {
		t.Fatalf("%d URIs, want %d", len(us), MaxURIs+1)
	}
	for _, u := range us[:MaxURIs] {
		if u.Reason != ReasonNone {
			t.Errorf("%q: %v", u.Raw, u.Err)
		}
	}
	last := us[MaxURIs]
	if last.Reason != ReasonTooMany || !strings.HasPrefix(last.Raw, list[MaxURIs]) {
		t.Errorf("last entry %+v, want the rest with %q", last, ReasonTooMany)
	}
}

// FuzzParseRUA checks properties of ParseRUA on any input: no panic, a
// bounded result, every usable URI with an address that can go into a RCPT
// command (no control characters or white space outside quotes, the RFC 5321
// limits), a normalized host that is the address's domain, no address used
// twice, and the same address when the URI is parsed again on its own.
func FuzzParseRUA(f *testing.F) {
	for _, s := range []string{
		"mailto:dmarc@example.com",
		"mailto:a@example.com!10m, mailto:b@example.net",
		"mailto:%22a%20b%22@b%C3%BCcher.example?subject=x",
		"https://x.example/, mailto:a@[192.0.2.1], ,",
		"mailto:a@example.com%2Cb@example.net",
		"mailto:a%0D%0A@example.com",
		strings.Repeat("mailto:a@b.example,", 30),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rua string) {
		us := ParseRUA(rua)
		if len(us) > MaxURIs+1 {
			t.Fatalf("%d URIs", len(us))
		}
		seen := map[string]bool{}
		for _, u := range us {
			if u.Reason != ReasonNone {
				if u.Err == nil || !errors.Is(u.Err, ErrURI) || u.Address != "" {
					t.Fatalf("unusable %+v", u)
				}
				continue
			}
			if seen[u.Address] {
				t.Fatalf("address %q twice", u.Address)
			}
			seen[u.Address] = true
			at := strings.LastIndexByte(u.Address, '@')
			local := u.Address[:at]
			if at < 1 || u.Address[at+1:] != u.Host || len(local) > maxLocalPart || len(u.Address)+2 > maxPath {
				t.Fatalf("address %q host %q", u.Address, u.Host)
			}
			for i := 0; i < len(u.Address); i++ {
				c := u.Address[i]
				if c < 0x20 || c >= 0x7f || c == ' ' && !strings.HasPrefix(local, `"`) {
					t.Fatalf("address %q has byte %#x", u.Address, c)
				}
			}
			if h := strings.ToLower(u.Host); h != u.Host {
				t.Fatalf("host %q not lowercase", u.Host)
			}
			again := ParseRUA(u.Raw)
			if len(again) != 1 || again[0].Address != u.Address {
				t.Fatalf("%q alone gives %+v, want %q", u.Raw, again, u.Address)
			}
		}
	})
}
