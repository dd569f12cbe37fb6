package verify

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// testSealer adds ARC sets to messages for the tests (we do not seal in
// the product). It is written from RFC 8617 §5.1 with its own plain,
// whole-string canonicalization, not the verifier's streaming code, so that
// the tests do not check the verifier against itself; the differential
// test (arcdiff_test.go) checks both against dkimpy.
type testSealer struct {
	domain, selector string
	key              crypto.Signer
}

// sealOpts varies one set.
type sealOpts struct {
	cv       string // "" gives none at instance 1 and pass above
	headers  string // AMS h=; default from:to:subject:date:message-id
	bodyHash string // bh= (base64); default: computed from the message body
	bodyC    string // body canonicalization: "relaxed" (default) or "simple"
	noC      bool   // leave c= out of the AMS
	extraAMS string // tags appended to the AMS before b=, e.g. "l=10; "
	aar      string // AAR payload after "i=N; "; default "<domain>; dmarc=pass header.from=example.com"
	instance int    // 0: one above the highest on the message
}

var arcInstanceRE = regexp.MustCompile(`(?i)(?:^|;)\s*i\s*=\s*(\d+)`)

// rawField is one header field of a message as a string: "Name:value"
// with CRLF folds, without the final CRLF.
type rawField struct{ name, text string }

func rawFields(head string) []rawField {
	var out []rawField
	for _, line := range strings.SplitAfter(head, "\r\n") {
		if line == "" {
			continue
		}
		line = strings.TrimSuffix(line, "\r\n")
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].text += "\r\n" + line
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		out = append(out, rawField{name, line})
	}
	return out
}

