package integration

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// scenario is one end-to-end case against the daemon. Each uses its own
// domains (under .example) and its own mailbox, so that scenarios sharing
// the bed cannot see each other's DNS data or mail.
type scenario struct {
	name string
	run  func(t *testing.T, w *world)
}

// The scenarios, in its order.
var scenarios = []scenario{
	{"dkim-aligned-pass-inbox", scDKIMAligned},
	{"spf-aligned-pass-unsigned-ipv6-inbox", scSPFAligned},
	{"forwarded-spf-fail-dkim-pass-inbox", scForwarded},
	{"reject-550-at-eom-nothing-delivered", scReject},
	{"quarantine-header-junk", scQuarantineHeader},
	{"quarantine-hold-queue", scQuarantineHold},
	{"p-none-fail-inbox", scNone},
	{"subdomain-sp-reject", scSubdomainSP},
	{"nonexistent-from-np-reject", scNonexistentNP},
	{"several-messages-one-connection", scMultiMessage},
	{"authenticated-submission-bypassed", scAuthBypass},
	{"forged-ar-removed", scForgedAR},
	{"dns-servfail-451-then-delivered-once", scServfail},
	{"daemon-stopped-tempfail-then-flows", scDaemonStopped},
	{"mailing-list-p-reject-quarantined", scMailingList},
	{"arc-trusted-sealer-delivered", scARC},
	{"aggregate-report-round-trip", scReportRoundTrip},
	{"intake-report-captured-stored-delivered", scIntake},
}

// client simulates a remote MTA at ip with a HELO name.
func client(ip, helo string) map[string]string {
	return map[string]string{"ADDR": ip, "NAME": "[UNAVAILABLE]", "HELO": helo}
}

// Aligned DKIM pass (RSA 2048 key, long TXT record) with an unaligned SPF
// pass (an ESP's bounce domain): dmarc=pass, INBOX, although p=reject.
func scDKIMAligned(t *testing.T, w *world) {
	const dom, esp, usr = "dkim-aligned.example", "esp-dkim.example", "dkim-aligned"
	key := newRSAKey(t)
	key.publish(w, "s2048", dom)
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=reject"),
		txtRR(dom, "v=spf1 -all"),
		txtRR(esp, "v=spf1 ip4:192.0.2.10 -all"),
	)
	m := key.sign(t, newMsg("news@"+dom, rcpt(usr), "dkim aligned", nil, "Hello.\n"), dom, "s2048")
	c := w.session(t, "header", client("192.0.2.10", "out.esp-dkim.example"))
	r, err := c.send("bounce-123@"+esp, []string{rcpt(usr)}, m)
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	wantAR(t, got[0], "dmarc=pass", "dmarc header.from="+dom, "dkim=pass", "dkim header.d="+dom, "spf=pass")
}

// Aligned SPF pass for an unsigned message from an IPv6 client: the client
// address must survive Postfix's "IPv6:" form of {client_addr}.
func scSPFAligned(t *testing.T, w *world) {
	const dom, usr = "spf-aligned.example", "spf-aligned"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=reject"),
		txtRR(dom, "v=spf1 ip6:2001:db8:5::/48 -all"),
	)
	// Two messages on one connection: the second one knows the client only
	// from the MAIL-stage macro {client_addr}, "IPv6:2001:db8:5::25".
	c := w.session(t, "header", client("IPV6:2001:db8:5::25", "mx.spf-aligned.example"))
	for _, from := range []string{"alice@" + dom, "bob@" + dom} {
		r, err := c.send(from, []string{rcpt(usr)}, newMsg(from, rcpt(usr), "spf aligned", nil, "Hi.\n"))
		wantReply(t, r, err, "EOM", 250, "2.0.0")
	}
	got := w.wantOnly(t, usr, 2, inbox)
	for _, m := range got {
		wantAR(t, m, "dmarc=pass", "dmarc header.from="+dom, "spf=pass", "spf smtp.mailfrom~="+dom)
	}
}

// A forwarder relays the original envelope from its own address: SPF fails,
// the author's DKIM signature survives, DMARC passes.
func scForwarded(t *testing.T, w *world) {
	const dom, usr = "forwarded.example", "forwarded"
	key := newEd25519Key(t)
	key.publish(w, "ed", dom)
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=reject"),
		txtRR(dom, "v=spf1 ip4:198.51.100.1 -all"),
	)
	m := key.sign(t, newMsg("bob@"+dom, "bob@alias.example", "forwarded", nil, "Forward me.\n"), dom, "ed")
	c := w.session(t, "header", client("203.0.113.50", "forwarder.alias.example"))
	r, err := c.send("bob@"+dom, []string{rcpt(usr)}, m)
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	wantAR(t, got[0], "dmarc=pass", "spf=fail", "dkim=pass", "dkim header.d="+dom)
}

