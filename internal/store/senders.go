package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// PTRState says how far the reverse DNS name of a source is known.
type PTRState string

// The PTR states.
const (
	PTRPending PTRState = "pending" // not looked up yet, or the last lookup failed temporarily
	PTRFound   PTRState = "found"   // Source.PTR holds the name
	PTRNone    PTRState = "none"    // the address has no PTR record
	// PTRUnconfirmed: the PTR name does not resolve back to the address;
	// PTR holds it, PTROrg is empty (it must not name the sender).
	PTRUnconfirmed PTRState = "unconfirmed"
)

// Source is one sending address seen in received reports.
type Source struct {
	IP netip.Addr
	// PTR is the reverse DNS name (without the final dot), PTROrg its
	// organizational domain; both "" unless PTRState is PTRFound.
	PTR      string
	PTROrg   string
	PTRState PTRState
	// PTRChecked is when the name was last looked up (zero: never).
	PTRChecked time.Time
	// Country (ISO 3166 code), ASN and ASOrg come from an MMDB file when
	// one is configured; empty otherwise.
	Country string
	ASN     int64
	ASOrg   string
	// FirstSeen and LastSeen bound the periods of the reports naming it.
	FirstSeen time.Time
	LastSeen  time.Time
}

// PendingSources lists up to limit sources whose PTR name is still to be
// looked up and that were not tried since notSince, oldest try first.
func (s *Store) PendingSources(ctx context.Context, notSince time.Time, limit int) ([]netip.Addr, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT ip FROM sources WHERE ptr_state = 'pending' AND ptr_checked < $1
ORDER BY ptr_checked LIMIT $2`, unix(notSince), limit)
	if err != nil {
		return nil, fmt.Errorf("store: pending sources: %w", s.wrap(err))
	}
	defer rows.Close()
	var out []netip.Addr
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			return nil, err
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("store: source %q: %w", ip, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetSourcePTR records the outcome of a reverse lookup of ip at checked.
func (s *Store) SetSourcePTR(ctx context.Context, ip netip.Addr, state PTRState, ptr, org string, checked time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sources SET ptr_state = $1, ptr = $2, ptr_org = $3, ptr_checked = $4 WHERE ip = $5`,
		string(state), ptr, org, unix(checked), ip.String())
	if err != nil {
		return fmt.Errorf("store: source ptr: %w", s.wrap(err))
	}
	return nil
}

