package milter

import "net/netip"

// Envelope is what the MTA told us about a message before its content.
type Envelope struct {
	ClientIP   netip.Addr // the SMTP client
	ClientName string     // its verified PTR name, or "unknown"/"[ip]"
	Helo       string     // HELO/EHLO argument
	MailFrom   string     // reverse-path without angle brackets; "" for <>
	AuthUser   string     // SASL login name ({auth_authen}); "" if none
	MTAHost    string     // the MTA's host name (macro j)
	Rcpts      []string   // envelope recipients, for the report rows (at most maxRcpts)
}