// p=reject, neither SPF nor DKIM aligned: 550 5.7.1 after DATA, nothing
// queued or delivered.
func scReject(t *testing.T, w *world) {
	const dom, usr = "reject.example", "reject"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=reject"),
		txtRR(dom, "v=spf1 ip4:198.51.100.2 -all"),
	)
	c := w.session(t, "header", client("203.0.113.66", "spoofer.example"))
	r, err := c.send("ceo@"+dom, []string{rcpt(usr)}, newMsg("ceo@"+dom, rcpt(usr), "wire money", nil, "Now.\n"))
	wantReply(t, r, err, "EOM", 550, "5.7.1")
	if !strings.Contains(r.Text, dom) {
		t.Errorf("reply %q does not name %s", r.Text, dom)
	}
	w.wantNothing(t, usr)
	if l := w.pf.logLines("milter-reject: END-OF-MESSAGE", "to=<"+rcpt(usr)+">"); len(l) != 1 {
		t.Errorf("postfix log: want one milter-reject line, got %q", l)
	}
}

// p=quarantine with the header method: delivered, marked, filed into Junk
// by the shipped Sieve script.
func scQuarantineHeader(t *testing.T, w *world) {
	const dom, usr = "quarantine.example", "quarantine"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=quarantine"),
		txtRR(dom, "v=spf1 ip4:198.51.100.3 -all"),
	)
	c := w.session(t, "header", client("203.0.113.67", "spoofer.example"))
	r, err := c.send("info@"+dom, []string{rcpt(usr)}, newMsg("info@"+dom, rcpt(usr), "quarantine me", nil, "Junk.\n"))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, junk)
	wantAR(t, got[0], "dmarc=fail", "dmarc header.from="+dom, "dmarc policy.dmarc=quarantine", "spf=fail")
	if v := headerValues(got[0], "X-DMARC-Quarantine"); len(v) != 1 || v[0] != "yes" {
		t.Errorf("X-DMARC-Quarantine: %q", v)
	}
	// The script's second route, for operators who switch the marker off:
	// our A-R alone, as the daemon folds it, must still mean Junk.
	noMarker := regexp.MustCompile(`(?m)^X-DMARC-Quarantine:.*\r?\n`).ReplaceAllString(got[0], "")
	if f := w.dc.sieveTest(t, noMarker); f != junk {
		t.Errorf("without the marker header, the Sieve script files it into %s", f)
	}
}

// p=quarantine with the hold method: accepted (250) into Postfix's hold
// queue, not delivered; postqueue -j shows it.
func scQuarantineHold(t *testing.T, w *world) {
	const dom, usr = "hold.example", "hold"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=quarantine"),
		txtRR(dom, "v=spf1 ip4:198.51.100.4 -all"),
	)
	c := w.session(t, "hold", client("203.0.113.68", "spoofer.example"))
	r, err := c.send("info@"+dom, []string{rcpt(usr)}, newMsg("info@"+dom, rcpt(usr), "hold me", nil, "Held.\n"))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	q := w.pf.queue(t, rcpt(usr))
	if len(q) != 1 || q[0].QueueName != "hold" {
		t.Fatalf("postqueue -j for %s: %+v", usr, q)
	}
	out, err := exec.Command("/usr/sbin/postcat", "-c", w.pf.conf, "-hq", q[0].QueueID).CombinedOutput()
	if err != nil {
		t.Fatalf("postcat: %v\n%s", err, out)
	}
	wantAR(t, string(out), "dmarc=fail", "dmarc header.from="+dom)
	if l := w.pf.logLines(q[0].QueueID, "milter-hold: END-OF-MESSAGE"); len(l) != 1 {
		t.Errorf("postfix log: %q", l)
	}
	time.Sleep(300 * time.Millisecond) // a delivery would have happened by now
	if got := w.dc.delivered(usr); count(got) != 0 {
		t.Errorf("held mail delivered: %v", got)
	}
	run(t, "/usr/sbin/postsuper", "-c", w.pf.conf, "-d", q[0].QueueID, "hold")
}