// SetSourceGeo records the country and autonomous system of ip.
func (s *Store) SetSourceGeo(ctx context.Context, ip netip.Addr, country string, asn int64, asOrg string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sources SET country = $1, asn = $2, as_org = $3 WHERE ip = $4`,
		country, asn, asOrg, ip.String())
	if err != nil {
		return fmt.Errorf("store: source geo: %w", s.wrap(err))
	}
	return nil
}

// GetSource returns the source of ip, or ErrNotFound.
func (s *Store) GetSource(ctx context.Context, ip netip.Addr) (Source, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+sourceColumns+` FROM sources WHERE ip = $1`, ip.String())
	src, err := scanSource(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Source{}, ErrNotFound
	}
	return src, err
}

const sourceColumns = `ip, ptr, ptr_org, ptr_state, ptr_checked, country, asn, as_org, first_seen, last_seen`

func scanSource(sc interface{ Scan(...any) error }) (Source, error) {
	var src Source
	var ip, state string
	var checked, first, last int64
	if err := sc.Scan(&ip, &src.PTR, &src.PTROrg, &state, &checked, &src.Country, &src.ASN, &src.ASOrg, &first, &last); err != nil {
		return Source{}, err
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Source{}, fmt.Errorf("store: source %q: %w", ip, err)
	}
	src.IP, src.PTRState = a, PTRState(state)
	if checked > 0 {
		src.PTRChecked = fromUnix(checked)
	}
	src.FirstSeen, src.LastSeen = fromUnix(first), fromUnix(last)
	return src, nil
}

// ReceivedTotal is the messages of a range that received rows with the
// same facts reported: ReceivedRow holds the facts (EnvelopeTo and Days
// empty; Count equals Messages), however many reports and reporters told
// of them.
type ReceivedTotal struct {
	ReceivedRow
	// Messages is the sum of the rows' per-day counts over the days of the
	// range.
	Messages int64
}

// ReceivedIn returns what reports for domain said about the UTC days of
// [since, until) (a row's day counts when its 00:00 does): one total per
// distinct row facts, read from the summary received_facts, ordered by
// source address and facts.
func (s *Store) ReceivedIn(ctx context.Context, domain string, since, until time.Time) ([]ReceivedTotal, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT fact_key, source_ip, disposition, dkim_aligned, spf_aligned, reasons, header_from, envelope_from, dkim, spf, messages
FROM received_facts WHERE domain = $1 AND day >= $2 AND day < $3`, domain, unix(since), unix(until))
	if err != nil {
		return nil, fmt.Errorf("store: received rows: %w", s.wrap(err))
	}
	defer rows.Close()
	type total struct {
		f fact
		n int64
	}
	byKey := map[string]*total{}
	for rows.Next() {
		var key []byte
		var t total
		f := &t.f
		if err := rows.Scan(&key, &f.SourceIP, &f.Disposition, &f.DKIMAligned, &f.SPFAligned, &f.Reasons,
			&f.HeaderFrom, &f.EnvelopeFrom, &f.DKIM, &f.SPF, &t.n); err != nil {
			return nil, err
		}
		if x := byKey[string(key)]; x != nil {
			x.n += t.n
		} else {
			byKey[string(key)] = &t
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: received rows: %w", s.wrap(err))
	}
	type keyed struct {
		key string
		r   ReceivedTotal
	}
	list := make([]keyed, 0, len(byKey))
	for key, t := range byKey {
		f := &t.f
		r := ReceivedTotal{Messages: t.n, ReceivedRow: ReceivedRow{Count: t.n, Disposition: f.Disposition,
			DKIMAligned: f.DKIMAligned, SPFAligned: f.SPFAligned, HeaderFrom: f.HeaderFrom, EnvelopeFrom: f.EnvelopeFrom}}
		if r.SourceIP, err = netip.ParseAddr(f.SourceIP); err != nil {
			return nil, fmt.Errorf("store: received row ip %q: %w", f.SourceIP, err)
		}
		var row Row
		if err := decodeLists(&row, f.Reasons, f.DKIM, f.SPF); err != nil {
			return nil, err
		}
		r.Reasons, r.DKIM, r.SPF = row.Reasons, row.DKIM, row.SPF
		list = append(list, keyed{key, r})
	}
	slices.SortFunc(list, func(a, b keyed) int {
		return cmp.Or(a.r.SourceIP.Compare(b.r.SourceIP), cmp.Compare(b.r.Messages, a.r.Messages), cmp.Compare(a.key, b.key))
	})
	out := make([]ReceivedTotal, len(list))
	for i := range list {
		out[i] = list[i].r
	}
	return out, nil
}

// ReceivedOverride is the messages for which one reporter applied one
// policy override (RFC 9990 reason), in a range.
type ReceivedOverride struct {
	Reporter string
	Reason   Reason
	Messages int64
}

