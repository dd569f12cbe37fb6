package config

import (
	"net/netip"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// LocalPolicy is the local policy of every message, as pkg/policy
// evaluates it.
func (c *Config) LocalPolicy() policy.LocalPolicy {
	return policy.LocalPolicy{
		Mode:          c.Mode,
		OnReject:      c.Actions.RejectPolicy,
		OnTempError:   c.Actions.TempError,
		Indirect:      c.Actions.IndirectFlow,
		AllowFrom:     c.Allowlist.FromDomains,
		AllowNetworks: prefixes(c.Allowlist.Networks),
		IgnorePct:     c.DMARC.IgnorePct,
		Forwarders: policy.TrustedForwarders{
			Networks:    prefixes(c.DMARC.TrustedForwarders),
			DKIMDomains: c.DMARC.TrustedForwarderDKIMDomains,
			ARCSealers:  c.DMARC.TrustedARCSealers,
		},
		From: c.DMARC.From.policy(),
	}
}

// policy is the From handling in pkg/policy's form.
func (f FromHandling) policy() policy.FromPolicy {
	return policy.FromPolicy{
		MultipleFields:  f.MultipleFields,
		MultipleDomains: f.MultipleDomains,
		TooManyDomains:  f.TooManyDomains,
		NoMailbox:       f.NoMailbox,
		Missing:         f.Missing,
		Unparseable:     f.Unparseable,
		MaxDomains:      f.MaxDomains,
	}
}

// fromHandling is the file's form of p.
func fromHandling(p policy.FromPolicy) FromHandling {
	return FromHandling{
		MultipleFields:  p.MultipleFields,
		MultipleDomains: p.MultipleDomains,
		TooManyDomains:  p.TooManyDomains,
		NoMailbox:       p.NoMailbox,
		Missing:         p.Missing,
		Unparseable:     p.Unparseable,
		MaxDomains:      p.MaxDomains,
	}
}

func prefixes(ns []Network) []netip.Prefix {
	out := make([]netip.Prefix, len(ns))
	for i, n := range ns {
		out[i] = n.Prefix
	}
	return out
}