// p=none failure: delivered to INBOX, dmarc=fail recorded, no marker.
func scNone(t *testing.T, w *world) {
	const dom, usr = "none.example", "none"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=none"),
		txtRR(dom, "v=spf1 ip4:198.51.100.5 -all"),
	)
	c := w.session(t, "header", client("203.0.113.69", "other.example"))
	r, err := c.send("x@"+dom, []string{rcpt(usr)}, newMsg("x@"+dom, rcpt(usr), "monitor only", nil, "Hi.\n"))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	wantAR(t, got[0], "dmarc=fail", "dmarc header.from="+dom, "dmarc policy.dmarc=none")
	if v := headerValues(got[0], "X-DMARC-Quarantine"); len(v) != 0 {
		t.Errorf("X-DMARC-Quarantine on p=none mail: %q", v)
	}
}

// A subdomain without its own record gets the parent's sp= (reject), not
// its p= (none).
func scSubdomainSP(t *testing.T, w *world) {
	const org, dom, usr = "sp.example", "mail.sp.example", "subdomain"
	w.dns.MustAdd(
		txtRR("_dmarc."+org, "v=DMARC1; p=none; sp=reject"),
		dom+". 300 IN A 198.51.100.6",
	)
	c := w.session(t, "header", client("203.0.113.70", "other.example"))
	r, err := c.send("x@"+dom, []string{rcpt(usr)}, newMsg("x@"+dom, rcpt(usr), "subdomain", nil, "Hi.\n"))
	wantReply(t, r, err, "EOM", 550, "5.7.1")
	w.wantNothing(t, usr)

	// The organizational domain itself still gets p=none.
	r, err = c.send("x@"+org, []string{rcpt(usr)}, newMsg("x@"+org, rcpt(usr), "org", nil, "Hi.\n"))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	wantAR(t, got[0], "dmarc=fail", "dmarc header.from="+org)
}

// A From: domain that does not exist (NXDOMAIN) gets the organizational
// domain's np= (RFC 9989), here reject, while existing subdomains get sp=none.
func scNonexistentNP(t *testing.T, w *world) {
	const org, ghost, usr = "np.example", "nosuch.np.example", "nonexistent"
	w.dns.MustAdd(
		txtRR("_dmarc."+org, "v=DMARC1; p=none; sp=none; np=reject"),
		"real.np.example. 300 IN A 198.51.100.7",
	)
	c := w.session(t, "header", client("203.0.113.71", "other.example"))
	r, err := c.send("x@"+ghost, []string{rcpt(usr)}, newMsg("x@"+ghost, rcpt(usr), "ghost", nil, "Hi.\n"))
	wantReply(t, r, err, "EOM", 550, "5.7.1")
	w.wantNothing(t, usr)

	r, err = c.send("x@real.np.example", []string{rcpt(usr)}, newMsg("x@real.np.example", rcpt(usr), "real", nil, "Hi.\n"))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	w.wantOnly(t, usr, 1, inbox)
}

// Several messages on one SMTP connection, different senders: messages 2+
// reach a fresh go-milter backend that never saw the connect event. The
// client address must still be known (SPF passes only for it), and a reject
// in the middle must not spill over.
func scMultiMessage(t *testing.T, w *world) {
	const usr = "multi"
	for _, d := range []string{"multi1.example", "multi2.example", "multi3.example", "multi4.example"} {
		w.dns.MustAdd(txtRR("_dmarc."+d, "v=DMARC1; p=reject"))
	}
	w.dns.MustAdd(
		txtRR("multi1.example", "v=spf1 ip4:192.0.2.60 -all"),
		txtRR("multi2.example", "v=spf1 ip4:192.0.2.60 -all"),
		txtRR("multi3.example", "v=spf1 ip4:198.51.100.60 -all"), // not this client
		txtRR("multi4.example", "v=spf1 ip4:192.0.2.60 -all"),
	)
	c := w.session(t, "header", client("192.0.2.60", "mta.multi.example"))
	want := []struct {
		dom  string
		code int
	}{{"multi1.example", 250}, {"multi2.example", 250}, {"multi3.example", 550}, {"multi4.example", 250}}
	for _, x := range want {
		from := "s@" + x.dom
		r, err := c.send(from, []string{rcpt(usr)}, newMsg(from, rcpt(usr), "multi "+x.dom, nil, "Hi.\n"))
		if err != nil || r.Stage != "EOM" || r.Code != x.code {
			t.Fatalf("%s: %v %v; want EOM %d", x.dom, r, err, x.code)
		}
	}
	got := w.wantOnly(t, usr, 3, inbox)
	var froms []string
	for _, m := range got {
		wantAR(t, m, "dmarc=pass", "spf=pass")
		for _, r := range ourResults(t, m) {
			if r.Method == "dmarc" {
				froms = append(froms, r.Props["header.from"])
			}
		}
	}
	for _, d := range []string{"multi1.example", "multi2.example", "multi4.example"} {
		if !strings.Contains(strings.Join(froms, ","), d) {
			t.Errorf("no delivered message with header.from=%s (have %v)", d, froms)
		}
	}
}