// ReceivedOverrides sums the policy overrides reported for domain over the
// UTC days of [since, until) by reporter and override, most messages first.
func (s *Store) ReceivedOverrides(ctx context.Context, domain string, since, until time.Time) ([]ReceivedOverride, error) {
	var out []ReceivedOverride
	err := s.each(ctx, `
SELECT reporter, type, comment, SUM(messages) AS n FROM received_overrides
WHERE domain = $1 AND day >= $2 AND day < $3
GROUP BY reporter, type, comment ORDER BY n DESC, reporter, type, comment`, []any{domain, unix(since), unix(until)}, func(rs *sql.Rows) error {
		var o ReceivedOverride
		if err := rs.Scan(&o.Reporter, &o.Reason.Type, &o.Reason.Comment, &o.Messages); err != nil {
			return err
		}
		out = append(out, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: received overrides: %w", s.wrap(err))
	}
	return out, nil
}

// SourceSeen is when an address was first and last seen sending as a
// domain: the earliest begin and latest end of the reports naming it.
type SourceSeen struct {
	Source
	// DomainFirstSeen and DomainLastSeen are for the domain asked about
	// (Source's FirstSeen and LastSeen are over every domain). Expiring
	// old reports does not move them: a sender seen before is not new.
	DomainFirstSeen time.Time
	DomainLastSeen  time.Time
}

// SourcesOf returns every source seen in reports for domain (since its
// last sighting expired, see Retention), with what enrichment knows of it.
func (s *Store) SourcesOf(ctx context.Context, domain string) (map[netip.Addr]SourceSeen, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT s.ip, s.ptr, s.ptr_org, s.ptr_state, s.ptr_checked, s.country, s.asn, s.as_org, s.first_seen, s.last_seen, x.first_seen, x.last_seen
FROM received_domain_sources x JOIN sources s ON s.ip = x.source_ip
WHERE x.domain = $1`, domain)
	if err != nil {
		return nil, fmt.Errorf("store: sources: %w", s.wrap(err))
	}
	defer rows.Close()
	out := map[netip.Addr]SourceSeen{}
	for rows.Next() {
		var src Source
		var ip, state string
		var checked, first, last, b, e int64
		if err := rows.Scan(&ip, &src.PTR, &src.PTROrg, &state, &checked, &src.Country, &src.ASN, &src.ASOrg, &first, &last, &b, &e); err != nil {
			return nil, err
		}
		if src.IP, err = netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("store: source %q: %w", ip, err)
		}
		src.PTRState = PTRState(state)
		if checked > 0 {
			src.PTRChecked = fromUnix(checked)
		}
		src.FirstSeen, src.LastSeen = fromUnix(first), fromUnix(last)
		out[src.IP] = SourceSeen{Source: src, DomainFirstSeen: fromUnix(b), DomainLastSeen: fromUnix(e)}
	}
	return out, rows.Err()
}

// SeenNames lists what received reports for domain since since name: the
// DKIM (domain, selector) pairs and the header_from and envelope_from
// domains. The health check uses them (selectors to check, subdomains that
// need their own SPF record).
type SeenNames struct {
	DKIM    []DKIMResult // Result is left empty
	Domains []string
}

// SeenNamesOf collects SeenNames for domain from the reports whose period
// ended after since, over at most limit distinct rows' worth of names.
func (s *Store) SeenNamesOf(ctx context.Context, domain string, since time.Time, limit int) (SeenNames, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT DISTINCT r.dkim, r.header_from, r.envelope_from FROM received_rows r
JOIN received_reports rr ON rr.id = r.report_ref
WHERE rr.domain = $1 AND rr.period_end > $2 LIMIT $3`, domain, unix(since), limit)
	if err != nil {
		return SeenNames{}, fmt.Errorf("store: seen names: %w", s.wrap(err))
	}
	defer rows.Close()
	var out SeenNames
	dk, dom := map[DKIMResult]bool{}, map[string]bool{}
	for rows.Next() {
		var dkim, hf, ef string
		if err := rows.Scan(&dkim, &hf, &ef); err != nil {
			return SeenNames{}, err
		}
		var list []DKIMResult
		if err := json.Unmarshal([]byte(dkim), &list); err != nil {
			return SeenNames{}, fmt.Errorf("store: row dkim: %w", err)
		}
		for _, d := range list {
			k := DKIMResult{Domain: d.Domain, Selector: d.Selector}
			if d.Selector != "" && !dk[k] {
				dk[k] = true
				out.DKIM = append(out.DKIM, k)
			}
		}
		for _, d := range []string{hf, ef} {
			if d != "" && !dom[d] {
				dom[d] = true
				out.Domains = append(out.Domains, d)
			}
		}
	}
	return out, rows.Err()
}

// HealthCheck is a stored domain health check: its verdict and the whole
// report as pkg/health's versioned JSON.
type HealthCheck struct {
	Domain  string
	Checked time.Time
	Verdict string
	Report  json.RawMessage
}

// SaveHealth stores a health check.
func (s *Store) SaveHealth(ctx context.Context, h HealthCheck) error {
	if h.Domain == "" || !json.Valid(h.Report) {
		return fmt.Errorf("%w: health check of %q", ErrInvalid, h.Domain)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO health_checks (domain, checked, verdict, report) VALUES ($1, $2, $3, $4)
ON CONFLICT (domain, checked) DO UPDATE SET verdict = excluded.verdict, report = excluded.report`,
		h.Domain, unix(h.Checked), h.Verdict, string(h.Report))
	if err != nil {
		return fmt.Errorf("store: health check: %w", s.wrap(err))
	}
	return nil
}

// LatestHealth returns the latest stored health check of domain, or
// ErrNotFound.
func (s *Store) LatestHealth(ctx context.Context, domain string) (HealthCheck, error) {
	h := HealthCheck{Domain: domain}
	var checked int64
	var rep string
	err := s.db.QueryRowContext(ctx, `SELECT checked, verdict, report FROM health_checks WHERE domain = $1
ORDER BY checked DESC LIMIT 1`, domain).Scan(&checked, &h.Verdict, &rep)
	if errors.Is(err, sql.ErrNoRows) {
		return HealthCheck{}, ErrNotFound
	}
	if err != nil {
		return HealthCheck{}, fmt.Errorf("store: health check: %w", s.wrap(err))
	}
	h.Checked, h.Report = fromUnix(checked), json.RawMessage(rep)
	return h, nil
}
