package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// intakeReport is an aggregate report for intake-owner.example (the intake
// daemon's [intake] domains) of yesterday, UTC: 5 messages from 192.0.2.77.
func intakeReport(id string) string {
	end := time.Now().UTC().Truncate(24 * time.Hour)
	begin := end.Add(-24 * time.Hour)
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">
  <version>1.0</version>
  <report_metadata>
    <org_name>reporter-intake.example</org_name>
    <email>noreply-dmarc@reporter-intake.example</email>
    <report_id>%s</report_id>
    <date_range><begin>%d</begin><end>%d</end></date_range>
  </report_metadata>
  <policy_published><domain>intake-owner.example</domain><p>reject</p></policy_published>
  <record>
    <row><source_ip>192.0.2.77</source_ip><count>5</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>intake-owner.example</header_from></identifiers>
    <auth_results><dkim><domain>intake-owner.example</domain><selector>s1</selector><result>pass</result></dkim>
      <spf><domain>intake-owner.example</domain><result>pass</result></spf></auth_results>
  </record>
</feedback>
`, id, begin.Unix(), end.Unix())
}

// scIntake: a report mailed to the intake mailbox through Postfix is
// captured by the milter and stored, and still delivered to the mailbox; a
// forged report (failing DMARC) is delivered but refused (dmarc_fail).
func scIntake(t *testing.T, w *world) {
	const reporter, forger, usr = "reporter-intake.example", "forger-intake.example", "dmarc-reports"
	key := newEd25519Key(t)
	key.publish(w, "r1", reporter)
	w.dns.MustAdd(
		txtRR("_dmarc."+reporter, "v=DMARC1; p=reject"),
		txtRR(reporter, "v=spf1 ip4:192.0.2.88 -all"),
		txtRR("_dmarc."+forger, "v=DMARC1; p=none"),
		txtRR(forger, "v=spf1 -all"),
	)
	xmlHeaders := []string{"MIME-Version: 1.0", "Content-Type: text/xml; charset=utf-8"}
	m := key.sign(t, newMsg("noreply-dmarc@"+reporter, rcpt(usr),
		"Report Domain: intake-owner.example Submitter: "+reporter+" Report-ID: intake-1", xmlHeaders, intakeReport("intake-1")), reporter, "r1")
	c := w.session(t, "intake", client("192.0.2.88", "mta.reporter-intake.example"))
	r, err := c.send("bounces@"+reporter, []string{rcpt(usr)}, m)
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	forged := newMsg("noreply-dmarc@"+forger, rcpt(usr), "Report Domain: intake-owner.example", xmlHeaders, intakeReport("forged-1"))
	r, err = c.send("bounces@"+forger, []string{rcpt(usr)}, forged)
	wantReply(t, r, err, "EOM", 250, "2.0.0")

	for _, m := range w.wantOnly(t, usr, 2, inbox) {
		if len(headerValues(m, "Subject")) != 1 || len(ourAR(m)) != 1 {
			t.Errorf("delivered report mail without its Subject or our Authentication-Results:\n%s", m)
		}
	}

	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(w.dir, "state-intake", "dmarc-milter.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = poll(20*time.Second, func() error {
		reports, rows, msgs, err := st.ReceivedCount(context.Background(), "intake-owner.example")
		if err != nil {
			return err
		}
		ref, err := st.Refusals(context.Background(), time.Now().Add(-48*time.Hour), time.Now().Add(48*time.Hour))
		if err != nil {
			return err
		}
		if reports != 1 || rows != 1 || msgs != 5 || ref["dmarc_fail"] != 1 {
			return fmt.Errorf("%w: %d reports, %d rows, %d messages, refusals %v", errNotYet, reports, rows, msgs, ref)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("store: %v", err)
	}
}
