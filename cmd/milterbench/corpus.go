package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// The corpus: sender domains under the "example" TLD (libunbound in OpenDKIM
// answers "test." and "invalid." itself, so those cannot be used), their
// SPF, DKIM and DMARC records, and SMTP sessions whose messages cover the
// usual pass and fail cases. Everything derives from one seed, so that the
// DNS server (milterbench dns) and the load generator agree, and each
// message carries the verdict a correct DMARC milter reaches under the
// benchmark's policy (reject on p=reject, hold on p=quarantine).

// TLD of every corpus domain.
const corpusTLD = "example"

// authservID is the authserv-id every benchmarked milter is configured with.
const authservID = "mx.bench.example"

// senderDomain is one organizational domain of the corpus.
type senderDomain struct {
	Name   string
	DMARC  string // TXT of _dmarc.Name; "" for none
	P, SP  string // the record's p= and sp= (for the expectations)
	Strict bool   // adkim=s; aspf=s
	Net    string // first three octets of its senders' addresses
	Base   int    // last octet of its first sender address
	RSA    bool   // signs with RSA-2048 (selector "r2048")
	Ed     bool   // signs with Ed25519 (selector "ed")
	Canon  dkim.Canonicalization
	Sub    string // a subdomain used in From: for some messages ("" for none)
	SPFInc bool   // SPF through an include:

	rsaKey *rsa.PrivateKey
	edKey  ed25519.PrivateKey
}

// policyFor returns the policy applying to mail from a From: domain.
func (d *senderDomain) policyFor(from string) string {
	if from != d.Name && d.SP != "" {
		return d.SP
	}
	return d.P
}

func (d *senderDomain) senderIP(i int) string { return fmt.Sprintf("%s.%d", d.Net, d.Base+i%4) }
func (d *senderDomain) spfRange() string      { return fmt.Sprintf("%s.%d/28", d.Net, d.Base-1) }

// corpusDomains are the sender domains; their keys are filled in by newCorpus.
func corpusDomains() []*senderDomain {
	ex := func(s string) string { return s + "." + corpusTLD }
	return []*senderDomain{
		{Name: ex("alpha"), DMARC: "v=DMARC1; p=reject; rua=mailto:dmarc@alpha.example", P: "reject",
			Net: "198.51.100", Base: 1, RSA: true, Canon: dkim.CanonicalizationRelaxed, Sub: ex("news.alpha")},
		{Name: ex("bravo"), DMARC: "v=DMARC1; p=quarantine; sp=reject; adkim=r; aspf=r", P: "quarantine", SP: "reject",
			Net: "198.51.100", Base: 17, RSA: true, Ed: true, Canon: dkim.CanonicalizationRelaxed, Sub: ex("shop.bravo")},
		{Name: ex("charlie"), DMARC: "v=DMARC1; p=none; rua=mailto:agg@charlie.example", P: "none",
			Net: "198.51.100", Base: 33, RSA: true, Canon: dkim.CanonicalizationSimple},
		{Name: ex("delta"), DMARC: "v=DMARC1; p=reject; adkim=s; aspf=s", P: "reject", Strict: true,
			Net: "198.51.100", Base: 49, RSA: true, Ed: true, Canon: dkim.CanonicalizationRelaxed, Sub: ex("mail.delta")},
		{Name: ex("echo"), DMARC: "v=DMARC1; p=quarantine; sp=none; pct=100", P: "quarantine", SP: "none",
			Net: "198.51.100", Base: 65, RSA: true, Canon: dkim.CanonicalizationRelaxed, Sub: ex("shop.echo"), SPFInc: true},
		{Name: ex("foxtrot"), Net: "198.51.100", Base: 81, Ed: true, Canon: dkim.CanonicalizationRelaxed},
	}
}

// The forwarder (an alias host or list server) and the forger.
var (
	fwdDomain  = &senderDomain{Name: "fwd." + corpusTLD, Net: "203.0.113", Base: 1}
	evilDomain = &senderDomain{Name: "evil." + corpusTLD, DMARC: "v=DMARC1; p=none", P: "none",
		Net: "203.0.113", Base: 129, RSA: true, Canon: dkim.CanonicalizationRelaxed}
)

