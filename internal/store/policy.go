package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
)

// Policy is one policy configuration: the DMARC record of a policy domain as
// it was published when a message was evaluated (the policy_published element
// of an RFC 9990 report). Each distinct configuration gets its own report.
// Empty strings are tags the record did not carry.
type Policy struct {
	Domain          string
	P               string
	SP              string
	NP              string
	ADKIM           string
	ASPF            string
	FO              string
	Testing         string
	DiscoveryMethod string
}

// key is the canonical identity of the configuration.
func (p Policy) key() [32]byte {
	var k keyWriter
	k.strings(p.Domain, p.P, p.SP, p.NP, p.ADKIM, p.ASPF, p.FO, p.Testing, p.DiscoveryMethod)
	return k.sum()
}

// policyID returns the id of p's row, inserting it when new. Policy rows are
// few and never deleted, so their ids can be cached.
func (s *Store) policyID(ctx context.Context, tx *sql.Tx, p Policy) (int64, error) {
	k := p.key()
	s.policyMu.Lock()
	id, ok := s.policyIDs[k]
	s.policyMu.Unlock()
	if ok {
		return id, nil
	}
	// DO NOTHING takes no lock on an existing row (two batches resolving
	// the same policies in different orders cannot deadlock); it waits for
	// a concurrent insert of the same key to end, after which the SELECT
	// (a new snapshot) sees the row.
	_, err := tx.ExecContext(ctx, `
INSERT INTO policies (policy_key, domain, p, sp, np, adkim, aspf, fo, testing, discovery_method)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (policy_key) DO NOTHING`,
		k[:], p.Domain, p.P, p.SP, p.NP, p.ADKIM, p.ASPF, p.FO, p.Testing, p.DiscoveryMethod)
	if err == nil {
		err = tx.QueryRowContext(ctx, `SELECT id FROM policies WHERE policy_key = $1`, k[:]).Scan(&id)
	}
	if err != nil {
		return 0, fmt.Errorf("store: policy: %w", err)
	}
	// The caller caches the id (rememberPolicy) only once its transaction
	// has committed: the id of a rolled-back insert names no row.
	return id, nil
}

// rememberPolicy caches a policy id once its transaction committed.
func (s *Store) rememberPolicy(k [32]byte, id int64) {
	s.policyMu.Lock()
	s.policyIDs[k] = id
	s.policyMu.Unlock()
}

// keyWriter builds a canonical key: every field length-prefixed, so that no
// two different field lists encode alike, hashed with SHA-256.
type keyWriter struct{ buf []byte }

func (k *keyWriter) strings(ss ...string) {
	for _, s := range ss {
		k.int(int64(len(s)))
		k.buf = append(k.buf, s...)
	}
}

func (k *keyWriter) int(n int64) {
	for i := 7; i >= 0; i-- {
		k.buf = append(k.buf, byte(n>>(8*i)))
	}
}

func (k *keyWriter) sum() [32]byte { return sha256.Sum256(k.buf) }
