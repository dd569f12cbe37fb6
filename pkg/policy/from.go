package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// FromProblem says why a message has no single usable Author Domain. The
// empty value means every From field parsed and held at least one mailbox.
type FromProblem string

// The From problems; LocalPolicy.From maps each to an outcome.
const (
	FromOK          FromProblem = ""
	FromMissing     FromProblem = "missing"     // no From field at all
	FromNoMailbox   FromProblem = "no-mailbox"  // From fields without any mailbox (an empty group)
	FromUnparseable FromProblem = "unparseable" // a From field that is not RFC 5322 syntax
)

// Limits of ParseFrom: input over them is unparseable.
const (
	MaxFromFields    = 16        // From fields per message
	MaxFromFieldLen  = 16 * 1024 // octets per field value (folded lines included)
	MaxFromMailboxes = 64        // mailboxes over all fields
	maxCommentDepth  = 32
)

// ErrFromSyntax is wrapped by every From parse error.
var ErrFromSyntax = errors.New("policy: From field syntax")

// Mailbox is one author mailbox of a From field.
type Mailbox struct {
	// Field is the index of the From field it came from.
	Field int
	// DisplayName is the phrase before the angle address, its words joined
	// by one space, quoted strings unquoted. RFC 2047 encoded words are left
	// encoded: they are display text and never an address.
	DisplayName string
	// Group is the name of the RFC 6854 group holding the mailbox, if any.
	Group string
	// LocalPart is the local part without quotes or escapes.
	LocalPart string
	// RawDomain is the domain as written (comments and folding removed).
	RawDomain string
	// Domain is RawDomain as a lowercase A-label without trailing dot.
	Domain string
}

// Author is what the From fields of a message say about its author(s).
type Author struct {
	// Fields is the number of From fields given.
	Fields int
	// Mailboxes are all mailboxes of all fields, in order.
	Mailboxes []Mailbox
	// Domains are the distinct Author Domains, in order of appearance.
	Domains []string
	// Problem is FromOK, or why there is no usable Author Domain.
	Problem FromProblem
	// Err details an unparseable field; it wraps ErrFromSyntax.
	Err error
}

// ParseFrom parses the values of all the From header fields of a message
// (each value as it follows "From:", folding included) strictly, by the
// grammar of RFC 5322 §3.4 and §3.6.2 with its obsolete syntax (§4.4), the
// group syntax RFC 6854 allows in From, and UTF-8 (RFC 6532). It never
// guesses: a field that does not parse makes the whole result
// FromUnparseable, and a domain is returned only from a mailbox of the
// input, never from a display name, comment, quoted local part or route.
func ParseFrom(fields []string) Author {
	a := Author{Fields: len(fields)}
	if len(fields) == 0 {
		a.Problem = FromMissing // RFC 9989 §5.3.1: zero domains → DMARC validation is not possible
		return a
	}
	if len(fields) > MaxFromFields {
		return a.fail(fmt.Errorf("%w: %d From fields (limit %d)", ErrFromSyntax, len(fields), MaxFromFields))
	}
	for i, f := range fields {
		p := fromParser{field: i, room: MaxFromMailboxes - len(a.Mailboxes)}
		mbs, err := p.parse(f)
		if err != nil {
			return a.fail(fmt.Errorf("%w: field %d: %v", ErrFromSyntax, i+1, err))
		}
		a.Mailboxes = append(a.Mailboxes, mbs...)
	}
	if len(a.Mailboxes) == 0 {
		a.Problem = FromNoMailbox
		return a
	}
	for _, m := range a.Mailboxes {
		if !contains(a.Domains, m.Domain) {
			a.Domains = append(a.Domains, m.Domain)
		}
	}
	return a
}