// Scenarios.
const (
	scDirect    = "direct"    // aligned DKIM and SPF
	scSPFOnly   = "spf-only"  // unsigned, aligned SPF
	scForwarded = "forwarded" // alias forwarder: SPF of the forwarder, DKIM intact
	scList      = "list"      // list: subject tag and footer break DKIM
	scForged    = "forged"    // From: of a victim, sent by the forger
	scStrict    = "strict"    // subdomain From: under adkim=s/aspf=s
)

// want is the outcome a correct milter reaches under the benchmark policy.
type want struct {
	Action string // accept, reject, quarantine
	DMARC  string // pass, fail, none
}

// message is one transaction of a session.
type message struct {
	Scenario string
	MailFrom string
	Rcpt     string
	Headers  []field
	Body     []byte // CRLF lines, as Postfix sends it
	Want     want
	QueueID  string
}

// session is one SMTP connection.
type session struct {
	IP, PTR, Helo string
	Port          uint16
	Msgs          []*message
}

// corpusMessages is the size of the corpus when the number of sessions is
// not given: 120 sessions of 4 messages, or 480 of one.
const corpusMessages = 480

// corpusConfig shapes the corpus.
type corpusConfig struct {
	Seed       uint64
	Sessions   int
	PerSession int
	BodyMin    int
	BodyMax    int
}

// corpus is the generated data: sessions and the zone serving them.
type corpus struct {
	Sessions []*session
	Domains  []*senderDomain
	Zone     string
}

// newKeys fills in the domains' keys from the seed.
func newKeys(seed uint64, doms []*senderDomain) error {
	for i, d := range doms {
		rng := rand.New(rand.NewPCG(seed, uint64(i)+1000))
		if d.RSA {
			k, err := deterministicRSA(rng, 2048)
			if err != nil {
				return err
			}
			d.rsaKey = k
		}
		if d.Ed {
			d.edKey = deterministicEd25519(rng)
		}
	}
	return nil
}

// newCorpus generates the corpus for cfg.
func newCorpus(cfg corpusConfig) (*corpus, error) {
	if cfg.PerSession < 1 {
		return nil, fmt.Errorf("corpus: %d messages per session", cfg.PerSession)
	}
	if cfg.Sessions <= 0 {
		cfg.Sessions = (corpusMessages + cfg.PerSession - 1) / cfg.PerSession
	}
	doms := corpusDomains()
	all := append(append([]*senderDomain{}, doms...), fwdDomain, evilDomain)
	if err := newKeys(cfg.Seed, all); err != nil {
		return nil, err
	}
	c := &corpus{Domains: all}
	var err error
	if c.Zone, err = zoneText(all); err != nil {
		return nil, err
	}
	g := &generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 1)), doms: doms,
		date: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	for i := range cfg.Sessions {
		s, err := g.session(i)
		if err != nil {
			return nil, err
		}
		c.Sessions = append(c.Sessions, s)
	}
	return c, nil
}

// messages is the number of messages in the corpus.
func (c *corpus) messages() int {
	n := 0
	for _, s := range c.Sessions {
		n += len(s.Msgs)
	}
	return n
}

