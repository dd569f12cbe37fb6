package milter

import (
	"strings"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"
	"github.com/google/go-cmp/cmp"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// parseAR parses our inserted Authentication-Results and returns
// "method=value" → properties of the first such result.
func parseAR(t *testing.T, value string) map[string]authres.Result {
	t.Helper()
	if !strings.HasPrefix(value, " ") {
		t.Errorf("A-R value does not start with a space (HDR_LEADSPC): %q", value)
	}
	id, rs, err := authres.Parse(value)
	if err != nil {
		t.Fatalf("our A-R does not parse: %v\n%s", err, value)
	}
	if id != testAuthservID {
		t.Errorf("authserv-id %q", id)
	}
	out := map[string]authres.Result{}
	for _, r := range rs {
		key := r.Method
		if _, dup := out[key]; dup {
			key += "2"
		}
		out[key] = r
	}
	return out
}

func onlyAR(t *testing.T, r result) map[string]authres.Result {
	t.Helper()
	ars := r.inserted("Authentication-Results")
	if len(ars) != 1 {
		t.Fatalf("inserted %d Authentication-Results, want 1 (mods %+v)", len(ars), r.mods)
	}
	return parseAR(t, ars[0])
}

func TestSessionPass(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("192.0.2.10")
	r := h.send(s, msg{ip: "192.0.2.10", mailFrom: "bounce@pass.example", raw: message("pass.example"), sign: true})
	if r.act.Code != milter.ActAccept {
		t.Fatalf("action %c, want accept", r.act.Code)
	}
	ar := onlyAR(t, r)
	want := map[string]string{"spf": "pass", "spf2": "pass", "dkim": "pass", "dmarc": "pass"}
	for k, v := range want {
		if ar[k].Value != v {
			t.Errorf("%s=%s, want %s (A-R %+v)", k, ar[k].Value, v, ar)
		}
	}
	if d := cmp.Diff(map[string]string{"header.d": "pass.example", "header.s": "sel", "header.a": "ed25519-sha256", "header.b": ar["dkim"].Props["header.b"]}, ar["dkim"].Props); d != "" || len(ar["dkim"].Props["header.b"]) < 8 {
		t.Errorf("dkim props (-want +got):\n%s", d)
	}
	if ar["spf"].Props["smtp.mailfrom"] != "bounce@pass.example" || ar["spf2"].Props["smtp.helo"] != "mail.client.example" {
		t.Errorf("spf props: %+v %+v", ar["spf"], ar["spf2"])
	}
	if ar["dmarc"].Props["header.from"] != "pass.example" || ar["dmarc"].Props["policy.dmarc"] != "none" {
		t.Errorf("dmarc props: %+v", ar["dmarc"])
	}
	for _, m := range r.mods {
		if m.Code == milter.ActInsertHeader && m.HeaderIndex != 0 {
			t.Errorf("A-R inserted at %d, want 0 (top)", m.HeaderIndex)
		}
	}
	if !strings.Contains(h.logs.String(), "msg=verdict") || !strings.Contains(h.logs.String(), "queue_id=4XyZ1") {
		t.Errorf("no verdict log line with the queue id:\n%s", h.logs)
	}
}

func TestSessionReject(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("198.51.100.7")
	r := h.send(s, msg{ip: "198.51.100.7", mailFrom: "x@reject.example", raw: message("reject.example")})
	if r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 550 || r.act.SMTPText != "5.7.1 Email rejected per DMARC policy for reject.example" {
		t.Fatalf("got %+v, want 550 5.7.1 reply", r.act)
	}
	if len(r.mods) != 0 {
		t.Errorf("modifications on a rejected message: %+v", r.mods)
	}
	if !strings.Contains(h.logs.String(), "action=reject") {
		t.Errorf("log:\n%s", h.logs)
	}
}

// TestSessionRelaxedAlignmentSubdomain: SPF passes for a subdomain of the
// From: domain (bounces.pass.example), which aligns in relaxed mode only
// through the Organizational Domain the end of message looks up (RFC 9989
// §4.10.2); the unsigned message passes DMARC under p=reject.
func TestSessionRelaxedAlignmentSubdomain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("192.0.2.10")
	r := h.send(s, msg{ip: "192.0.2.10", mailFrom: "b@bounces.pass.example", raw: message("pass.example")})
	if r.act.Code != milter.ActAccept {
		t.Fatalf("action %+v, want accept", r.act)
	}
	ar := onlyAR(t, r)
	if ar["spf"].Value != "pass" || ar["dmarc"].Value != "pass" {
		t.Errorf("spf=%s dmarc=%s, want pass and pass (A-R %+v)", ar["spf"].Value, ar["dmarc"].Value, ar)
	}
}

