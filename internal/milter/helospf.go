package milter

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// HeloSPFMemo keeps a connection's HELO SPF result (RFC 7208 §2.3) for its
// next messages: that check depends only on the client address and the
// HELO name, so it is the same for every message of the connection. Behind
// it the Engine keeps the results of recent connections (heloSPFCache):
// with one SMTP session per milter connection, the usual shape of inbound
// mail, a client that comes back within heloSPFMaxAge with the same HELO
// name is not checked again.
//
// It keeps a result only when every DNS answer was cached, when it is not
// temperror, and for at most heloSPFMaxAge; it reuses it only for the same
// client address, HELO name and Engine (a reload may change the SPF
// limits, and starts with an empty cache). The zero value is empty; a
// connection owns one and it has no lock.
type HeloSPFMemo struct {
	e    *Engine // nil: empty
	ip   netip.Addr
	helo string
	at   time.Time
	res  verify.SPFResult
}

// heloSPFMaxAge bounds the reuse of a HELO result: pkg/cache's default
// shortest lifetime of an answer (MinTTL), within which the cached answers
// would give the same result again.
const heloSPFMaxAge = 30 * time.Second

// get returns the kept result for (e, ip, helo): the connection's, else
// one of e's recent connections. A nil memo is empty.
func (m *HeloSPFMemo) get(e *Engine, ip netip.Addr, helo string) (verify.SPFResult, bool) {
	if m == nil {
		return verify.SPFResult{}, false
	}
	if m.e == e && m.ip == ip && m.helo == helo && time.Since(m.at) <= heloSPFMaxAge {
		return m.res, true
	}
	at, r, ok := e.heloSPF.get(ip, helo)
	if !ok {
		return verify.SPFResult{}, false
	}
	*m = HeloSPFMemo{e: e, ip: ip, helo: helo, at: at, res: r}
	return r, true
}

// put keeps r, the HELO result for (e, ip, helo), for the connection and
// in e's cache, unless it is temperror (the next message asks the DNS
// again). A nil memo keeps nothing.
func (m *HeloSPFMemo) put(e *Engine, ip netip.Addr, helo string, r verify.SPFResult) {
	if m == nil || r.Result == verify.ResultTempError {
		return
	}
	now := time.Now()
	*m = HeloSPFMemo{e: e, ip: ip, helo: helo, at: now, res: r}
	e.heloSPF.put(ip, helo, now, r)
}

// heloSPFCache is an Engine's memory of HELO SPF results across
// connections, keyed by (client address, HELO name). It holds at most
// heloSPFCacheSize results, each for at most heloSPFMaxAge from its check,
// and never a temperror; a HELO name longer than a domain name can be is
// not kept, so the memory stays bounded whatever clients send. Two
// generations of at most half the size each: when the newer is full it
// becomes the older one and the older one is dropped, so that inserting
// and finding are O(1) and a busy client is kept by being put again. It
// is safe for concurrent use; the zero value is ready.
type heloSPFCache struct {
	mu       sync.Mutex
	cur, old map[heloKey]heloEntry
}

type heloKey struct {
	ip   netip.Addr
	helo string
}

type heloEntry struct {
	at  time.Time
	res verify.SPFResult
}

// heloSPFCacheSize bounds the entries kept (a few hundred bytes each).
const heloSPFCacheSize = 8192

// maxHeloLen is the longest HELO name kept: RFC 1035 §2.3.4 limits a
// domain name to 255 octets (an address literal is shorter).
const maxHeloLen = 255

// get returns the result kept for (ip, helo) and when it was checked.
func (c *heloSPFCache) get(ip netip.Addr, helo string) (time.Time, verify.SPFResult, bool) {
	k := heloKey{ip: ip, helo: helo}
	c.mu.Lock()
	e, ok := c.cur[k]
	if !ok {
		e, ok = c.old[k]
	}
	c.mu.Unlock()
	if !ok || time.Since(e.at) > heloSPFMaxAge {
		return time.Time{}, verify.SPFResult{}, false
	}
	return e.at, e.res, true
}

// put keeps r, checked at at, for (ip, helo); a temperror, an invalid
// address or an overlong name is not kept.
func (c *heloSPFCache) put(ip netip.Addr, helo string, at time.Time, r verify.SPFResult) {
	if r.Result == verify.ResultTempError || !ip.IsValid() || len(helo) > maxHeloLen {
		return
	}
	k := heloKey{ip: ip, helo: helo}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[k]; !ok && len(c.cur) >= heloSPFCacheSize/2 {
		c.old, c.cur = c.cur, nil
	}
	if c.cur == nil {
		c.cur = make(map[heloKey]heloEntry)
	}
	c.cur[k] = heloEntry{at: at, res: r}
}

// len is the number of entries kept, expired ones included (tests).
func (c *heloSPFCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}