func (a Author) fail(err error) Author {
	a.Mailboxes, a.Domains = nil, nil
	a.Problem, a.Err = FromUnparseable, err
	return a
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fromParser is a recursive-descent parser over one unfolded field value.
type fromParser struct {
	s     string
	i     int
	field int
	room  int // mailboxes still allowed
	group string
	out   []Mailbox
	// sawGroup is set once a group was parsed, so that an empty group is
	// told apart from an empty field.
	sawGroup bool
}

type tokKind int

const (
	tokAtom tokKind = iota
	tokQuoted
	tokDot
)

type token struct {
	kind tokKind
	text string // atom text, or quoted-string content without escapes
}

func (p *fromParser) parse(field string) ([]Mailbox, error) {
	if len(field) > MaxFromFieldLen {
		return nil, fmt.Errorf("field longer than %d octets", MaxFromFieldLen)
	}
	// RFC 6532 §3.1 allows only valid UTF-8, but broken mailers still put
	// raw 8-bit (Latin-1...) display names and comments in From. Those
	// octets never reach a domain: they are refused in the addr-spec
	// (addrSpecAfterLocal), and tolerated in the display text, which DMARC
	// does not use.
	s, err := unfold(strings.TrimRight(field, "\r\n"))
	if err != nil {
		return nil, err
	}
	p.s = s
	if err := p.addressList(); err != nil {
		return nil, fmt.Errorf("%v at offset %d", err, p.i)
	}
	if len(p.out) == 0 && !p.sawGroup {
		return nil, errors.New("no address") // RFC 5322 §3.6.2: From holds at least one mailbox (RFC 6854: or a group)
	}
	return p.out, nil
}

// unfold removes the CRLF (or bare LF, as milters may pass) of each folding
// point: RFC 5322 §2.2.3, a line break is allowed only before white space.
func unfold(s string) (string, error) {
	if !strings.ContainsAny(s, "\r\n") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
			continue
		}
		if c == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		if i+1 >= len(s) || (s[i+1] != ' ' && s[i+1] != '\t') {
			return "", errors.New("line break not followed by white space")
		}
	}
	return b.String(), nil
}

// addressList parses address-list / obs-addr-list (RFC 5322 §3.4, §4.4):
// addresses separated by commas, empty list elements allowed (obsolete).
func (p *fromParser) addressList() error {
	for {
		if err := p.cfws(); err != nil {
			return err
		}
		if p.eof() {
			return nil
		}
		if p.peek() == ',' {
			p.i++ // RFC 5322 §4.4 obs-addr-list: empty elements
			continue
		}
		if err := p.address(); err != nil {
			return err
		}
		if err := p.cfws(); err != nil {
			return err
		}
		if p.eof() {
			return nil
		}
		if p.peek() != ',' {
			return fmt.Errorf("unexpected %q after an address", p.peek())
		}
		p.i++
	}
}

// address parses one mailbox or group (RFC 5322 §3.4 address). It reads
// the leading words first and decides by the character after them.
func (p *fromParser) address() error {
	toks, err := p.words()
	if err != nil {
		return err
	}
	if p.peek() == ':' && p.group == "" {
		name, err := phrase(toks, false)
		if err != nil {
			return err
		}
		return p.groupBody(name)
	}
	return p.mailboxAfterWords(toks)
}

// groupBody parses group after its display-name: ":" [group-list] ";"
// (RFC 5322 §3.4, allowed in From by RFC 6854 §2.1).
func (p *fromParser) groupBody(name string) error {
	p.i++ // ':'
	p.group, p.sawGroup = name, true
	defer func() { p.group = "" }()
	for {
		if err := p.cfws(); err != nil {
			return err
		}
		switch {
		case p.eof():
			return errors.New("group without ';'")
		case p.peek() == ';':
			p.i++
			return nil
		case p.peek() == ',':
			p.i++ // RFC 5322 §4.4 obs-group-list / obs-mbox-list: empty elements
			continue
		}
		toks, err := p.words()
		if err != nil {
			return err
		}
		if err := p.mailboxAfterWords(toks); err != nil {
			return err
		}
		if err := p.cfws(); err != nil {
			return err
		}
		if !p.eof() && p.peek() != ',' && p.peek() != ';' {
			return fmt.Errorf("unexpected %q in a group", p.peek())
		}
	}
}

