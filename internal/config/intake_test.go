package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestIntakeSection: the [intake] keys load, are normalized, and bad values
// are refused with the key named.
func TestIntakeSection(t *testing.T) {
	cases := []struct {
		name, toml, err string
	}{
		{name: "ok", toml: "[intake]\ndomains = [\"Example.COM.\"]\naddresses = [\"DMARC@example.com\"]\nretention = \"720h\"\n"},
		{name: "bad domain", toml: "[intake]\ndomains = [\"exa mple.com\"]\n", err: "intake.domains"},
		{name: "bad address", toml: "[intake]\ndomains = [\"example.com\"]\naddresses = [\"Rua <x@example.com>\"]\n", err: "intake.addresses"},
		{name: "addresses without domains", toml: "[intake]\naddresses = [\"x@example.com\"]\n", err: "intake.domains is empty"},
		{name: "tiny size", toml: "[intake]\nmax_report_size = 10\n", err: "intake.max_report_size"},
		{name: "health too often", toml: "[intake]\nhealth_interval = \"1s\"\n", err: "intake.health_interval"},
		{name: "unknown key", toml: "[intake]\ndomain = [\"example.com\"]\n", err: "domain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.toml")
			if err := os.WriteFile(p, []byte(tc.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Load = %v, want an error naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaultIntake()
			want.Domains, want.Addresses, want.Retention = []string{"example.com"}, []string{"dmarc@example.com"}, 720*time.Hour
			if diff := cmp.Diff(want, c.Intake); diff != "" {
				t.Errorf("Intake (-want +got):\n%s", diff)
			}
		})
	}
}
