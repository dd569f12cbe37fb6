package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// testBed checks the test bed with the stub milter: what Postfix 3.7 sends
// to a milter behind XCLIENT, what it does with the milter's replies and
// header edits, and that Dovecot's Sieve files the A-R route into Junk.
// When these fail, the daemon scenarios cannot be trusted either.
func testBed(t *testing.T, w *world) {
	stubMsg := func(action, from string, extra ...string) []byte {
		h := append([]string{"From: <" + from + ">", "To: <x@" + rcptDomain + ">", "Subject: stub " + action,
			"X-Stub-Action: " + action}, extra...)
		return msg(h, "stub body\n")
	}

	t.Run("xclient-macros-two-messages", func(t *testing.T) {
		rcpt := "stub-macros@" + rcptDomain
		c := w.session(t, "stub", map[string]string{
			"ADDR": "192.0.2.1", "NAME": "client.stub.example", "HELO": "helo.stub.example"})
		for _, from := range []string{"a@one.stub.example", "b@two.stub.example"} {
			if r, err := c.send(from, []string{rcpt}, stubMsg("accept", from)); err != nil || r.Code != 250 {
				t.Fatalf("%s: %v %v", from, r, err)
			}
		}
		got := w.waitMail(t, "stub-macros", 2)
		if len(got[inbox]) != 2 {
			t.Fatalf("want 2 in INBOX, got %v", got)
		}
		// Message 1 saw the connect event; message 2 got a fresh go-milter
		// backend (libraries.md §1.4) and sees only the MAIL-stage macros,
		// which must therefore carry the client (asked for with a symbol list). Postfix
		// has no macro for the HELO name (smtpd_milter.c knows no "s"), and
		// the queue id "i" is still empty at MAIL FROM (the queue file is
		// opened at the first accepted RCPT).
		want := []string{
			`connect="192.0.2.1" helo="helo.stub.example" client_addr="192.0.2.1" client_name="client.stub.example" auth_authen="" i_at_mail="" i_at_eom=true`,
			`connect="" helo="" client_addr="192.0.2.1" client_name="client.stub.example" auth_authen="" i_at_mail="" i_at_eom=true`,
		}
		// The Maildir order is not the sending order (file names carry
		// microseconds without padding): pair each message with its sender.
		for _, m := range got[inbox] {
			i := 0
			if from := headerValues(m, "From"); len(from) == 1 && strings.Contains(from[0], "two.stub.example") {
				i = 1
			}
			seen := headerValues(m, "X-Stub-Seen")
			if len(seen) != 1 || seen[0] != want[i] {
				t.Errorf("message %d: X-Stub-Seen %q, want %q", i+1, seen, want[i])
			}
		}
	})

	t.Run("xclient-login-ipv6", func(t *testing.T) {
		rcpt := "stub-login@" + rcptDomain
		c := w.session(t, "stub", map[string]string{
			"ADDR": "IPV6:2001:db8::25", "NAME": "[UNAVAILABLE]", "HELO": "v6.stub.example", "LOGIN": "bob"})
		if r, err := c.send("bob@stub.example", []string{rcpt}, stubMsg("accept", "bob@stub.example")); err != nil || r.Code != 250 {
			t.Fatalf("%v %v", r, err)
		}
		got := w.waitMail(t, "stub-login", 1)
		seen := headerValues(got[inbox][0], "X-Stub-Seen")
		// {client_addr} is Postfix's RFC 5321 address literal form: "IPv6:" prefix.
		want := `connect="2001:db8::25" helo="v6.stub.example" client_addr="IPv6:2001:db8::25" client_name="unknown" auth_authen="bob" i_at_mail="" i_at_eom=true`
		if len(seen) != 1 || seen[0] != want {
			t.Errorf("X-Stub-Seen %q, want %q", seen, want)
		}
	})

	t.Run("reject-and-tempfail-at-eom", func(t *testing.T) {
		rcpt := "stub-reject@" + rcptDomain
		c := w.session(t, "stub", map[string]string{"ADDR": "192.0.2.2", "HELO": "r.stub.example"})
		r, err := c.send("r@stub.example", []string{rcpt}, stubMsg("reject", "r@stub.example"))
		if err != nil || r.Stage != "EOM" || r.Code != 550 || r.Text != "5.7.1 stub says no" {
			t.Errorf("reject: %v %v", r, err)
		}
		r, err = c.send("r@stub.example", []string{rcpt}, stubMsg("tempfail", "r@stub.example"))
		if err != nil || r.Stage != "EOM" || r.Code != 451 || r.Text != "4.7.5 stub says later" {
			t.Errorf("tempfail: %v %v", r, err)
		}
		if q := w.pf.queue(t, rcpt); len(q) != 0 {
			t.Errorf("queued: %+v", q)
		}
		if got := w.dc.delivered("stub-reject"); count(got) != 0 {
			t.Errorf("delivered: %v", got)
		}
		if l := w.pf.logLines("milter-reject: END-OF-MESSAGE", "5.7.1 stub says no"); len(l) != 1 {
			t.Errorf("postfix log: %q", l)
		}
	})

	t.Run("quarantine-is-hold-queue", func(t *testing.T) {
		rcpt := "stub-hold@" + rcptDomain
		c := w.session(t, "stub", map[string]string{"ADDR": "192.0.2.3", "HELO": "h.stub.example"})
		if r, err := c.send("h@stub.example", []string{rcpt}, stubMsg("hold", "h@stub.example")); err != nil || r.Code != 250 {
			t.Fatalf("%v %v", r, err)
		}
		q := w.pf.queue(t, rcpt)
		if len(q) != 1 || q[0].QueueName != "hold" {
			t.Fatalf("postqueue -j: %+v", q)
		}
		out, err := exec.Command("/usr/sbin/postcat", "-c", w.pf.conf, "-hq", q[0].QueueID).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "X-Stub-Seen:") {
			t.Errorf("postcat -hq %s: %v\n%s", q[0].QueueID, err, out)
		}
		if l := w.pf.logLines(q[0].QueueID, "milter-hold: END-OF-MESSAGE"); len(l) != 1 {
			t.Errorf("postfix log: %q", l)
		}
		run(t, "/usr/sbin/postsuper", "-c", w.pf.conf, "-d", q[0].QueueID, "hold")
		if got := w.dc.delivered("stub-hold"); count(got) != 0 {
			t.Errorf("held mail was delivered: %v", got)
		}
	})

	t.Run("sieve-ar-route-to-junk", func(t *testing.T) {
		rcpt := "stub-junk@" + rcptDomain
		c := w.session(t, "stub", map[string]string{"ADDR": "192.0.2.4", "HELO": "j.stub.example"})
		for _, a := range []string{"junk", "accept"} {
			if r, err := c.send("j@stub.example", []string{rcpt}, stubMsg(a, "j@stub.example")); err != nil || r.Code != 250 {
				t.Fatalf("%s: %v %v", a, r, err)
			}
		}
		got := w.waitMail(t, "stub-junk", 2)
		if len(got[junk]) != 1 || len(got[inbox]) != 1 {
			t.Fatalf("want one in Junk and one in INBOX, got %d/%d", len(got[junk]), len(got[inbox]))
		}
		if ar := ourAR(got[junk][0]); len(ar) != 1 || !strings.Contains(ar[0], "policy.dmarc=quarantine") {
			t.Errorf("Junk message A-R: %q", ar)
		}
	})

	t.Run("unix-socket-relative-to-queue-dir", func(t *testing.T) { testBedUnix(t, w) })

	t.Run("milter-down-tempfails", func(t *testing.T) { testBedDeadMilter(t, w) })

	t.Run("change-header-index-is-one-based", func(t *testing.T) {
		rcpt := "stub-index@" + rcptDomain
		c := w.session(t, "stub", map[string]string{"ADDR": "192.0.2.5", "HELO": "i.stub.example"})
		m := stubMsg("delete-second-ar", "i@stub.example",
			"Authentication-Results: first.example; none", "Authentication-Results: second.example; none",
			"Authentication-Results: third.example; none")
		if r, err := c.send("i@stub.example", []string{rcpt}, m); err != nil || r.Code != 250 {
			t.Fatalf("%v %v", r, err)
		}
		got := w.waitMail(t, "stub-index", 1)
		ars := headerValues(got[inbox][0], "Authentication-Results")
		want := []string{"first.example; none", "third.example; none"}
		if strings.Join(ars, "|") != strings.Join(want, "|") {
			t.Errorf("A-R after ChangeHeader(2, ...): %q, want %q", ars, want)
		}
	})
}