// mailboxAfterWords finishes a mailbox (no group allowed) after its
// leading words.
func (p *fromParser) mailboxAfterWords(toks []token) error {
	switch {
	case p.peek() == '<':
		name, err := phrase(toks, true)
		if err != nil {
			return err
		}
		return p.angleAddr(name)
	case p.peek() == '@':
		return p.addrSpecAfterLocal(toks, "")
	case p.eof():
		return errors.New("mailbox without '@'")
	}
	return fmt.Errorf("unexpected %q in a mailbox", p.peek())
}

// angleAddr parses angle-addr / obs-angle-addr (RFC 5322 §3.4, §4.4): "<",
// an optional obsolete route, addr-spec, ">".
func (p *fromParser) angleAddr(name string) error {
	p.i++ // '<'
	if err := p.cfws(); err != nil {
		return err
	}
	if p.peek() == '@' || p.peek() == ',' {
		if err := p.obsRoute(); err != nil {
			return err
		}
	}
	toks, err := p.words()
	if err != nil {
		return err
	}
	if p.peek() != '@' {
		return errors.New("angle address without '@'")
	}
	if err := p.addrSpecAfterLocal(toks, name); err != nil {
		return err
	}
	if err := p.cfws(); err != nil {
		return err
	}
	if p.peek() != '>' {
		return errors.New("angle address without '>'")
	}
	p.i++
	return nil
}

// obsRoute skips obs-route = obs-domain-list ":" (RFC 5322 §4.4). The
// route's domains are relays, not the author: they are never returned.
func (p *fromParser) obsRoute() error {
	for {
		if err := p.cfws(); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
			continue
		case '@':
			p.i++
			if _, err := p.domain(); err != nil {
				return err
			}
			continue
		case ':':
			p.i++
			return p.cfws()
		}
		return errors.New("bad obsolete route")
	}
}

// addrSpecAfterLocal parses "@" domain after the local-part words and
// records the mailbox (RFC 5322 §3.4.1 addr-spec).
func (p *fromParser) addrSpecAfterLocal(toks []token, name string) error {
	local, err := localPart(toks)
	if err != nil {
		return err
	}
	p.i++ // '@'
	raw, err := p.domain()
	if err != nil {
		return err
	}
	if !utf8.ValidString(local) || !utf8.ValidString(raw) {
		return errors.New("invalid UTF-8 in the address") // RFC 6532 §3.1: only valid UTF-8 is allowed
	}
	dom, err := NormalizeDomain(raw)
	if err != nil {
		return fmt.Errorf("domain %q: %w", raw, err)
	}
	if p.room <= 0 {
		return fmt.Errorf("more than %d mailboxes", MaxFromMailboxes)
	}
	p.room--
	p.out = append(p.out, Mailbox{Field: p.field, DisplayName: name, Group: p.group, LocalPart: local, RawDomain: raw, Domain: dom})
	return nil
}

// localPart checks local-part = dot-atom / quoted-string / obs-local-part
// (word *("." word)) and returns its text.
func localPart(toks []token) (string, error) {
	if len(toks) == 0 {
		return "", errors.New("empty local part")
	}
	var b strings.Builder
	for i, t := range toks {
		if (i%2 == 1) != (t.kind == tokDot) {
			return "", errors.New("bad local part")
		}
		if t.kind == tokDot {
			b.WriteByte('.')
		} else {
			b.WriteString(t.text)
		}
	}
	if toks[len(toks)-1].kind == tokDot {
		return "", errors.New("local part ends with '.'")
	}
	return b.String(), nil
}

// phrase checks display-name = phrase = 1*word / obs-phrase (word *(word /
// "." / CFWS)) and returns its words joined by one space. An empty phrase
// is allowed only before an angle address (the display name is optional).
func phrase(toks []token, optional bool) (string, error) {
	if len(toks) == 0 {
		if optional {
			return "", nil
		}
		return "", errors.New("group without a name")
	}
	if toks[0].kind == tokDot {
		return "", errors.New("display name starts with '.'")
	}
	var b strings.Builder
	for i, t := range toks {
		if i > 0 && t.kind != tokDot {
			b.WriteByte(' ')
		}
		if t.kind == tokDot {
			b.WriteByte('.')
		} else {
			b.WriteString(t.text)
		}
	}
	return b.String(), nil
}