// An authenticated submission (XCLIENT LOGIN sets {auth_authen}) is not
// judged by DMARC; the same message unauthenticated is rejected.
func scAuthBypass(t *testing.T, w *world) {
	const dom, usr = "authbypass.example", "authbypass"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=reject"),
		txtRR(dom, "v=spf1 ip4:198.51.100.8 -all"),
	)
	m := func() []byte { return newMsg("me@"+dom, rcpt(usr), "from my phone", nil, "Hi.\n") }
	c := w.session(t, "header", client("203.0.113.72", "roaming.example"))
	r, err := c.send("me@"+dom, []string{rcpt(usr)}, m())
	wantReply(t, r, err, "EOM", 550, "5.7.1")

	attrs := client("203.0.113.72", "roaming.example")
	attrs["LOGIN"] = "me"
	c = w.session(t, "header", attrs)
	r, err = c.send("me@"+dom, []string{rcpt(usr)}, m())
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	for _, ar := range ourAR(got[0]) {
		if strings.Contains(ar, "dmarc=fail") {
			t.Errorf("authenticated submission judged: %q", ar)
		}
	}
}

// Incoming Authentication-Results that carry our authserv-id (any case) are
// deleted, as is a forged quarantine marker; a foreign A-R stays.
func scForgedAR(t *testing.T, w *world) {
	const dom, usr = "forged-ar.example", "forged-ar"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=none"),
		txtRR(dom, "v=spf1 ip4:198.51.100.9 -all"),
	)
	extra := []string{
		"Authentication-Results: " + authservID + "; dmarc=pass header.from=" + dom,
		"Authentication-Results: elsewhere.example; spf=pass smtp.mailfrom=" + dom,
		"Authentication-Results: " + strings.ToUpper(authservID) + ";\r\n\tdkim=pass header.d=" + dom,
		"X-DMARC-Quarantine: yes",
	}
	c := w.session(t, "header", client("203.0.113.73", "other.example"))
	r, err := c.send("x@"+dom, []string{rcpt(usr)}, newMsg("x@"+dom, rcpt(usr), "forged", extra, "Hi.\n"))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	wantAR(t, got[0], "dmarc=fail", "spf=fail") // ourResults: exactly one of ours
	all := headerValues(got[0], "Authentication-Results")
	if len(all) != 2 || !strings.HasPrefix(all[1], "elsewhere.example;") && !strings.HasPrefix(all[0], "elsewhere.example;") {
		t.Errorf("A-R fields after delivery: %q (want ours and elsewhere.example's)", all)
	}
	if v := headerValues(got[0], "X-DMARC-Quarantine"); len(v) != 0 {
		t.Errorf("forged X-DMARC-Quarantine kept: %q", v)
	}
}

// SERVFAIL for the policy record: 451 4.7.5 (the outcome is open and the
// message fails SPF and DKIM). Once DNS answers, the client's retry is
// accepted and the message arrives exactly once. The test client retries
// itself, as a sending MTA would.
func scServfail(t *testing.T, w *world) {
	const dom, usr = "servfail.example", "servfail"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=quarantine"),
		txtRR(dom, "v=spf1 ip4:198.51.100.10 -all"),
	)
	w.dns.SetFault("_dmarc."+dom, dnstest.FaultServFail)
	m := newMsg("x@"+dom, rcpt(usr), "retry me", nil, "Hi.\n")
	c := w.session(t, "header", client("203.0.113.74", "other.example"))
	r, err := c.send("x@"+dom, []string{rcpt(usr)}, m)
	wantReply(t, r, err, "EOM", 451, "4.7.5")
	w.wantNothing(t, usr)

	w.dns.SetFault("_dmarc."+dom, dnstest.FaultNone)
	fixed, tries := time.Now(), 0
	if err := poll(30*time.Second, func() error {
		tries++
		r, err = c.send("x@"+dom, []string{rcpt(usr)}, m)
		if err == nil && r.Code >= 400 && r.Code < 500 {
			return errNotYet // e.g. a briefly cached temporary failure
		}
		return err
	}); err != nil {
		t.Fatalf("retry: %v (last %v)", err, r)
	}
	t.Logf("DNS fixed: accepted after %d tries, %v", tries, time.Since(fixed).Round(time.Millisecond))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, junk)
	wantAR(t, got[0], "dmarc=fail", "dmarc policy.dmarc=quarantine")
}

