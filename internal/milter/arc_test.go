package milter

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// The list that seals in these tests: its key is testKey, published at
// arc._domainkey.lists.test.example by addSealerKey.
const testSealer = "lists.test.example"

func addSealerKey(t *testing.T, add func(lines ...string)) {
	t.Helper()
	pub := base64.StdEncoding.EncodeToString(testKey.Public().(ed25519.PublicKey))
	add(`arc._domainkey.` + testSealer + `. 300 IN TXT "v=DKIM1; k=ed25519; p=` + pub + `"`)
}

// arcSeal adds one ARC set (RFC 8617 §5.1) by sealer to raw (LF line ends,
// no ARC set yet: instance 1, cv=none), with the given assessment as the
// ARC-Authentication-Results payload, relaxed/relaxed, signing h. It is a
// plain whole-string sealer written for these tests (we do not seal in the
// product; pkg/verify's tests check the verifier against dkimpy).
func arcSeal(t *testing.T, raw, aar, h string) string {
	t.Helper()
	msg := strings.ReplaceAll(raw, "\n", "\r\n")
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	var fields []string
	for _, line := range strings.SplitAfter(head+"\r\n", "\r\n") {
		switch {
		case line == "":
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			fields[len(fields)-1] += line
		default:
			fields = append(fields, line)
		}
	}
	relaxed := func(f string) string {
		name, value, _ := strings.Cut(f, ":")
		value = strings.Join(strings.Fields(strings.ReplaceAll(value, "\r\n", "")), " ")
		return strings.ToLower(strings.TrimSpace(name)) + ":" + value + "\r\n"
	}
	var cb []string
	for _, l := range strings.Split(body, "\r\n") {
		cb = append(cb, strings.TrimRight(strings.Join(strings.Fields(l), " "), " "))
		if l != "" && (l[0] == ' ' || l[0] == '\t') && cb[len(cb)-1] != "" {
			cb[len(cb)-1] = " " + cb[len(cb)-1]
		}
	}
	canonBody := strings.TrimRight(strings.Join(cb, "\r\n"), "\r\n")
	if canonBody != "" {
		canonBody += "\r\n"
	}
	bh := sha256.Sum256([]byte(canonBody))
	sign := func(data string) string {
		d := sha256.Sum256([]byte(data))
		return base64.StdEncoding.EncodeToString(ed25519.Sign(testKey, d[:]))
	}
	aarField := "ARC-Authentication-Results: i=1; " + aar + "\r\n"
	all := append([]string{aarField}, fields...)
	ams := "ARC-Message-Signature: i=1; a=ed25519-sha256; c=relaxed/relaxed; d=" + testSealer +
		"; s=arc; t=1700000000; h=" + h + "; bh=" + base64.StdEncoding.EncodeToString(bh[:]) + "; b="
	var in strings.Builder
	used := map[int]bool{}
	for _, name := range strings.Split(h, ":") {
		for k := len(all) - 1; k >= 0; k-- { // RFC 6376 §5.4.2: from the bottom
			if n, _, _ := strings.Cut(all[k], ":"); !used[k] && strings.EqualFold(strings.TrimSpace(n), name) {
				used[k] = true
				in.WriteString(relaxed(all[k]))
				break
			}
		}
	}
	in.WriteString(strings.TrimSuffix(relaxed(ams), "\r\n"))
	amsField := ams + sign(in.String()) + "\r\n"
	seal := "ARC-Seal: i=1; a=ed25519-sha256; cv=none; d=" + testSealer + "; s=arc; t=1700000000; b="
	sealed := sign(relaxed(aarField) + relaxed(amsField) + strings.TrimSuffix(relaxed(seal), "\r\n"))
	out := seal + sealed + "\r\n" + amsField + aarField + strings.Join(fields, "") + "\r\n" + body
	return strings.ReplaceAll(out, "\r\n", "\n")
}

// listMessage is a message by alice@reject.example (p=reject, SPF -all)
// that the list sealed after checking it passed DMARC, as received from
// the list: DMARC fails here.
func listMessage(t *testing.T, aar string) string {
	return arcSeal(t, message("reject.example", "List-Id: <dev.lists.test.example>"),
		testSealer+"; dkim=pass header.d=reject.example; dmarc=pass header.from=reject.example"+aar, "from:to:subject:date:list-id")
}

