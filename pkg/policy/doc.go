// Package policy is dmarc-milter's DMARC engine: it parses DMARC Policy
// Records, finds the record that applies to a message, checks identifier
// alignment and decides what to do with the message.
//
// DMARC (RFC 9989, which obsoletes RFC 7489) lets the owner of the domain in
// a message's From: field (the Author Domain) publish, at _dmarc.<domain>, a
// TXT record asking receivers what to do with mail that neither SPF nor DKIM
// authenticates for that domain. An authentication counts only when its
// domain is "aligned" with the Author Domain: identical (strict) or under the
// same Organizational Domain (relaxed). The Organizational Domain is found by
// the DNS Tree Walk of RFC 9989 §4.10 (the default) or by the Public Suffix
// List of RFC 7489 §3.2 (Options.Method = MethodPSL).
//
// A message goes through the package in four steps, matching the milter's
// phases:
//
//  1. ParseFrom (at end of headers, or at each From: header) parses the From
//     field values strictly; the From field is a security boundary, so
//     irregular From fields have explicit outcomes (LocalPolicy.From).
//  2. Discover (early, at the From: header, in the background) finds the
//     policy for each Author Domain through a Resolver (pkg/cache).
//  3. Prepare (at end of message) completes the DNS work: discoveries not yet
//     done, and the Organizational Domains of the SPF and DKIM identifiers
//     relaxed alignment needs.
//  4. Evaluate (pure, no I/O) computes the Verdict: the DMARC result, the
//     disposition and action actually applied (monitor mode and the
//     allowlisted network are inputs, so a delivered message never says
//     reject; what enforce mode would have done is kept apart), the typed
//     reasons for any override (Reason, mapped onto RFC 9990's OverrideType
//     by Reason.OverrideType), the typed cause of a temperror, and every
//     field an RFC 9990 aggregate report row needs (Verdict.ReportRows).
//
// Parse and Evaluate are pure and table-tested; Discover, OrgDomain and
// Prepare are the only functions that do I/O, all through the Resolver
// interface. The package uses no logger and no metrics of ours.
package policy