// TestSessionSeveralMessages sends several messages on one connection, the
// later ones without the {client_addr} macro: the client address from
// CONNECT must survive from one message to the next (go-milter's own server
// lost it, libraries.md §1.4; ours keeps one connection state).
func TestSessionSeveralMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("192.0.2.10")
	for i, m := range []struct {
		msg  msg
		want milter.ActionCode
	}{
		{msg{ip: "192.0.2.10", mailFrom: "a@pass.example", raw: message("pass.example"), sign: true}, milter.ActAccept},
		{msg{mailFrom: "a@reject.example", raw: message("reject.example")}, milter.ActReplyCode},
		{msg{mailFrom: "a@pass.example", raw: message("pass.example")}, milter.ActAccept}, // SPF pass via the CONNECT address
		{msg{mailFrom: "", raw: message("quar.example")}, milter.ActAccept},
	} {
		r := h.send(s, m.msg)
		if r.act.Code != m.want {
			t.Fatalf("message %d: action %c, want %c (%+v)", i, r.act.Code, m.want, r.act)
		}
		if i == 2 {
			if ar := onlyAR(t, r); ar["dmarc"].Value != "pass" || ar["spf"].Value != "pass" {
				t.Errorf("message 3 lost the connection's client address: %+v", ar)
			}
		}
	}
}

func TestSessionQuarantine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method     config.QuarantineMethod
		hold, mark bool
	}{
		{config.QuarantineHeader, false, true},
		{config.QuarantineHold, true, false},
		{config.QuarantineBoth, true, true},
	}
	for _, tc := range cases {
		t.Run(string(tc.method), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *config.Config) { c.Actions.QuarantineMethod = tc.method })
			s := h.session("198.51.100.7")
			r := h.send(s, msg{mailFrom: "x@quar.example", raw: message("quar.example")})
			if r.act.Code != milter.ActAccept {
				t.Fatalf("action %c", r.act.Code)
			}
			checkQuarantine(t, r, tc.hold, tc.mark)
			ar := onlyAR(t, r)
			if ar["dmarc"].Value != "fail" || ar["dmarc"].Props["policy.dmarc"] != "quarantine" {
				t.Errorf("dmarc result %+v", ar["dmarc"])
			}
		})
	}
}

func TestSessionListDowngradesReject(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("198.51.100.7")
	r := h.send(s, msg{mailFrom: "list-bounces@lists.example", raw: message("reject.example", "List-Id: <talk.lists.example>")})
	if r.act.Code != milter.ActAccept {
		t.Fatalf("action %c %+v, want accept (quarantine by header)", r.act.Code, r.act)
	}
	ar := onlyAR(t, r)
	if ar["dmarc"].Props["policy.dmarc"] != "quarantine" || !strings.Contains(ar["dmarc"].Reason, "mailing_list") {
		t.Errorf("dmarc %+v", ar["dmarc"])
	}
}

func TestSessionTempError(t *testing.T) {
	t.Parallel()
	t.Run("tempfail", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil)
		s := h.session("198.51.100.7")
		r := h.send(s, msg{mailFrom: "x@temp.example", raw: message("temp.example")})
		if r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 451 || !strings.HasPrefix(r.act.SMTPText, "4.7.5 ") {
			t.Fatalf("got %+v, want 451 4.7.5", r.act)
		}
	})
	t.Run("accept", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *config.Config) { c.Actions.TempError = policy.TempErrorAccept })
		s := h.session("198.51.100.7")
		r := h.send(s, msg{mailFrom: "x@temp.example", raw: message("temp.example")})
		if r.act.Code != milter.ActAccept {
			t.Fatalf("got %+v, want accept", r.act)
		}
		if ar := onlyAR(t, r); ar["dmarc"].Value != "temperror" {
			t.Errorf("dmarc %+v", ar["dmarc"])
		}
	})
}