// TestARCConversation drives sealed and unsealed messages through the milter
// protocol: arc= in our Authentication-Results (RFC 8617 §6) whatever the
// local policy, and the override only with the sealer trusted.
func TestARCConversation(t *testing.T) {
	t.Parallel()
	trust := func(indirect policy.IndirectHandling) func(*config.Config) {
		return func(c *config.Config) {
			c.DMARC.TrustedARCSealers = []string{testSealer}
			c.Actions.IndirectFlow = indirect
			c.Actions.RejectPolicy = policy.RejectReject // list headers count for nothing
		}
	}
	untrusted := func(c *config.Config) { c.Actions.RejectPolicy = policy.RejectReject }
	cases := []struct {
		name    string
		mod     func(*config.Config)
		raw     func(t *testing.T) string
		act     milter.ActionCode
		ar      []string // substrings of our A-R (delivered mail)
		logged  []string // substrings of the verdict line
		quarant bool
	}{
		{name: "trusted sealer, deliver", mod: trust(policy.IndirectDeliver), raw: func(t *testing.T) string { return listMessage(t, "") },
			act: milter.ActAccept, ar: []string{"arc=pass (i=1 d=" + testSealer + ") header.oldest-pass=0 smtp.remote-ip=192.0.2.99", "dmarc=fail (p=reject dis=none) reason=trusted_forwarder header.from=reject.example policy.dmarc=none"},
			logged: []string{"arc=pass", "trusted-arc-sealer: trusted ARC sealer " + testSealer + " (i=1) saw dmarc=pass header.from=reject.example"}},
		{name: "trusted sealer, quarantine", mod: trust(policy.IndirectQuarantine), raw: func(t *testing.T) string { return listMessage(t, "") },
			act: milter.ActAccept, quarant: true, ar: []string{"arc=pass", "dmarc=fail (p=reject dis=quarantine) reason=trusted_forwarder header.from=reject.example policy.dmarc=quarantine"}},
		{name: "untrusted sealer: rejected as without ARC", mod: untrusted, raw: func(t *testing.T) string { return listMessage(t, "") },
			act: milter.ActReplyCode, logged: []string{"arc=pass", "action=reject"}},
		{name: "trusted sealer, body changed after sealing", mod: trust(policy.IndirectDeliver), raw: func(t *testing.T) string { return listMessage(t, "") + "added\n" },
			act: milter.ActReplyCode, logged: []string{"arc=fail", "action=reject"}},
		{name: "trusted sealer, its AAR says dmarc=fail", mod: trust(policy.IndirectDeliver), raw: func(t *testing.T) string {
			return arcSeal(t, message("reject.example"), testSealer+"; dmarc=fail header.from=reject.example", "from:to:subject:date")
		}, act: milter.ActReplyCode, logged: []string{"arc=pass", "action=reject"}},
		{name: "no ARC: arc=none, nothing else changes", mod: trust(policy.IndirectDeliver), raw: func(t *testing.T) string { return message("quar.example") },
			act: milter.ActAccept, quarant: true, ar: []string{"arc=none;", "dmarc=fail (p=quarantine dis=quarantine) header.from=quar.example policy.dmarc=quarantine"}, logged: []string{`arc=none`}},
		{name: "a signed field above the ARC set is replayed to the verifier", mod: trust(policy.IndirectDeliver), raw: func(t *testing.T) string {
			s := arcSeal(t, message("reject.example", "X-Top: 1"), testSealer+"; dmarc=pass header.from=reject.example", "x-top:from:to:subject:date")
			i := strings.Index(s, "X-Top: 1\n")
			return "X-Top: 1\n" + s[:i] + s[i+len("X-Top: 1\n"):]
		}, act: milter.ActAccept, ar: []string{"arc=pass", "policy.dmarc=none"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, c.mod)
			addSealerKey(t, h.dns.MustAdd)
			s := h.session("192.0.2.99")
			r := h.send(s, msg{mailFrom: "dev-bounces@" + testSealer, raw: c.raw(t)})
			if r.act == nil || r.act.Code != c.act {
				t.Fatalf("action %+v, want %c\n%s", r.act, c.act, h.logs)
			}
			if c.act == milter.ActAccept {
				checkQuarantine(t, r, false, c.quarant)
				ars := r.inserted(authres.FieldName)
				if len(ars) != 1 {
					t.Fatalf("inserted A-R %q", ars)
				}
				got := strings.Join(strings.Fields(ars[0]), " ")
				for _, w := range c.ar {
					if !strings.Contains(got, w) {
						t.Errorf("A-R %q lacks %q", got, w)
					}
				}
				if _, _, err := authres.Parse(ars[0]); err != nil {
					t.Errorf("our A-R does not parse: %v", err)
				}
			}
			logs := h.logs.String()
			for _, w := range c.logged {
				if !strings.Contains(logs, w) {
					t.Errorf("log lacks %q:\n%s", w, logs)
				}
			}
		})
	}
}

