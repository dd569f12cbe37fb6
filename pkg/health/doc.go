// Package health checks how a domain publishes its mail authentication:
// its DMARC policy and how receivers find it, its SPF record drawn as the
// tree of its includes and redirects with the DNS lookups they cost, the
// SPF records of the subdomains it uses, and the DKIM keys of the selectors
// it signs with. Every finding about a record names the rule it rests on
// (RFC 7208 §4.6.4, RFC 9989 §4.7, ...), and every check ends in one
// verdict: ok, warn, fail, or error when DNS did not answer.
//
// The checks are pure logic over a Resolver (pkg/cache's satisfies it):
// Check asks DNS, judges, and returns a Report whose JSON form is versioned
// (Version) and documented in docs/health.md, so that it can be stored and
// shown later without asking DNS again.
//
// The SPF analysis is static: it has no client address, so it counts every
// term that evaluation of a non-matching address would reach, which is the
// worst case that the limits of RFC 7208 §4.6.4 are about. Names built from
// macros cannot be resolved without a message and are shown, not followed.
package health
