package milter

import (
	"net/netip"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// HeloSPFMemo keeps a connection's HELO SPF result (RFC 7208 §2.3) for its
// next messages: that check depends only on the client address and the
// HELO name, so it is the same for every message of the connection.
//
// It keeps a result only when every DNS answer was cached, when it is not
// temperror, and for at most heloSPFMaxAge; it reuses it only for the same
// client address, HELO name and Engine (a reload may change the SPF
// limits). The zero value is empty; a connection owns one and it has no
// lock.
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

// get returns the kept result for (e, ip, helo). A nil memo is empty.
func (m *HeloSPFMemo) get(e *Engine, ip netip.Addr, helo string) (verify.SPFResult, bool) {
	if m == nil || m.e != e || m.ip != ip || m.helo != helo || time.Since(m.at) > heloSPFMaxAge {
		return verify.SPFResult{}, false
	}
	return m.res, true
}

// put keeps r, the HELO result for (e, ip, helo), unless it is temperror
// (the next message asks the DNS again). A nil memo keeps nothing.
func (m *HeloSPFMemo) put(e *Engine, ip netip.Addr, helo string, r verify.SPFResult) {
	if m == nil || r.Result == verify.ResultTempError {
		return
	}
	*m = HeloSPFMemo{e: e, ip: ip, helo: helo, at: time.Now(), res: r}
}
