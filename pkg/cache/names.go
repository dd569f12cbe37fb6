package cache

import (
	"strings"

	"github.com/miekg/dns"
)

// sameName reports whether two domain names are equal, ignoring ASCII case
// and a trailing dot (RFC 4343). miekg/dns prints names in presentation
// form, escaping special bytes ("a\ b", "\200"), while our callers give raw
// names, so names that differ as text are compared in wire form.
func sameName(a, b string) bool {
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	if strings.EqualFold(a, b) {
		return true
	}
	if !strings.ContainsRune(a, '\\') && !strings.ContainsRune(b, '\\') {
		return false
	}
	wa, okA := wire(a)
	wb, okB := wire(b)
	return okA && okB && strings.EqualFold(string(wa), string(wb))
}

// validName reports whether name (without the trailing dot) can be sent as
// a query: RFC 1035 §2.3.4 limits a label to 63 octets and a name to 255 on
// the wire, which is 253 characters of text; RFC 7208 §4.8 relies on that.
func validName(name string) bool {
	if name == "" {
		return false
	}
	_, ok := dns.IsDomainName(name)
	return ok && len(name) <= 253
}

func wire(name string) ([]byte, bool) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return nil, false
	}
	return buf[:n], true
}

// txtString returns the raw octets of a TXT character-string that miekg/dns
// gives in presentation form: "\DDD" is the octet DDD and "\X" is X
// (RFC 1035 §5.1). RFC 7208 §3.3 and RFC 6376 §3.6.2.2 work on the octets.
func txtString(s string) string {
	if !strings.ContainsRune(s, '\\') {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
