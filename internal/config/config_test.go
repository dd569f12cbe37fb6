package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDefaultIsValid(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "inet:127.0.0.1:8894" {
		t.Errorf("Listen = %q", c.Listen)
	}
}

func TestLoadNoFileIsDefault(t *testing.T) {
	t.Parallel()
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != policy.ModeEnforce || c.Timeouts.EndOfMessage != 20*time.Second {
		t.Errorf("Load(\"\") is not Default(): %+v", c)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	in := `
listen = "unix:/run/dmarc-milter/milter.sock"
mode = "monitor"
trusted_networks = ["10.0.0.0/8", "192.0.2.7"]
[actions]
quarantine_method = "both"
[dns]
nameservers = ["127.0.0.1:5353"]
timeout = "500ms"
[allowlist]
from_domains = ["Example.COM."]
`
	c, err := Parse("t.toml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != policy.ModeMonitor || c.Actions.QuarantineMethod != QuarantineBoth || c.DNS.Timeout != 500*time.Millisecond {
		t.Errorf("decoded wrongly: %+v", c)
	}
	if got := c.Allowlist.FromDomains[0]; got != "example.com" {
		t.Errorf("from_domains not normalised: %q", got)
	}
	ns := Networks(c.TrustedNetworks)
	for addr, want := range map[string]bool{"10.1.2.3": true, "192.0.2.7": true, "192.0.2.8": false, "::ffff:10.0.0.1": true} {
		if got := ns.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	// Defaults survive for keys not given.
	if c.Actions.RejectPolicy != policy.RejectUnlessIndirect || c.SPF.LookupLimit != 10 {
		t.Errorf("defaults lost: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, want string
	}{
		{"unknown top key", "listen = \"inet:127.0.0.1:1\"\nlisten_addr = \"x\"\n", `t.toml:2: unknown key "listen_addr"`},
		{"unknown nested key", "[dns]\n\ntimout = \"1s\"\n", `t.toml:3: unknown key "dns.timout"`},
		{"unknown table", "[dsn]\nx = 1\n", `t.toml:1: unknown key "dsn"`},
		{"dotted unknown", "dns.foo = 1\n", `t.toml:1: unknown key "dns.foo"`},
		{"syntax", "listen = \n", "t.toml:1:"},
		{"wrong type", "[spf]\nlookup_limit = \"ten\"\n", "t.toml:2:"},
		{"bad duration", "[timeouts]\nspf = \"ten seconds\"\n", "t.toml:2:"},
		{"bad network", "trusted_networks = [\"10.0.0.0/33\"]\n", "invalid network"},
		{"bad mode", "mode = \"enforcing\"\n", `mode: unknown value "enforcing" (want enforce, monitor)`},
		{"bad listen", "listen = \"tcp:1.2.3.4:5\"\n", `unknown socket type "tcp"`},
		{"relative unix", "listen = \"unix:run/x.sock\"\n", "must be absolute"},
		{"reject digit mismatch", "[actions]\nreject_reply = \"550 4.7.1 no\"\n", "first digit must match"},
		{"reject 4xx", "[actions]\nreject_reply = \"451 4.7.1 no\"\n", "actions.reject_reply"},
		{"tempfail 5xx", "[actions]\ntempfail_reply = \"550 5.7.1 no\"\n", "actions.tempfail_reply"},
		{"reply no text", "[actions]\nerror_reply = \"451 4.3.0\"\n", "actions.error_reply"},
		{"eom too long", "[timeouts]\nend_of_message = \"5m\"\n", "milter_content_timeout"},
		{"zero dns timeout", "[dns]\ntimeout = \"0s\"\n", "dns.timeout"},
		{"bad nameserver", "[dns]\nnameservers = [\"ns:port\"]\n", "dns.nameservers"},
		{"authserv space", "authserv_id = \"mx example\"\n", "authserv_id"},
		{"socket mode", "[socket]\nmode = \"0999\"\n", "socket.mode"},
		{"pprof without listener", "[metrics]\npprof = true\n", "metrics.pprof"},
		{"gc percent too low", "[runtime]\ngc_percent = 5\n", "runtime.gc_percent"},
		{"negative memory limit", "[runtime]\nmemory_limit_mb = -1\n", "runtime.memory_limit_mb"},
		{"no gc target and no limit", "[runtime]\ngc_percent = -1\nmemory_limit_mb = 0\n", "runtime: gc_percent = -1"},
		{"quarantine header A-R", "[actions]\nquarantine_header = \"authentication-results\"\n", "quarantine_header"},
		{"allowlist not domain", "[allowlist]\nfrom_domains = [\"a b\"]\n", "allowlist.from_domains"},
		{"dkim max", "[dkim]\nmax_signatures = 0\n", "dkim.max_signatures"},
		{"bad reject policy", "[actions]\nreject_policy = \"drop\"\n", `t.toml:2: actions.reject_policy: unknown value "drop" (want reject, quarantine, reject-unless-indirect)`},
		{"bad temperror", "[actions]\ntemperror = \"reject\"\n", `actions.temperror: unknown value "reject"`},
		{"bad discovery", "[dmarc]\ndiscovery = \"dns\"\n", `dmarc.discovery: unknown value "dns" (want treewalk, psl)`},
		{"bad from outcome", "[dmarc.from]\nmultiple_fields = \"skip\"\n", `multiple_fields: unknown value "skip"`},
		{"missing From cannot be evaluated", "[dmarc.from]\nmissing = \"evaluate\"\n", `dmarc.from.missing: unknown value "evaluate" (want reject, quarantine, accept)`},
		{"max domains", "[dmarc.from]\nmax_domains = 0\n", "dmarc.from.max_domains: 0 is outside 1..50"},
		{"bad indirect flow", "[actions]\nindirect_flow = \"accept\"\n", `t.toml:2: actions.indirect_flow: unknown value "accept" (want quarantine, deliver)`},
		{"ARC sealer not a domain", "[dmarc]\ntrusted_arc_sealers = [\"lists example\"]\n", `dmarc.trusted_arc_sealers: "lists example" is not a domain name`},
		{"report without from", "[report]\nenabled = true\n", "report.from: required"},
		{"report bad from", "[report]\nfrom = \"dmarc\"\n", "report.from:"},
		{"report interval", "[report]\ninterval = \"5h\"\n", "report.interval: 5h0m0s"},
		{"report schedule", "[report]\nschedule = \"cron\"\n", "report.schedule"},
		{"report relay", "[report]\nrelay = \"localhost:25\"\n", "report.relay"},
		{"report starttls", "[report]\nstarttls = \"maybe\"\n", "report.starttls"},
		{"report dkim half", "[report]\ndkim_key_file = \"/k.pem\"\n", "dkim_selector go together"},
		{"report grace below flush", "[report]\ngrace = \"1s\"\nflush_interval = \"5s\"\n", "report.grace"},
		{"report do not report", "[report]\ndo_not_report = [\"a b\"]\n", "report.do_not_report"},
		{"report queue", "[report]\nqueue_size = 0\n", "queue_size"},
		{"store url", "[store]\nurl = \"mysql://x\"\n", "store.url"},
		{"store sqlite empty", "[store]\nurl = \"sqlite:\"\n", "store.url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("t.toml", []byte(tc.in))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckReply(t *testing.T) {
	t.Parallel()
	good := []string{
		"550 5.7.1 Email rejected per DMARC policy for {domain}",
		"554 5.7.26 Multiple authentication checks failed", // RFC 7372 codes have two digits
	}
	for _, s := range good {
		if err := CheckReply(s, '5'); err != nil {
			t.Errorf("CheckReply(%q) = %v", s, err)
		}
	}
	bad := []string{
		"550",                 // too short
		"5505.7.1 x",          // no space
		"550 5.7.1",           // no text
		"550 4.7.1 x",         // class mismatch
		"550 5.7 x",           // two-part status
		"550 5.7.1000 x",      // detail too long
		"550 5.7.1 caf\u00e9", // non-ASCII
		"550-5.7.1 x",         // multi-line form is not accepted from configuration
	}
	for _, s := range bad {
		if err := CheckReply(s, '5'); err == nil {
			t.Errorf("CheckReply(%q) = nil, want error", s)
		}
	}
}

func TestParseListen(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, network, addr string }{
		{"inet:127.0.0.1:8894", "tcp4", "127.0.0.1:8894"},
		{"inet6:[::1]:8894", "tcp6", "[::1]:8894"},
		{"unix:/run/x.sock", "unix", "/run/x.sock"},
		{"inet:localhost:0", "tcp4", "localhost:0"},
	}
	for _, tc := range cases {
		n, a, err := ParseListen(tc.in)
		if err != nil || n != tc.network || a != tc.addr {
			t.Errorf("ParseListen(%q) = %q, %q, %v; want %q, %q", tc.in, n, a, err, tc.network, tc.addr)
		}
	}
	for _, in := range []string{"", "inet:", "inet:1.2.3.4", "inet:1.2.3.4:99999", "unix:", "udp:1.2.3.4:5"} {
		if _, _, err := ParseListen(in); err == nil {
			t.Errorf("ParseListen(%q): no error", in)
		}
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("mode = \"monitor\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.Mode != policy.ModeMonitor {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func ExampleParse() {
	c, err := Parse("dmarc-milter.toml", []byte(`mode = "monitor"`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Listen, c.Mode)
	_, err = Parse("dmarc-milter.toml", []byte("[dns]\ntimout = \"1s\"\n"))
	fmt.Println(err)
	// Output:
	// inet:127.0.0.1:8894 monitor
	// config: dmarc-milter.toml:2: unknown key "dns.timout"
}

// FuzzParse: arbitrary input never panics, and an accepted file is valid.
func FuzzParse(f *testing.F) {
	f.Add([]byte("mode = \"monitor\"\n[dns]\ntimeout = \"1s\"\n"))
	f.Add([]byte("[actions]\nreject_reply = \"550 5.7.1 x\"\n"))
	f.Add([]byte("trusted_networks = [\"::1\"]\n[[x]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f", data)
		if err != nil {
			if c != nil {
				t.Fatal("error with a config")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
	})
}

// TestDefaultLocalPolicy: the file's defaults for the local policy are
// pkg/policy's, and Config.LocalPolicy carries every key over.
func TestDefaultLocalPolicy(t *testing.T) {
	t.Parallel()
	got := Default().LocalPolicy()
	if diff := cmp.Diff(policy.LocalPolicy{}.WithDefaults(), got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("defaults (-policy +config):\n%s", diff)
	}
	c, err := Parse("t.toml", []byte(`mode = "monitor"
[actions]
reject_policy = "quarantine"
temperror = "accept"
indirect_flow = "deliver"
[dmarc]
ignore_pct = true
trusted_forwarders = ["192.0.2.0/24"]
trusted_forwarder_dkim_domains = ["Lists.Example.org"]
trusted_arc_sealers = ["ARC.Example.net."]
[dmarc.from]
missing = "accept"
max_domains = 3
[allowlist]
networks = ["198.51.100.7"]
from_domains = ["partner.example"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := policy.LocalPolicy{
		Mode: policy.ModeMonitor, OnReject: policy.RejectQuarantine, OnTempError: policy.TempErrorAccept, Indirect: policy.IndirectDeliver,
		AllowFrom: []string{"partner.example"}, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")},
		IgnorePct:  true,
		Forwarders: policy.TrustedForwarders{Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, DKIMDomains: []string{"lists.example.org"}, ARCSealers: []string{"arc.example.net"}},
		From: policy.FromPolicy{MultipleFields: policy.FromEvaluate, MultipleDomains: policy.FromEvaluate, TooManyDomains: policy.FromReject,
			NoMailbox: policy.FromReject, Missing: policy.FromAccept, Unparseable: policy.FromReject, MaxDomains: 3},
	}
	if diff := cmp.Diff(want, c.LocalPolicy(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("LocalPolicy (-want +got):\n%s", diff)
	}
}

// TestStoreURL: the default store is the SQLite file in systemd's state
// directory, else in /var/lib/dmarc-milter; store.url wins.
func TestStoreURL(t *testing.T) {
	c := Default()
	t.Setenv("STATE_DIRECTORY", "/run/state/a:/run/state/b")
	if got := c.StoreURL(); got != "sqlite:/run/state/a/dmarc-milter.db" {
		t.Errorf("with STATE_DIRECTORY: %q", got)
	}
	t.Setenv("STATE_DIRECTORY", "")
	if got := c.StoreURL(); got != "sqlite:/var/lib/dmarc-milter/dmarc-milter.db" {
		t.Errorf("without STATE_DIRECTORY: %q", got)
	}
	c.Store.URL = "postgres://dmarc@db/dmarc"
	if got := c.StoreURL(); got != c.Store.URL {
		t.Errorf("store.url: %q", got)
	}
	if c.NeedsStore() {
		t.Error("the default configuration needs a store")
	}
}
