package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Default returns the configuration used when no file is given. The local
// policy's defaults are pkg/policy's (LocalPolicy.WithDefaults) and the SPF
// and DKIM limits pkg/verify's; the DNS cache's are written here because 0
// means something for several of its keys (no minimum TTL, no
// serve-stale), so the library's "zero means default" cannot serve them.
func Default() *Config {
	lp := policy.LocalPolicy{}.WithDefaults()
	return &Config{
		Listen:          "inet:127.0.0.1:8894",
		Mode:            lp.Mode,
		LogLevel:        "info",
		OnError:         ErrorTempFail,
		TrustedNetworks: mustNetworks("127.0.0.0/8", "::1/128"),
		Socket:          Socket{Mode: "0660"},
		Actions: Actions{
			RejectPolicy:     lp.OnReject,
			QuarantineMethod: QuarantineHeader,
			QuarantineHeader: "X-DMARC-Quarantine",
			TempError:        lp.OnTempError,
			IndirectFlow:     lp.Indirect,
			RejectReply:      "550 5.7.1 Email rejected per DMARC policy for {domain}",
			TempFailReply:    "451 4.7.5 Temporary DMARC evaluation failure for {domain}, try again later",
			ErrorReply:       "451 4.3.0 Temporary local error, try again later",
		},
		DMARC: DMARC{
			Discovery:                   policy.Options{}.DiscoveryMethod(),
			TrustedForwarders:           []Network{},
			TrustedForwarderDKIMDomains: []string{},
			TrustedARCSealers:           []string{},
			IgnorePct:                   lp.IgnorePct,
			From:                        fromHandling(lp.From),
		},
		Allowlist: Allowlist{Networks: []Network{}, FromDomains: []string{}},
		DNS: DNS{
			Nameservers:    []string{},
			Timeout:        2 * time.Second,
			Attempts:       2,
			MinTTL:         30 * time.Second,
			MaxTTL:         time.Hour,
			MaxNegativeTTL: 15 * time.Minute,
			ErrorTTL:       time.Second,
			CacheSize:      50000,
			ServeStale:     time.Hour,
		},
		SPF:  SPF{LookupLimit: verify.DefaultSPFLookupLimit, VoidLookupLimit: verify.DefaultSPFVoidLookupLimit, CheckHelo: true},
		DKIM: DKIM{MaxSignatures: verify.DefaultDKIMMaxSignatures},
		Timeouts: Timeouts{
			SPF:          10 * time.Second,
			DKIM:         10 * time.Second,
			DMARC:        10 * time.Second,
			EndOfMessage: 20 * time.Second,
			Idle:         10 * time.Minute,
			Drain:        30 * time.Second,
		},
		Runtime: Runtime{GCPercent: 400, MemoryLimitMB: 512},
		Report: Report{
			OwnAddresses:    []string{},
			Interval:        24 * time.Hour,
			Grace:           15 * time.Minute,
			MaxAge:          72 * time.Hour,
			Schedule:        ScheduleDaemon,
			SendWindow:      4 * time.Hour,
			MaxReportSize:   10 << 20,
			MaxReportRows:   50000,
			DoNotReport:     []string{},
			Relay:           "smtp://localhost:25",
			StartTLS:        "opportunistic",
			TLSVerify:       "auto",
			RetryFor:        24 * time.Hour,
			RetryInitial:    5 * time.Minute,
			SuppressFor:     7 * 24 * time.Hour,
			KeepRows:        30 * 24 * time.Hour,
			KeepCounters:    365 * 24 * time.Hour,
			KeepSentReports: 90 * 24 * time.Hour,
			QueueSize:       100000,
			FlushInterval:   2 * time.Second,
		},
		Intake: defaultIntake(),
		Web:    defaultWeb(),
	}
}

// Load reads, decodes and validates the file at path. An empty path gives
// Default().
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data (named name in errors) over Default() and validates the
// result. Every key must be known: an unknown key is an error naming the key
// and its line.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		return nil, decodeError(name, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		key := un[0].String()
		if line := keyLine(data, un[0]); line > 0 {
			return nil, fmt.Errorf("config: %s:%d: unknown key %q", name, line, key)
		}
		return nil, fmt.Errorf("config: %s: unknown key %q", name, key)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return c, nil
}

// decodeError turns a TOML error into one line with the file and line.
func decodeError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg = fmt.Sprintf("%s: %s", pe.LastKey, msg)
		}
		return fmt.Errorf("config: %s:%d: %s", name, pe.Position.Line, msg)
	}
	// Type errors are plain errors in the form
	// `toml: line N (last key "k"): message`.
	if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("config: %s:%s: %s: %s", name, m[1], m[2], m[3])
	}
	return fmt.Errorf("config: %s: %v", name, err)
}

var typeErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "(.*)"\): (.*)$`)

// keyLine finds the line on which key is defined. BurntSushi/toml records key
// positions but does not export them, so the file is scanned: table headers
// set the current table, and "name =" lines define keys in it.
func keyLine(data []byte, key toml.Key) int {
	want := key.String()
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "[["):
			table = cleanKey(strings.Trim(line, "[] \t"))
		case strings.HasPrefix(line, "["):
			name, _, _ := strings.Cut(line[1:], "]")
			table = cleanKey(name)
			if table == want {
				return i + 1
			}
		default:
			name, _, ok := strings.Cut(line, "=")
			if !ok || strings.HasPrefix(line, "#") {
				continue
			}
			full := cleanKey(name)
			if table != "" {
				full = table + "." + full
			}
			if full == want || strings.HasPrefix(want, full+".") {
				return i + 1
			}
		}
	}
	return 0
}

// cleanKey normalises a dotted key as written ("a . b", "\"a\".b") to the
// form toml.Key.String uses for bare keys.
func cleanKey(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}
