package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// ErrorAction is the answer given when the milter itself fails.
type ErrorAction string

// The error actions.
const (
	ErrorTempFail ErrorAction = "tempfail"
	ErrorAccept   ErrorAction = "accept"
)

// QuarantineMethod is how a quarantine disposition is applied.
type QuarantineMethod string

// The quarantine methods.
const (
	QuarantineHeader QuarantineMethod = "header" // deliver, marked for Sieve
	QuarantineHold   QuarantineMethod = "hold"   // Postfix hold queue
	QuarantineBoth   QuarantineMethod = "both"
)

// Network is an IP network given in the file as a CIDR prefix or as a single
// address (a /32 or /128).
type Network struct {
	netip.Prefix
}

// UnmarshalText parses "192.0.2.0/24", "2001:db8::/32" or "192.0.2.1".
func (n *Network) UnmarshalText(b []byte) error {
	p, err := ParseNetwork(string(b))
	if err != nil {
		return err
	}
	*n = p
	return nil
}

// MarshalText writes the prefix in CIDR form.
func (n Network) MarshalText() ([]byte, error) {
	return []byte(n.Prefix.String()), nil
}

// ParseNetwork parses a CIDR prefix or a single address.
func ParseNetwork(s string) (Network, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Network{}, fmt.Errorf("invalid network %q: %v", s, err)
		}
		return Network{Prefix: p.Masked()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return Network{}, fmt.Errorf("invalid network %q: not an address or CIDR prefix", s)
	}
	return Network{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
}

// Networks is a list of networks that can answer membership questions.
type Networks []Network

// Contains reports whether addr (IPv4-mapped IPv6 addresses included) is in
// one of the networks.
func (ns Networks) Contains(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, n := range ns {
		if n.Prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// mustNetworks builds a list of networks from constants.
func mustNetworks(ss ...string) []Network {
	out := make([]Network, 0, len(ss))
	for _, s := range ss {
		n, err := ParseNetwork(s)
		if err != nil {
			panic(err)
		}
		out = append(out, n)
	}
	return out
}