func TestSessionMonitorMode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) {
		c.Mode = policy.ModeMonitor
		c.Actions.QuarantineMethod = config.QuarantineBoth
	})
	s := h.session("198.51.100.7")
	for _, dom := range []string{"reject.example", "quar.example", "temp.example"} {
		r := h.send(s, msg{mailFrom: "x@" + dom, raw: message(dom)})
		if r.act.Code != milter.ActAccept || r.has(milter.ActQuarantine) || r.has(milter.ActAddHeader) {
			t.Fatalf("%s: monitor mode enforced: %+v %+v", dom, r.act, r.mods)
		}
		ar := onlyAR(t, r)
		// temp.example's policy is unknown (discovery failed): no policy.dmarc.
		if p := ar["dmarc"].Props["policy.dmarc"]; p != "none" && !(dom == "temp.example" && p == "") {
			t.Errorf("%s: policy.dmarc=%s in monitor mode, want none", dom, p)
		}
	}
	logs := h.logs.String()
	for _, w := range []string{"would reject", "would quarantine", "would tempfail"} {
		if !strings.Contains(logs, w) {
			t.Errorf("log lacks %q:\n%s", w, logs)
		}
	}
}

func TestSessionBypasses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) {
		n, _ := config.ParseNetwork("203.0.113.0/24")
		c.Allowlist.Networks = []config.Network{n}
		c.Allowlist.FromDomains = []string{"quar.example"}
	})
	forged := "Authentication-Results: " + testAuthservID + "; dmarc=pass header.from=reject.example"

	t.Run("trusted network", func(t *testing.T) {
		s := h.session("127.0.0.1")
		r := h.send(s, msg{mailFrom: "x@reject.example", raw: message("reject.example", forged)})
		if r.mailAct.Code != milter.ActAccept {
			t.Fatalf("MAIL FROM answer %c, want accept (nothing more to do)", r.mailAct.Code)
		}
	})
	t.Run("authenticated", func(t *testing.T) {
		s := h.session("198.51.100.7")
		r := h.send(s, msg{mailFrom: "x@reject.example", auth: "alice", raw: message("reject.example", forged)})
		if r.act.Code != milter.ActAccept || len(r.inserted("Authentication-Results")) != 0 {
			t.Fatalf("got %+v %+v", r.act, r.mods)
		}
		if len(r.mods) != 1 || r.mods[0].Code != milter.ActChangeHeader || r.mods[0].HeaderIndex != 1 || r.mods[0].HeaderValue != "" {
			t.Errorf("forged A-R not deleted: %+v", r.mods)
		}
	})
	t.Run("allowlisted network", func(t *testing.T) {
		s := h.session("203.0.113.5")
		r := h.send(s, msg{mailFrom: "x@reject.example", raw: message("reject.example")})
		if r.act.Code != milter.ActAccept {
			t.Fatalf("got %+v", r.act)
		}
		if ar := onlyAR(t, r); ar["dmarc"].Value != "fail" || ar["dmarc"].Props["policy.dmarc"] != "none" {
			t.Errorf("dmarc %+v", ar["dmarc"])
		}
	})
	t.Run("allowlisted From domain", func(t *testing.T) {
		s := h.session("198.51.100.7")
		r := h.send(s, msg{mailFrom: "x@quar.example", raw: message("quar.example")})
		if r.act.Code != milter.ActAccept || r.has(milter.ActAddHeader) {
			t.Fatalf("got %+v %+v", r.act, r.mods)
		}
		if ar := onlyAR(t, r); ar["dmarc"].Value != "fail" {
			t.Errorf("dmarc %+v", ar["dmarc"])
		}
	})
	logs := h.logs.String()
	for _, b := range []string{"bypass=trusted-network", "bypass=authenticated", "bypass=allowlist-network", "bypass=allowlist-from"} {
		if !strings.Contains(logs, b) {
			t.Errorf("log lacks %q:\n%s", b, logs)
		}
	}
}