// TestARCOnlyWithARCFields: a message without ARC fields makes no ARC
// verifier and keeps no fields past its header; one with them makes one,
// and the evaluate trace shows the chain.
func TestARCOnlyWithARCFields(t *testing.T) {
	t.Parallel()
	e, srv := txEngine(t, nil)
	addSealerKey(t, srv.MustAdd)
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@reject.example", MTAHost: testAuthservID}

	fields, body := SplitMessage([]byte(message("reject.example", "Received: from a by b", "X-Arc: not one", "Arc-Seal-Like: no")))
	tx := Begin(context.Background(), e, env, nil)
	for _, f := range fields {
		tx.Header(f.Name, f.Value)
	}
	tx.EndOfHeaders()
	if tx.arc != nil {
		t.Errorf("no ARC field: ARC state kept past the header: %+v", tx.arc)
	}
	tx.BodyChunk(body)
	if d := tx.End(); d.Verdict.ARC != nil {
		t.Errorf("ARC %+v, want nil (no chain)", d.Verdict.ARC)
	}
	tx.Close()

	raw := []byte("Received: from list by us\n" + listMessage(t, ""))
	d := EvaluateMessage(context.Background(), e, env, raw)
	if d.Verdict.ARC == nil || d.Verdict.ARC.CV != verify.ChainPass {
		t.Fatalf("ARC %+v, want pass", d.Verdict.ARC)
	}
	for _, w := range []string{"arc: cv=pass", "  i=1 sealer d=" + testSealer + " s=arc a=ed25519-sha256 cv=none",
		"    assessment by " + testSealer + ": dkim=pass header.d=reject.example; dmarc=pass header.from=reject.example"} {
		if !slices.ContainsFunc(d.Trace, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("trace lacks %q:\n%s", w, strings.Join(d.Trace, "\n"))
		}
	}
}

// TestARCManyFieldsBeforeTheChain: more fields than are held before the
// first ARC field start the verifier anyway; none is dropped, so a
// signature over a field far above the chain still verifies.
func TestARCManyFieldsBeforeTheChain(t *testing.T) {
	t.Parallel()
	e, srv := txEngine(t, nil)
	addSealerKey(t, srv.MustAdd)
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@reject.example", MTAHost: testAuthservID}
	sealed := arcSeal(t, message("reject.example", "X-Top: 1"), testSealer+"; dmarc=pass header.from=reject.example", "x-top:from:to:subject:date")
	i := strings.Index(sealed, "X-Top: 1\n")
	var pad strings.Builder
	for k := range maxHeld + 10 {
		pad.WriteString("X-Pad: " + strconv.Itoa(k) + "\n")
	}
	raw := "X-Top: 1\n" + pad.String() + sealed[:i] + sealed[i+len("X-Top: 1\n"):]
	d := EvaluateMessage(context.Background(), e, env, []byte(raw))
	if d.Verdict.ARC == nil || d.Verdict.ARC.CV != verify.ChainPass {
		t.Fatalf("ARC %+v, want pass", d.Verdict.ARC)
	}
}

