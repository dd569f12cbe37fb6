package manpage

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// groff renders a page with every warning enabled and returns the text
// and the warnings.
func groff(t *testing.T, src string) (text, warnings string) {
	t.Helper()
	path, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff not installed (Debian: groff-base)")
	}
	cmd := exec.Command(path, "-man", "-ww", "-Tutf8", "-P", "-cbou", "-rLL=200n")
	cmd.Stdin = strings.NewReader(src)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("groff: %v\n%s", err, errb.String())
	}
	return out.String(), errb.String()
}

// TestPageRendersText: text that looks like roff requests, escapes and
// quotes comes out of groff as written, without warnings.
func TestPageRendersText(t *testing.T) {
	nasty := []string{
		`.TH not a request`,             // a request at the start of a line
		`'br not a request either`,      // the other control character
		`a \fBbackslash\fR and \n(.l`,   // escapes must stay text
		`--config FILE and -x`,          // hyphens
		`"quoted" text, 'single'`,       // quotes
		"two\nlines\r\nand a \r",        // line breaks become spaces
		`unix:/run/dmarc-milter/x.sock`, // a path
		`["127.0.0.0/8", "::1/128"]`,    // a TOML value
	}
	p := New("dmarc-milter", "8", "dmarc-milter", "System Manager's Manual")
	p.Section("name")
	p.Para(`dmarc-milter \- a test`)
	p.Section("options")
	for _, s := range nasty {
		p.Tagged("--"+s, "ARG", s)
		p.Para(s)
	}
	p.Literal(strings.Join(nasty, "\n"))
	p.Para("a `bold` word")
	p.Para("an unpaired ` backquote")
	p.Subsection(`"sub" .x`)
	p.Synopsis("dmarc-milter serve", "[--config FILE]")
	text, warn := groff(t, p.String())
	if warn != "" {
		t.Errorf("groff warnings:\n%s\nsource:\n%s", warn, p.String())
	}
	for _, s := range nasty {
		want := strings.Join(strings.Fields(s), " ")
		if !strings.Contains(strings.Join(strings.Fields(text), " "), want) {
			t.Errorf("rendered page lacks %q:\n%s", want, text)
		}
	}
	for _, s := range []string{`"sub" .x`, "a bold word", "an unpaired ` backquote", "dmarc-milter serve [--config FILE]"} {
		if !strings.Contains(text, s) {
			t.Errorf("rendered page lacks %q:\n%s", s, text)
		}
	}
}

// FuzzEscape: escaped text is one line that starts no request and in which
// every backslash starts one of the escapes Escape writes.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{".TH x", "'br", `\fB`, "a\nb", "-", `\`, "..", "\r."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if strings.ContainsAny(e, "\r\n") {
			t.Fatalf("Escape(%q) = %q: a line break", s, e)
		}
		if strings.HasPrefix(e, ".") || strings.HasPrefix(e, "'") {
			t.Fatalf("Escape(%q) = %q: starts a request", s, e)
		}
		for i := 0; i < len(e); i++ {
			if e[i] != '\\' {
				continue
			}
			if i+1 == len(e) || !strings.ContainsRune("e-&", rune(e[i+1])) {
				t.Fatalf("Escape(%q) = %q: stray backslash at %d", s, e, i)
			}
			i++
		}
	})
}