// TestSessionForgedARDeletion: every incoming A-R with our authserv-id (in
// any case, after CFWS) is deleted by its 1-based index among the
// Authentication-Results fields, highest first; others' stay; incoming
// quarantine markers go too.
func TestSessionForgedARDeletion(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("192.0.2.10")
	raw := message("pass.example",
		"Authentication-Results: "+testAuthservID+"; dmarc=pass header.from=pass.example", // 1: ours
		"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@y.example",       // 2: theirs
		"Received: from x by y",
		"authentication-results: (forged)\n\tMX.TEST.EXAMPLE; dkim=pass", // 3: ours
		"X-DMARC-Quarantine: no",                           // marker 1
		"Authentication-Results: "+testAuthservID+"; none", // 4: ours
	)
	r := h.send(s, msg{ip: "192.0.2.10", mailFrom: "a@pass.example", raw: raw, sign: true})
	var got []string
	for _, m := range r.mods {
		if m.Code == milter.ActChangeHeader {
			if m.HeaderValue != "" {
				t.Errorf("change instead of delete: %+v", m)
			}
			got = append(got, strings.ToLower(m.HeaderName)+"#"+string(rune('0'+m.HeaderIndex)))
		}
	}
	want := []string{"authentication-results#4", "x-dmarc-quarantine#1", "authentication-results#3", "authentication-results#1"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("deletions (-want +got):\n%s", d)
	}
	if ar := onlyAR(t, r); ar["dmarc"].Value != "pass" {
		t.Errorf("dmarc %+v", ar["dmarc"])
	}
}

// TestSessionFromProblems: From: is a security boundary; the defaults
// never let an irregular From skip DMARC (pkg/policy's FromPolicy).
func TestSessionFromProblems(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("198.51.100.7")
	cases := []struct {
		name, raw string
		code      int
	}{
		{"missing", "Subject: x\n\nbody\n", 550},
		{"unparseable", "From: <<<@@>\nSubject: x\n\nbody\n", 550},
		{"two fields, one failing", "From: a@none.example\nFrom: b@reject.example\nSubject: x\n\nbody\n", 550},
	}
	for _, tc := range cases {
		r := h.send(s, msg{mailFrom: "x@none.example", raw: tc.raw})
		if r.act.Code != milter.ActReplyCode || r.act.SMTPCode != tc.code {
			t.Errorf("%s: got %+v, want %d", tc.name, r.act, tc.code)
		}
	}
}

func TestParseClientAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":           "192.0.2.1",
		"[192.0.2.1]":         "192.0.2.1",
		"IPv6:2001:db8::25":   "2001:db8::25",
		"ipv6:2001:db8::25":   "2001:db8::25",
		"[IPv6:2001:db8::25]": "2001:db8::25",
		"::ffff:192.0.2.1":    "192.0.2.1",
		"":                    "",
		"unknown":             "",
		"IPv6:":               "",
	} {
		a, ok := parseClientAddr(in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("parseClientAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSessionQuitNC: SMFIC_QUIT_NC ends an SMTP session and keeps the
// connection for the next one, which is evaluated with its own client
// (go-milter's server closed the connection on it).
func TestSessionQuitNC(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := dialRaw(t, h.addr)
	for i, tc := range []struct {
		ip   string
		want byte
	}{
		{"198.51.100.7", 'y'}, // SPF fails for pass.example: DMARC reject
		{"192.0.2.10", 'a'},   // SPF pass through the CONNECT address
	} {
		r.want('C', connectData("client.example", tc.ip), 'c')
		r.want('H', cstr("mail.client.example"), 'c')
		r.want('M', cstr("<a@pass.example>"), 'c') // no {client_addr} macro
		r.want('R', cstr("<bob@mx.test.example>"), 'c')
		sendHeaders(r, []byte(message("pass.example")))
		if _, code, data := r.eom(); code != tc.want {
			t.Fatalf("session %d from %s: %q %q, want %q", i, tc.ip, code, data, tc.want)
		}
		r.send('A', nil)
		r.send('K', nil)
	}
	r.send('Q', nil)
	if !r.closedByServer(5 * time.Second) {
		t.Error("connection open after QUIT")
	}
}
