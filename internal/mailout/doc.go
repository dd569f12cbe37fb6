// Package mailout sends DMARC aggregate reports by email: it finds where a
// report may go, signs the report message with DKIM and hands it to an SMTP
// relay.
//
// The three parts are independent and the reporter calls them in turn:
//
//   - Destinations turns the rua tag of the policy record, as it stands at
//     send time, into a list of mail addresses, each usable or skipped with a
//     typed Reason. Addresses outside the policy domain's Organizational
//     Domain are used only when their host publishes the authorization record
//     of RFC 9990 §4 (https://datatracker.ietf.org/doc/html/rfc9990#section-4).
//   - Signer adds a DKIM-Signature (go-msgauth's dkim.Sign) with a key of the
//     From domain, so that the report passes DMARC at its receiver, as RFC
//     9990 §3.5.2 requires.
//   - Client sends one message to a relay (smtp:// with STARTTLS when
//     offered, or smtps://; AUTH PLAIN over TLS only) and returns one typed
//     RecipientResult per recipient: accepted, temporary or permanent, with
//     the relay's reply.
//
// Nothing here schedules, stores or retries: the reporter decides what to
// do with each result.
package mailout