// The daemon is stopped: Postfix answers 4xx (milter_default_action =
// tempfail from the shipped fragment) and keeps nothing; after a restart the
// client's retry goes through and arrives exactly once. The test client
// retries itself, as a sending MTA's queue would.
func scDaemonStopped(t *testing.T, w *world) {
	const dom, usr = "restart.example", "restart"
	w.dns.MustAdd(
		txtRR("_dmarc."+dom, "v=DMARC1; p=reject"),
		txtRR(dom, "v=spf1 ip4:192.0.2.80 -all"),
	)
	d := w.d["restart"]
	m := newMsg("x@"+dom, rcpt(usr), "while down", nil, "Hi.\n")
	send := func() (reply, error) {
		c, err := dialSMTP(w.pf.smtp["restart"])
		if err != nil {
			return reply{}, err
		}
		defer c.Close()
		if r, err := c.xclient(client("192.0.2.80", "mta.restart.example")); err != nil || r.Code != 250 {
			return r, err
		}
		return c.send("x@"+dom, []string{rcpt(usr)}, m)
	}
	d.stop(t)
	r, err := send()
	if err != nil || r.Code < 400 || r.Code >= 500 {
		t.Fatalf("with the daemon stopped: %v %v; want a 4xx", r, err)
	}
	t.Logf("daemon down: Postfix answered %v", r)
	w.wantNothing(t, usr)
	if l := w.pf.logLines("postfix/restart/smtpd", "connect to Milter service"); len(l) == 0 {
		t.Errorf("postfix log: no milter connection failure logged")
	}

	d.start(t)
	tries := 0
	if err := poll(30*time.Second, func() error {
		tries++
		r, err = send()
		if err == nil && r.Code >= 400 && r.Code < 500 {
			return errNotYet
		}
		return err
	}); err != nil {
		t.Fatalf("retry after restart: %v (last %v)", err, r)
	}
	t.Logf("daemon restarted: accepted after %d tries", tries)
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	wantAR(t, got[0], "dmarc=pass", "spf=pass")
}

// A mailing list re-sends an author's message: the list's envelope passes
// SPF unaligned, the footer breaks the author's DKIM signature. Under
// p=reject with reject_policy = "reject-unless-indirect" (RFC 9989 §7.4:
// do not reject solely on p=reject), the List-Id makes it quarantine (Junk)
// instead; the same message without list headers is rejected.
func scMailingList(t *testing.T, w *world) {
	const author, list, usr = "listauthor.example", "lists.example", "mailing-list"
	key := newEd25519Key(t)
	key.publish(w, "ed", author)
	w.dns.MustAdd(
		txtRR("_dmarc."+author, "v=DMARC1; p=reject"),
		txtRR(author, "v=spf1 ip4:198.51.100.11 -all"),
		txtRR(list, "v=spf1 ip4:192.0.2.90 -all"),
	)
	build := func(listHeaders bool) []byte {
		signed := key.sign(t, newMsg("alice@"+author, "dev@"+list, "[dev] patch", nil, "The patch.\n"), author, "ed")
		head, body, _ := strings.Cut(string(signed), "\r\n\r\n")
		if listHeaders {
			head += "\r\nList-Id: Developers <dev.lists.example>\r\nList-Unsubscribe: <mailto:dev-leave@lists.example>"
		}
		// The list's footer breaks the body hash.
		return []byte(head + "\r\n\r\n" + body + "--\r\ndev mailing list\r\n")
	}
	c := w.session(t, "header", client("192.0.2.90", "mail.lists.example"))
	r, err := c.send("dev-bounces@"+list, []string{rcpt(usr)}, build(false))
	wantReply(t, r, err, "EOM", 550, "5.7.1")

	r, err = c.send("dev-bounces@"+list, []string{rcpt(usr)}, build(true))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, junk)
	wantAR(t, got[0], "dmarc=fail", "dmarc header.from="+author, "dkim=fail", "spf=pass")
}