// TestARCResult: the arc resinfo for each chain status (RFC 8617 §6):
// smtp.remote-ip whenever there was a chain, header.oldest-pass and the
// newest sealer for a pass, the failure in reason= for a fail.
func TestARCResult(t *testing.T) {
	t.Parallel()
	v4, v6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("::ffff:192.0.2.8")
	pass := verify.ARCResult{CV: verify.ChainPass, OldestPass: 2, Sets: []verify.ARCSet{{Instance: 1, SealDomain: "a.example"}, {Instance: 2, SealDomain: "b.example"}}}
	cases := []struct {
		name string
		arc  verify.ARCResult
		ip   netip.Addr
		want string
	}{
		{"not validated", verify.ARCResult{}, v4, "arc=none"},
		{"none", verify.ARCResult{CV: verify.ChainNone}, v4, "arc=none"},
		{"pass", pass, v4, "arc=pass (i=2 d=b.example) header.oldest-pass=2 smtp.remote-ip=192.0.2.7"},
		{"pass, mapped address", pass, v6, "arc=pass (i=2 d=b.example) header.oldest-pass=2 smtp.remote-ip=192.0.2.8"},
		{"fail", verify.ARCResult{CV: verify.ChainFail, Reason: "ARC-Seal i=1: signature did not verify"}, v4,
			`arc=fail reason="ARC-Seal i=1: signature did not verify" smtp.remote-ip=192.0.2.7`},
		{"fail, no client address", verify.ARCResult{CV: verify.ChainFail, Reason: "structure"}, netip.Addr{}, "arc=fail reason=structure"},
	}
	for _, c := range cases {
		d := &Decision{Verdict: &policy.Verdict{ARC: &c.arc}, Env: Envelope{ClientIP: c.ip}}
		got := strings.TrimPrefix(strings.Join(strings.Fields(authres.Format("x", []authres.Result{arcResult(d)})), " "), "x; ")
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// FuzzARCFields feeds hostile ARC fields through a transaction whose
// engine trusts the sealer they name, with no key to be found: the chain
// never passes, so nothing is overridden, the verdict is DMARC's own, and
// our Authentication-Results (with its arc= result) parses back.
func FuzzARCFields(f *testing.F) {
	f.Add("i=1; a=rsa-sha256; cv=none; d=lists.test.example; s=arc; b=AAAA", "i=1; a=rsa-sha256; c=relaxed/relaxed; d=lists.test.example; s=arc; h=from; bh=AAAA; b=AAAA", "i=1; lists.test.example; dmarc=pass header.from=reject.example")
	f.Add("i=51; cv=pass", "i=0", "i=1")
	f.Add("i=1; cv=fail", "", "i=1; (\"unterminated")
	res, err := cache.New(cache.Config{Nameservers: []string{"127.0.0.1:9"}, Timeout: 50 * time.Millisecond, Attempts: 1})
	if err != nil {
		f.Fatal(err)
	}
	cfg := config.Default()
	cfg.AuthservID = testAuthservID
	cfg.DMARC.TrustedARCSealers = []string{testSealer}
	cfg.Actions.IndirectFlow = policy.IndirectDeliver
	cfg.Timeouts.DKIM, cfg.Timeouts.EndOfMessage = 200*time.Millisecond, time.Second
	e, err := NewEngine(cfg, res, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, seal, ams, aar string) {
		env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"), Helo: "h.example", MailFrom: "a@reject.example", MTAHost: testAuthservID}
		tx := Begin(context.Background(), e, env, nil)
		defer tx.Close()
		tx.Header("ARC-Seal", " "+seal)
		tx.Header("ARC-Message-Signature", " "+ams)
		tx.Header("ARC-Authentication-Results", " "+aar)
		tx.Header("From", " a@reject.example")
		tx.EndOfHeaders()
		tx.BodyChunk([]byte("x\r\n"))
		d := tx.End()
		if d.Err != nil {
			t.Fatalf("internal error: %v", d.Err)
		}
		if a := d.Verdict.ARC; a != nil && a.CV != verify.ChainFail && a.CV != verify.ChainNone {
			t.Fatalf("cv=%q without any key", a.CV)
		}
		if d.Verdict.HasReason(policy.ReasonTrustedARCSealer) {
			t.Fatalf("overridden by a chain that did not pass: %+v", d.Verdict.Domains)
		}
		if _, rs, err := authres.Parse(d.AuthResults); err != nil || !slices.ContainsFunc(rs, func(r authres.Result) bool { return r.Method == "arc" }) {
			t.Fatalf("A-R %q: %v", d.AuthResults, err)
		}
	})
}
