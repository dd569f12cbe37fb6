package intake

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

func copyCorpus(t *testing.T, name, dst string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readCorpus(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportTree: a directory holding report files (by name and by
// content), a Maildir (cur/ and new/ read as messages, tmp/ skipped) and an
// mbox file (mboxrd quoting undone) imports each report once.
func TestImportTree(t *testing.T) {
	root := t.TempDir()
	copyCorpus(t, "01-rfc9990-full.xml", filepath.Join(root, "files", "a.xml"))
	copyCorpus(t, "03-google-style.zip", filepath.Join(root, "files", "deeper", "report-without-suffix"))
	md := filepath.Join(root, "Maildir")
	copyCorpus(t, "11-message-gzip.eml", filepath.Join(md, "cur", "1733.M1P2.host:2,S"))
	copyCorpus(t, "14-message-octet-nested.eml", filepath.Join(md, "new", "1734.M1P3.host"))
	copyCorpus(t, "13-message-inline.eml", filepath.Join(md, "tmp", "1735.M1P4.host")) // in delivery: skipped
	if err := os.MkdirAll(filepath.Join(md, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An mbox of two messages, the second with a body line that mboxrd
	// quotes, and a message that is no report.
	var mbox bytes.Buffer
	for _, name := range []string{"13-message-inline.eml", "04-microsoft-style.xml.gz"} {
		fmt.Fprintf(&mbox, "From MAILER-DAEMON Mon Dec  7 08:00:00 2026\n")
		if strings.HasSuffix(name, ".eml") {
			mbox.Write(readCorpus(t, name))
		} else {
			fmt.Fprintf(&mbox, "Subject: no report\nContent-Type: text/plain\n\nhello\n>From the quoted line\n")
		}
		mbox.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(root, "archive.mbox"), mbox.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	st := openStore(t, "")
	in := newIntake(st, nil, "example.com")
	im := &Importer{In: in}
	sum, err := im.Import(context.Background(), []string{root})
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Files: 5, Messages: 4, Reports: 5, Stored: 5, Rows: 2 + 2 + 1 + 1 + 1, RowMessages: 818 + 100 + 41 + 101 + 1,
		Refused: map[Reason]int{Reason(report.RefusalNoReport): 1}}
	sum.Elapsed = 0
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	again, err := (&Importer{In: in}).Import(context.Background(), []string{root})
	if err != nil || again.Stored != 0 || again.Duplicates != 5 {
		t.Errorf("re-import: %+v, %v", again, err)
	}
}
