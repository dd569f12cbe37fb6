package cache

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// exchange sends one question upstream, trying up to Attempts times across
// the nameservers, over UDP with EDNS0 and over TCP when the answer is
// truncated. It returns a validated NOERROR or NXDOMAIN answer, or a bare
// temporary *net.DNSError.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, *net.DNSError) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype) // always an absolute name
	// RFC 6891: advertise a buffer that avoids fragmentation (1232 bytes, the
	// DNS flag day 2020 value), and set DO so the upstream reports AD.
	q.SetEdns0(r.cfg.UDPSize, true)
	var last error
	var server string
	for attempt := 0; attempt < r.cfg.Attempts; attempt++ {
		if ctx.Err() != nil {
			break
		}
		server = r.cfg.Nameservers[attempt%len(r.cfg.Nameservers)]
		in, err := r.exchangeOne(ctx, q, server)
		if err == nil {
			return in, nil
		}
		last = err
	}
	if last == nil {
		last = ctx.Err()
	}
	var ne net.Error
	timeout := errors.As(last, &ne) && ne.Timeout() || errors.Is(last, context.DeadlineExceeded)
	return nil, &net.DNSError{Err: last.Error(), Name: name, Server: server, IsTimeout: timeout, IsTemporary: true}
}

// exchangeOne asks one server once (UDP, then TCP on truncation) and
// validates the answer.
func (r *Resolver) exchangeOne(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: r.cfg.Timeout, UDPSize: r.cfg.UDPSize}
	r.upstream.Add(1)
	in, _, err := c.ExchangeContext(ctx, q, server)
	if err == nil && in.Truncated {
		// RFC 7766 §6.2.1: a truncated UDP answer is retried over TCP.
		c.Net = "tcp"
		r.upstream.Add(1)
		in, _, err = c.ExchangeContext(ctx, q, server)
	}
	if err != nil {
		return nil, err
	}
	if err := validate(q, in); err != nil {
		return nil, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return in, nil
	default:
		// SERVFAIL, REFUSED, FORMERR, NOTIMP...: this server could not
		// answer; another may.
		return nil, fmt.Errorf("server answered %s", dns.RcodeToString[in.Rcode])
	}
}

// validate rejects an answer that does not answer our question. The ID is
// checked by the dns client.
func validate(q, in *dns.Msg) error {
	if !in.Response {
		return errors.New("answer is not a response")
	}
	if in.Truncated {
		return errors.New("answer truncated over TCP")
	}
	if len(in.Question) != 1 {
		return fmt.Errorf("answer carries %d questions", len(in.Question))
	}
	a, b := in.Question[0], q.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !sameName(a.Name, b.Name) {
		return fmt.Errorf("answer is for another question (%s %s)", a.Name, dns.TypeToString[a.Qtype])
	}
	return nil
}