// zoneText renders every record of the corpus as a master file.
func zoneText(doms []*senderDomain) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "$TTL 3600\n")
	for _, z := range []string{corpusTLD + ".", "100.51.198.in-addr.arpa.", "113.0.203.in-addr.arpa."} {
		fmt.Fprintf(&b, "%s SOA ns.bench.%s. hostmaster.bench.%s. 1 7200 3600 1209600 300\n", z, corpusTLD, corpusTLD)
	}
	for _, d := range doms {
		if err := domainRecords(&b, d); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

func domainRecords(b *strings.Builder, d *senderDomain) error {
	spf := fmt.Sprintf("v=spf1 ip4:%s -all", d.spfRange())
	if d.SPFInc {
		fmt.Fprintf(b, "_spf.%s. TXT %q\n", d.Name, spf)
		spf = fmt.Sprintf("v=spf1 include:_spf.%s -all", d.Name)
	}
	fmt.Fprintf(b, "%s. TXT %q\n", d.Name, spf)
	fmt.Fprintf(b, "%s. MX 10 mail.%s.\n", d.Name, d.Name)
	// The HELO host: its own SPF record, addresses and reverse names.
	fmt.Fprintf(b, "mail.%s. TXT %q\n", d.Name, fmt.Sprintf("v=spf1 ip4:%s -all", d.spfRange()))
	for i := range 4 {
		ip := d.senderIP(i)
		fmt.Fprintf(b, "mail.%s. A %s\n", d.Name, ip)
		o := strings.Split(ip, ".")
		fmt.Fprintf(b, "%s.%s.%s.%s.in-addr.arpa. PTR mail.%s.\n", o[3], o[2], o[1], o[0], d.Name)
	}
	if d.DMARC != "" {
		fmt.Fprintf(b, "_dmarc.%s. TXT %q\n", d.Name, d.DMARC)
	}
	if d.rsaKey != nil {
		der, err := x509.MarshalPKIXPublicKey(&d.rsaKey.PublicKey)
		if err != nil {
			return err
		}
		fmt.Fprintf(b, "r2048._domainkey.%s. TXT %s\n", d.Name, txtStrings("v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der)))
	}
	if d.edKey != nil {
		pub := d.edKey.Public().(ed25519.PublicKey)
		fmt.Fprintf(b, "ed._domainkey.%s. TXT %s\n", d.Name, txtStrings("v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub)))
	}
	return nil
}

// txtStrings splits a TXT value into quoted strings of at most 255 bytes.
func txtStrings(s string) string {
	var parts []string
	for len(s) > 0 {
		n := min(len(s), 255)
		parts = append(parts, fmt.Sprintf("%q", s[:n]))
		s = s[n:]
	}
	return strings.Join(parts, " ")
}

// generator draws sessions and messages.
type generator struct {
	cfg  corpusConfig
	rng  *rand.Rand
	doms []*senderDomain
	date time.Time
	n    int
}

// pickScenario draws a scenario with the corpus's mix.
func (g *generator) pickScenario() string {
	x := g.rng.IntN(100)
	switch {
	case x < 35:
		return scDirect
	case x < 50:
		return scSPFOnly
	case x < 65:
		return scForwarded
	case x < 75:
		return scList
	case x < 95:
		return scForged
	}
	return scStrict
}

// session draws one SMTP session: a client and PerSession messages of one
// scenario and one sender domain.
func (g *generator) session(idx int) (*session, error) {
	sc := g.pickScenario()
	d := g.doms[g.rng.IntN(len(g.doms))]
	if sc == scStrict {
		d = g.doms[3] // delta: adkim=s, aspf=s
	}
	client := d
	switch sc {
	case scForwarded, scList:
		client = fwdDomain
	case scForged:
		client = evilDomain
	}
	s := &session{IP: client.senderIP(idx), PTR: "mail." + client.Name, Helo: "mail." + client.Name,
		Port: uint16(40000 + idx%20000)}
	for range g.cfg.PerSession {
		m, err := g.message(sc, d)
		if err != nil {
			return nil, err
		}
		s.Msgs = append(s.Msgs, m)
	}
	return s, nil
}

// message builds one message of scenario sc with From: in domain d.
func (g *generator) message(sc string, d *senderDomain) (*message, error) {
	g.n++
	fromDom := d.Name
	// Strict alignment fails for a subdomain: only the strict and forged
	// scenarios use one under such a domain.
	if d.Sub != "" && (sc == scStrict || (sc != scSPFOnly && (!d.Strict || sc == scForged) && g.rng.IntN(4) == 0)) {
		fromDom = d.Sub
	}
	m := &message{Scenario: sc, Rcpt: fmt.Sprintf("%s@inbox.%s", pick(g.rng, users), corpusTLD),
		QueueID: fmt.Sprintf("4Q%07X", g.n)}
	from := fmt.Sprintf("%s@%s", pick(g.rng, users), fromDom)
	switch sc {
	case scDirect, scSPFOnly, scStrict:
		m.MailFrom = "bounce-" + fmt.Sprint(g.n) + "@" + d.Name
	case scForwarded, scList:
		m.MailFrom = fmt.Sprintf("SRS0=%04x=AB=%s=%s@%s", g.n, d.Name, "user", fwdDomain.Name)
	case scForged:
		m.MailFrom = fmt.Sprintf("%s@%s", pick(g.rng, users), evilDomain.Name)
	}
	raw, err := g.compose(sc, d, from, m.Rcpt)
	if err != nil {
		return nil, err
	}
	if sc == scList {
		raw = listify(raw)
	}
	m.Headers, m.Body = splitMessage(raw)
	m.Want = expectation(sc, d, fromDom)
	return m, nil
}

// expectation is the verdict of a correct DMARC milter.
func expectation(sc string, d *senderDomain, fromDom string) want {
	if d.DMARC == "" {
		return want{Action: "accept", DMARC: "none"}
	}
	switch sc {
	case scDirect, scSPFOnly, scForwarded:
		return want{Action: "accept", DMARC: "pass"}
	}
	act := map[string]string{"reject": "reject", "quarantine": "quarantine", "none": "accept"}[d.policyFor(fromDom)]
	return want{Action: act, DMARC: "fail"}
}

// compose writes the message (CRLF) and signs it as the scenario says.
func (g *generator) compose(sc string, d *senderDomain, from, rcpt string) ([]byte, error) {
	g.date = g.date.Add(time.Duration(g.rng.IntN(90)+1) * time.Second)
	var h bytes.Buffer
	fmt.Fprintf(&h, "Received: from [10.1.%d.%d] (unknown [10.1.%d.%d])\r\n\tby mail.%s (Postfix) with ESMTPSA id %X\r\n\tfor <%s>; %s\r\n",
		g.n%200, g.n%250+1, g.n%200, g.n%250+1, d.Name, g.rng.Uint32(), rcpt, g.date.Format(time.RFC1123Z))
	fmt.Fprintf(&h, "From: %s <%s>\r\n", pick(g.rng, names), from)
	fmt.Fprintf(&h, "To: <%s>\r\n", rcpt)
	fmt.Fprintf(&h, "Subject: %s\r\n", g.subject())
	fmt.Fprintf(&h, "Date: %s\r\n", g.date.Format(time.RFC1123Z))
	fmt.Fprintf(&h, "Message-ID: <%d.%08x@%s>\r\n", g.n, g.rng.Uint32(), d.Name)
	fmt.Fprintf(&h, "MIME-Version: 1.0\r\n")
	ctype, body := g.body()
	h.WriteString(ctype)
	msg := append(append(h.Bytes(), "\r\n"...), body...)
	switch sc {
	case scSPFOnly:
		return msg, nil
	case scForged:
		if g.rng.IntN(2) == 0 {
			return sign(msg, evilDomain, evilDomain.Canon)
		}
		return msg, nil
	}
	return sign(msg, d, d.Canon)
}

// subject draws a subject, folded when long (Postfix sends folds as "\n").
func (g *generator) subject() string {
	w := make([]string, 3+g.rng.IntN(14))
	for i := range w {
		w[i] = pick(g.rng, words)
	}
	s := strings.Join(w, " ")
	if len(s) > 60 {
		i := strings.LastIndexByte(s[:60], ' ')
		s = s[:i] + "\r\n\t" + s[i+1:]
	}
	return s
}

// body draws a body between BodyMin and BodyMax bytes: plain text, a
// multipart/alternative text+HTML, or a multipart/mixed with an attachment.
// It returns the Content-Type (and transfer encoding) header lines.
func (g *generator) body() (string, []byte) {
	size := g.cfg.BodyMin
	if g.cfg.BodyMax > g.cfg.BodyMin {
		size += g.rng.IntN(g.cfg.BodyMax - g.cfg.BodyMin + 1)
	}
	bnd := fmt.Sprintf("=_bench_%08x", g.rng.Uint32())
	var b bytes.Buffer
	switch g.rng.IntN(3) {
	case 0:
		g.text(&b, size)
		return "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n", b.Bytes()
	case 1:
		fmt.Fprintf(&b, "This is a multi-part message in MIME format.\r\n\r\n--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", bnd)
		g.text(&b, size/3)
		fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n", bnd)
		g.text(&b, size-b.Len()-len(bnd)-40)
		fmt.Fprintf(&b, "</body></html>\r\n--%s--\r\n", bnd)
		return fmt.Sprintf("Content-Type: multipart/alternative;\r\n\tboundary=\"%s\"\r\n", bnd), b.Bytes()
	}
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", bnd)
	g.text(&b, min(size/4, 4000))
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n", bnd)
	raw := make([]byte, max((size-b.Len()-len(bnd)-10)*3/4, 16))
	for i := range raw {
		raw[i] = byte(g.rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	fmt.Fprintf(&b, "%s\r\n--%s--\r\n", enc, bnd)
	return fmt.Sprintf("Content-Type: multipart/mixed; boundary=\"%s\"\r\n", bnd), b.Bytes()
}

// text appends lines of words until about n bytes were written.
func (g *generator) text(b *bytes.Buffer, n int) {
	end := b.Len() + max(n, 64)
	line := 0
	for b.Len() < end {
		w := pick(g.rng, words)
		if line+len(w) > 72 {
			b.WriteString("\r\n")
			line = 0
		}
		if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\r\n")
}

// sign prepends the DKIM signatures of domain d (RSA, Ed25519 or both).
func sign(msg []byte, d *senderDomain, canon dkim.Canonicalization) ([]byte, error) {
	var sigs []string
	for _, k := range []struct {
		sel    string
		signer crypto.Signer
	}{{"r2048", rsaSigner(d)}, {"ed", edSigner(d)}} {
		if k.signer == nil {
			continue
		}
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: d.Name, Selector: k.sel, Signer: k.signer, Hash: crypto.SHA256,
			HeaderCanonicalization: canon, BodyCanonicalization: canon,
			HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"},
		})
		if err != nil {
			return nil, err
		}
		s.Write(msg)
		if err := s.Close(); err != nil {
			return nil, err
		}
		sigs = append(sigs, s.Signature())
	}
	return append([]byte(strings.Join(sigs, "")), msg...), nil
}

func rsaSigner(d *senderDomain) crypto.Signer {
	if d.rsaKey == nil {
		return nil
	}
	return d.rsaKey
}

func edSigner(d *senderDomain) crypto.Signer {
	if d.edKey == nil {
		return nil
	}
	return d.edKey
}

// listify does to a message what a mailing list does: a tag in Subject:, a
// List-Id: field and a footer, which break the author's DKIM signature.
func listify(msg []byte) []byte {
	msg = bytes.Replace(msg, []byte("\r\nSubject: "), []byte("\r\nList-Id: Bench users <users.lists.fwd.example>\r\nSubject: [users] "), 1)
	return append(msg, "-- \r\nusers mailing list\r\nhttps://lists.fwd.example/users\r\n"...)
}

// splitMessage turns a CRLF message into Postfix's view: header fields with
// "\n" folds and the value after the colon as written, and the body.
func splitMessage(raw []byte) ([]field, []byte) {
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	var out []field
	for _, line := range strings.Split(string(head), "\r\n") {
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].Value += "\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		out = append(out, field{Name: strings.TrimRight(name, " \t"), Value: value})
	}
	return out, body
}

func pick(rng *rand.Rand, list []string) string { return list[rng.IntN(len(list))] }

var users = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"}

var names = []string{"Alice Archer", "Bob Baker", "Carol Cooper", "Dave Dyer", "\"Erin E. Eastwood\"", "Frank Fisher", "Grace Gardner", "Heidi Hunter"}

var words = strings.Fields(`the quarterly report invoice meeting agenda shipment order delivery
update summary project review budget forecast team schedule please find attached regarding
account statement payment reminder newsletter offer customer support ticket release notes
server migration weekend maintenance window security notice password policy conference
travel itinerary hotel booking confirmation receipt thanks regards best wishes kind hello
minutes action items follow up deadline proposal contract signature approval request draft`)
