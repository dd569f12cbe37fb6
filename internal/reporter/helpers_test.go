package reporter

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// xsdRFC9990 is the RFC 9990 schema kept by pkg/report's tests
// (pkg/report/testdata/xsd/SOURCE.md says where it comes from).
const xsdRFC9990 = "../../pkg/report/testdata/xsd/dmarc-xml-0.2.xsd"

// validateXSD runs xmllint (Debian libxml2-utils) on doc against the
// RFC 9990 XSD. A missing xmllint fails the test under CI=true and skips
// it loudly otherwise.
func validateXSD(t *testing.T, doc []byte) {
	t.Helper()
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("xmllint not found (Debian package libxml2-utils, scripts/install-deps.sh): %v", err)
		}
		t.Skip("******** xmllint not installed (apt-get install libxml2-utils): XSD validation SKIPPED ********")
	}
	path := filepath.Join(t.TempDir(), "report.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--noout", "--schema", xsdRFC9990, path).CombinedOutput(); err != nil {
		t.Fatalf("xmllint: %v\n%s\ndocument:\n%s", err, out, doc)
	}
}

// golden compares got with testdata/name; -update rewrites it. A mismatch
// leaves name.got beside it (gitignored).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(want, got) {
		_ = os.WriteFile(path+".got", got, 0o644)
		t.Errorf("%s differs from the golden file; see %s.got", name, path)
	}
}

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) set(t time.Time)     { c.t = t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func day(y, m, d, h int) time.Time   { return time.Date(y, time.Month(m), d, h, 0, 0, 0, time.UTC) }
func sqliteStore(t *testing.T, now func() time.Time) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "r.db"), store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// zeros is a reader of zero bytes: fixed Report-IDs.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