// testBedUnix checks that a relative unix: milter path is resolved against
// Postfix's queue directory (deploy/postfix/master.cf.md relies on it).
func testBedUnix(t *testing.T, w *world) {
	rcpt := "stub-unix@" + rcptDomain
	c := w.session(t, "stub-unix", map[string]string{"ADDR": "192.0.2.6", "HELO": "u.stub.example"})
	m := msg([]string{"From: <u@stub.example>", "Subject: unix socket"}, "hi\n")
	if r, err := c.send("u@stub.example", []string{rcpt}, m); err != nil || r.Code != 250 {
		t.Fatalf("%v %v", r, err)
	}
	got := w.waitMail(t, "stub-unix", 1)
	if seen := headerValues(got[inbox][0], "X-Stub-Seen"); len(seen) != 1 || !strings.Contains(seen[0], `client_addr="192.0.2.6"`) {
		t.Errorf("X-Stub-Seen: %q", seen)
	}
}

// testBedDeadMilter checks what the shipped milter_default_action = tempfail
// does when nothing listens at the milter address.
func testBedDeadMilter(t *testing.T, w *world) {
	rcpt := "stub-dead@" + rcptDomain
	c := w.session(t, "dead", map[string]string{"ADDR": "192.0.2.7", "HELO": "d.stub.example"})
	m := msg([]string{"From: <d@stub.example>", "Subject: dead milter"}, "hi\n")
	r, err := c.send("d@stub.example", []string{rcpt}, m)
	if err != nil || r.Code != 451 || !strings.HasPrefix(r.Text, "4.7.1") {
		t.Fatalf("want 451 4.7.1, got %v %v", r, err)
	}
	t.Logf("milter down: %v", r)
	if q := w.pf.queue(t, rcpt); len(q) != 0 {
		t.Errorf("queued: %+v", q)
	}
	if l := w.pf.logLines("postfix/dead/smtpd", "connect to Milter service", "Connection refused"); len(l) == 0 {
		t.Errorf("no milter connect failure logged")
	}
}
