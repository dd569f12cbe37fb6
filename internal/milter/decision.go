package milter

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/milterproto"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Bypass says why a message was not evaluated or not enforced.
type Bypass string

// The bypasses.
const (
	BypassNone          Bypass = ""
	BypassTrusted       Bypass = "trusted-network"   // not evaluated, nothing added or deleted
	BypassAuthenticated Bypass = "authenticated"     // not evaluated; forged A-R deleted
	BypassAllowNetwork  Bypass = "allowlist-network" // evaluated and marked, never enforced
	BypassAllowFrom     Bypass = "allowlist-from"    // evaluated and marked, failing mail delivered
)

// HeaderRef names one existing header field: the Index-th (1-based) field
// called Name.
type HeaderRef struct {
	Name  string
	Index int
}

// Field is a header field to add.
type Field struct {
	Name, Value string
}

// Decision is what happens to one message, and everything the verdict log
// line, the metrics and the evaluate subcommand report about it.
type Decision struct {
	// Action is what was done: accept, quarantine, reject or tempfail.
	Action policy.Action
	// Would is what enforce mode would have done when it differs (an
	// exempted message: monitor mode, allowlisted network); "" otherwise.
	Would policy.Action
	// Bypass names a bypass that applied.
	Bypass Bypass
	// Reply is the SMTP reply for reject and tempfail.
	Reply string
	// Discard: the message is a report captured for the intake and stored,
	// and [intake] discard is set: the MTA drops it (capture.go).
	Discard bool
	// Hold asks the MTA to hold the message (Postfix: the hold queue).
	Hold       bool
	HoldReason string
	// Delete, Insert (each at the top) and Add (at the end) are the header
	// changes, applied in this order.
	Delete []HeaderRef
	Insert []Field
	Add    []Field
	// AuthservID is the id our Authentication-Results carries.
	AuthservID string
	// AuthResults is the value of our Authentication-Results field (also
	// computed for rejected mail, for the evaluate subcommand).
	AuthResults string
	// Env is the envelope.
	Env Envelope
	// Verdict is the DMARC evaluation (nil when bypassed or on error).
	Verdict *policy.Verdict
	// HeloSPF is the HELO check; nil when it was not made.
	HeloSPF *verify.SPFResult
	// Reason explains the decision in words.
	Reason string
	// TempErrCause names what made the result temperror, for the metrics.
	TempErrCause policy.TempErrorCause
	// Err is set when the on_error action applied.
	Err error
	// QueueID is the MTA's queue id; Duration runs from MAIL FROM to the
	// decision.
	QueueID  string
	Duration time.Duration
	// Trace lists each step, for the evaluate subcommand.
	Trace []string
}

// response is the milter reply for the decision.
func (d *Decision) response() milterproto.Response {
	switch d.Action {
	case policy.ActionReject, policy.ActionTempFail:
		return milterproto.ReplyCode(d.Reply)
	}
	if d.Discard {
		return milterproto.Discard
	}
	return milterproto.Accept
}

// decisiveDomain is the Author Domain that decided the action, for the
// reply text.
func decisiveDomain(v *policy.Verdict) string {
	switch {
	case v.Decisive >= 0 && v.Decisive < len(v.Domains):
		return v.Domains[v.Decisive].HeaderFrom
	case len(v.Domains) > 0:
		return v.Domains[0].HeaderFrom
	}
	return "this message"
}

// verdictReason explains the verdict in one line.
func verdictReason(v *policy.Verdict) string {
	var parts []string
	if v.FromProblem != policy.FromOK {
		parts = append(parts, "From: "+string(v.FromProblem))
	}
	for _, dv := range v.Domains {
		for _, o := range dv.Overrides {
			parts = append(parts, string(o.Reason)+": "+o.Comment)
		}
		if dv.Err != nil && (dv.Result == policy.ResultTempError || dv.Result == policy.ResultPermError) {
			parts = append(parts, dv.Err.Error())
		}
	}
	if v.Err != nil {
		parts = append(parts, v.Err.Error())
	}
	return strings.Join(parts, "; ")
}

// expandReply fills in the domain and escapes '%' (Postfix strips single
// '%' characters from milter replies).
func expandReply(tmpl, domain string) string {
	return escapeReply(strings.ReplaceAll(tmpl, "{domain}", sanitizeText(domain)))
}

func escapeReply(s string) string {
	return strings.ReplaceAll(s, "%", "%%")
}

// sanitizeText keeps printable ASCII only (SMTP replies, hold reasons).
func sanitizeText(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// LogAttrs are the verdict log line's attributes, with stable keys.
func (d *Decision) LogAttrs() []slog.Attr {
	spf, dmarc, pol, disp, arc := "", "", "", "", ""
	var dkims []string
	var hfrom []string
	if v := d.Verdict; v != nil {
		spf, dmarc, arc = string(v.SPF.Result), string(v.Result), string(verify.ChainNone)
		if v.ARC != nil {
			arc = string(v.ARC.CV)
		}
		for _, s := range v.DKIM {
			dkims = append(dkims, string(s.Result))
		}
		for _, dv := range v.Domains {
			hfrom = append(hfrom, dv.HeaderFrom)
			if pol == "" {
				pol, disp = string(dv.Requested), string(dv.Disposition)
			}
		}
	}
	action := string(d.Action)
	if d.Would != "" {
		action += " (would " + string(d.Would) + ")"
	}
	return []slog.Attr{
		slog.String("queue_id", d.QueueID),
		slog.String("client_ip", addrString(d.Env)),
		slog.String("helo", d.Env.Helo),
		slog.String("mail_from_domain", domainOf(d.Env.MailFrom)),
		slog.String("header_from_domain", strings.Join(hfrom, ",")),
		slog.String("spf", spf),
		slog.String("dkim", strings.Join(dkims, ",")),
		slog.String("arc", arc),
		slog.String("dmarc", dmarc),
		slog.String("policy", pol),
		slog.String("disposition", disp),
		slog.String("action", action),
		slog.String("bypass", string(d.Bypass)),
		slog.String("reason", d.Reason),
		slog.Int64("duration_ms", d.Duration.Milliseconds()),
	}
}

func addrString(env Envelope) string {
	if env.ClientIP.IsValid() {
		return env.ClientIP.String()
	}
	return ""
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// String is a short summary for the evaluate subcommand.
func (d *Decision) String() string {
	s := fmt.Sprintf("action=%s", d.Action)
	if d.Would != "" {
		s += fmt.Sprintf(" would=%s", d.Would)
	}
	if d.Reply != "" {
		s += fmt.Sprintf(" reply=%q", strings.ReplaceAll(d.Reply, "%%", "%"))
	}
	if d.Hold {
		s += " hold"
	}
	return s
}
