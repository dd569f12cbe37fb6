// Package reporter makes and sends DMARC aggregate reports (RFC 9990,
// https://datatracker.ietf.org/doc/html/rfc9990): the daemon's side of the
// "Reporting" in DMARC.
//
// Recorder takes each message's decision at end of message (the milter's
// one call, milter.Recorder), turns the verdict's typed report rows
// (policy.Verdict.ReportRows) and its outcome into store rows and counters,
// adds equal rows up in a bounded queue, and writes the queue to the store
// (internal/store) every flush interval, off the reply path: mail never
// waits for the store, and what a failing store cannot take is counted as
// dropped, never silently lost.
//
// Sender builds and sends the reports of closed periods: one per policy
// domain, policy configuration and UTC period, claimed in the store so that
// exactly one sender (of several processes or hosts) handles each, to the
// rua destinations of the policy record as it stands at send time
// (internal/mailout verifies external ones), DKIM-signed, marked per
// destination after the relay accepted it, retried with backoff, suppressed
// after a permanent refusal. BuildFile and Message are the pure steps the
// `report build` preview shares with it.
package reporter