// relaxedHeader is RFC 6376 §3.4.2 on a whole field, with CRLF.
func relaxedHeader(text string) string {
	name, value, _ := strings.Cut(text, ":")
	value = strings.ReplaceAll(value, "\r\n", "")
	value = strings.Join(strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
	return strings.ToLower(strings.TrimRight(name, " \t")) + ":" + value + "\r\n"
}

// sealCanonBody is RFC 6376 §3.4.3 (simple) or §3.4.4 (relaxed) on a whole body.
func sealCanonBody(body string, relaxed bool) string {
	if relaxed {
		lines := strings.Split(body, "\r\n")
		for i, l := range lines {
			l = strings.Join(strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
			if strings.HasPrefix(lines[i], " ") || strings.HasPrefix(lines[i], "\t") {
				if l != "" {
					l = " " + l
				}
			}
			lines[i] = l
		}
		body = strings.Join(lines, "\r\n")
		body = strings.TrimRight(body, "\r\n")
		if body == "" {
			return ""
		}
		return body + "\r\n"
	}
	return strings.TrimRight(body, "\r\n") + "\r\n"
}

func signDigest(t testing.TB, key crypto.Signer, data string) string {
	t.Helper()
	d := sha256.Sum256([]byte(data))
	var sig []byte
	var err error
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, d[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func algoOf(key crypto.Signer) string {
	if _, ok := key.(ed25519.PrivateKey); ok {
		return "ed25519-sha256"
	}
	return "rsa-sha256"
}

// fold writes b64 over lines of 60 octets, as sealers do.
func fold(b64 string) string {
	var b strings.Builder
	for len(b64) > 60 {
		b.WriteString(b64[:60] + "\r\n\t")
		b64 = b64[60:]
	}
	b.WriteString(b64)
	return b.String()
}

// seal returns msg (CRLF) with a new ARC set on top.
func (s testSealer) seal(t testing.TB, msg string, o sealOpts) string {
	t.Helper()
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	head += "\r\n"
	fields := rawFields(head)
	n := o.instance
	if n == 0 {
		for _, f := range fields {
			if strings.EqualFold(f.name, FieldARCSeal) {
				_, v, _ := strings.Cut(f.text, ":")
				if m := arcInstanceRE.FindStringSubmatch(v); m != nil {
					k, _ := strconv.Atoi(m[1])
					n = max(n, k)
				}
			}
		}
		n++
	}
	cv := o.cv
	if cv == "" {
		cv = "pass"
		if n == 1 {
			cv = "none"
		}
	}
	aar := o.aar
	if aar == "" {
		aar = s.domain + "; dmarc=pass header.from=example.com"
	}
	aarField := FieldARCAuthenticationResults + ": i=" + strconv.Itoa(n) + "; " + aar
	fields = append([]rawField{{FieldARCAuthenticationResults, aarField}}, fields...)

	bc := o.bodyC
	if bc == "" {
		bc = "relaxed"
	}
	bh := o.bodyHash
	if bh == "" {
		sum := sha256.Sum256([]byte(sealCanonBody(body, bc == "relaxed")))
		bh = base64.StdEncoding.EncodeToString(sum[:])
	}
	h := o.headers
	if h == "" {
		h = "from:to:subject:date:message-id"
	}
	c := "c=relaxed/" + bc + "; "
	if o.noC {
		c = ""
	}
	ts := "t=1700000000; "
	amsHead := FieldARCMessageSignature + ": i=" + strconv.Itoa(n) + "; a=" + algoOf(s.key) + "; " + c +
		"d=" + s.domain + "; s=" + s.selector + ";\r\n\t" + ts + "h=" + h + ";\r\n\t" + o.extraAMS + "bh=" + bh + "; b="
	// RFC 6376 §5.4.2: each name of h= takes the next instance from the
	// bottom.
	var in strings.Builder
	used := map[int]bool{}
	for _, name := range strings.Split(h, ":") {
		name = strings.TrimSpace(name)
		for k := len(fields) - 1; k >= 0; k-- {
			if !used[k] && strings.EqualFold(fields[k].name, name) {
				used[k] = true
				in.WriteString(relaxedHeader(fields[k].text))
				break
			}
		}
	}
	in.WriteString(strings.TrimSuffix(relaxedHeader(amsHead), "\r\n"))
	amsField := amsHead + fold(signDigest(t, s.key, in.String()))
	fields = append([]rawField{{FieldARCMessageSignature, amsField}}, fields...)

	asHead := FieldARCSeal + ": i=" + strconv.Itoa(n) + "; a=" + algoOf(s.key) + "; cv=" + cv + ";\r\n\t" +
		"d=" + s.domain + "; s=" + s.selector + "; " + ts + "b="
	// RFC 8617 §5.1.1: AAR, AMS, AS of each set from instance 1 up.
	byInst := map[int]map[string]string{}
	for _, f := range fields {
		kind := ""
		switch {
		case strings.EqualFold(f.name, FieldARCAuthenticationResults):
			kind = "aar"
		case strings.EqualFold(f.name, FieldARCMessageSignature):
			kind = "ams"
		case strings.EqualFold(f.name, FieldARCSeal):
			kind = "as"
		default:
			continue
		}
		_, v, _ := strings.Cut(f.text, ":")
		m := arcInstanceRE.FindStringSubmatch(v)
		if m == nil {
			continue
		}
		k, _ := strconv.Atoi(m[1])
		if byInst[k] == nil {
			byInst[k] = map[string]string{}
		}
		byInst[k][kind] = f.text
	}
	in.Reset()
	if cv != "fail" {
		for k := 1; k < n; k++ {
			for _, kind := range []string{"aar", "ams", "as"} {
				in.WriteString(relaxedHeader(byInst[k][kind]))
			}
		}
	}
	in.WriteString(relaxedHeader(aarField))
	in.WriteString(relaxedHeader(amsField))
	in.WriteString(strings.TrimSuffix(relaxedHeader(asHead), "\r\n"))
	asField := asHead + fold(signDigest(t, s.key, in.String()))
	return asField + "\r\n" + amsField + "\r\n" + aarField + "\r\n" + msg
}