// domain parses domain = dot-atom / obs-domain (atoms and dots with CFWS
// around them). A domain literal has no DMARC policy and is refused. One
// trailing dot (an absolute name) is accepted.
func (p *fromParser) domain() (string, error) {
	if err := p.cfws(); err != nil {
		return "", err
	}
	if p.peek() == '[' {
		return "", errors.New("domain literal: no Author Domain")
	}
	var b strings.Builder
	wantAtom := true
	for {
		if err := p.cfws(); err != nil {
			return "", err
		}
		if wantAtom {
			a := p.atom()
			if a == "" {
				if b.Len() > 0 && !p.moreDomain() {
					return b.String(), nil // trailing dot
				}
				return "", errors.New("bad domain")
			}
			b.WriteString(a)
			wantAtom = false
			continue
		}
		if p.peek() != '.' {
			return b.String(), nil
		}
		p.i++
		b.WriteByte('.')
		wantAtom = true
	}
}

// moreDomain reports whether an atom or dot follows (used to tell a
// trailing dot from an empty label).
func (p *fromParser) moreDomain() bool {
	return !p.eof() && (isAtext(p.s[p.i]) || p.peek() == '.')
}

// words reads the run of atoms, quoted strings and dots (with CFWS between)
// that starts a mailbox, a group or a local part.
func (p *fromParser) words() ([]token, error) {
	var toks []token
	for {
		if err := p.cfws(); err != nil {
			return nil, err
		}
		switch c := p.peek(); {
		case c == '"':
			q, err := p.quoted()
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokQuoted, text: q})
		case c == '.':
			p.i++
			toks = append(toks, token{kind: tokDot})
		case !p.eof() && isAtext(c):
			toks = append(toks, token{kind: tokAtom, text: p.atom()})
		default:
			return toks, nil
		}
	}
}

// atom reads 1*atext (RFC 5322 §3.2.3, with RFC 6532 §3.2 UTF-8).
func (p *fromParser) atom() string {
	j := p.i
	for j < len(p.s) && isAtext(p.s[j]) {
		j++
	}
	a := p.s[p.i:j]
	p.i = j
	return a
}

// quoted reads a quoted-string (RFC 5322 §3.2.4) and returns its content
// with quoted-pairs resolved.
func (p *fromParser) quoted() (string, error) {
	p.i++ // '"'
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) || p.s[p.i+1] == 0 {
				return "", errors.New("bad quoted-pair")
			}
			b.WriteByte(p.s[p.i+1]) // RFC 5322 §3.2.1 quoted-pair (and §4.1 obs-qp)
			p.i += 2
		case c == 0:
			return "", errors.New("NUL in quoted string")
		default:
			b.WriteByte(c) // qtext, WSP, UTF-8 (RFC 6532), obs-qtext
			p.i++
		}
	}
	return "", errors.New("unterminated quoted string")
}

// cfws skips white space and comments (RFC 5322 §3.2.2), comments nested
// up to maxCommentDepth.
func (p *fromParser) cfws() error {
	for !p.eof() {
		switch p.s[p.i] {
		case ' ', '\t':
			p.i++
		case '(':
			if err := p.comment(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

func (p *fromParser) comment() error {
	depth := 0
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '(':
			depth++
			if depth > maxCommentDepth {
				return errors.New("comments nested too deep")
			}
		case ')':
			depth--
			if depth == 0 {
				return nil
			}
		case '\\':
			if p.eof() || p.s[p.i] == 0 {
				return errors.New("bad quoted-pair in comment")
			}
			p.i++
		case 0:
			return errors.New("NUL in comment")
		}
	}
	return errors.New("unterminated comment")
}

func (p *fromParser) eof() bool { return p.i >= len(p.s) }

func (p *fromParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

// isAtext is RFC 5322 §3.2.3 atext plus the UTF-8 octets of RFC 6532 §3.2.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
