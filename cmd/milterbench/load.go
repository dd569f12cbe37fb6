package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadConfig says how hard and how long to drive the milters.
type loadConfig struct {
	Milters      []string // chain, in smtpd_milters order
	Concurrency  int
	Sessions     int           // measured sessions (0: until Duration)
	Duration     time.Duration // bound of the measured phase (0: none)
	Timeout      time.Duration // per milter read/write
	EarlyQueueID bool          // define macro i at MAIL (smtpd_delay_open_until_valid_rcpt = no)
	// Pace, when set, spaces the starts of messages (MAIL FROM) evenly at a
	// fixed rate, so that latency can be measured below saturation.
	Pace *pacer
}

// pacer hands out message start times at a fixed interval. A start that
// could not be taken in time (every session busy) is not made up for later:
// below the milter's capacity the offered rate is the rate asked for, above
// it the load falls back to as fast as the sessions go.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newPacer(perSecond float64) *pacer {
	if perSecond <= 0 {
		return nil
	}
	return &pacer{interval: time.Duration(float64(time.Second) / perSecond)}
}

// wait blocks until the next start time, or ctx ends.
func (p *pacer) wait(ctx context.Context) {
	if p == nil {
		return
	}
	p.mu.Lock()
	now := time.Now()
	t := p.next
	if t.Before(now) {
		t = now
	}
	p.next = t.Add(p.interval)
	p.mu.Unlock()
	if d := time.Until(t); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
}

// outcome is what happened to one message.
type outcome struct {
	Action string // accept, reject, tempfail, discard, quarantine, error
	DMARC  string // from the Authentication-Results the milters added ("" when none)
}

// recorder collects the results of a phase.
type recorder struct {
	mu         sync.Mutex
	content    []time.Duration // headers+body+EOM, every milter
	eom        []time.Duration // waiting for EOM replies, every milter
	verdicts   map[string]int
	mismatches int
	samples    []string
	errors     int
	errSamples []string
	messages   int
	sessions   int
}

func newRecorder() *recorder { return &recorder{verdicts: map[string]int{}} }

func (r *recorder) message(m *message, o outcome, content, eom time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages++
	r.verdicts[o.Action]++
	if o.DMARC != "" {
		r.verdicts["dmarc="+o.DMARC]++
	}
	if o.Action == "error" {
		return
	}
	r.content = append(r.content, content)
	r.eom = append(r.eom, eom)
	if o.Action != m.Want.Action || (o.Action != "reject" && o.Action != "tempfail" && o.DMARC != m.Want.DMARC) {
		r.mismatches++
		if len(r.samples) < 8 {
			r.samples = append(r.samples, fmt.Sprintf("%s %s from=%s: got %s/dmarc=%s want %s/dmarc=%s",
				m.QueueID, m.Scenario, fromDomain(m), o.Action, o.DMARC, m.Want.Action, m.Want.DMARC))
		}
	}
}

func (r *recorder) fail(err error, msgs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors++
	r.messages += msgs
	r.verdicts["error"] += msgs
	if len(r.errSamples) < 5 {
		r.errSamples = append(r.errSamples, err.Error())
	}
}

func fromDomain(m *message) string {
	for _, f := range m.Headers {
		if strings.EqualFold(f.Name, "From") {
			v := f.Value
			if i := strings.LastIndexByte(v, '@'); i >= 0 {
				return strings.TrimRight(v[i+1:], ">\n\t ")
			}
		}
	}
	return ""
}

// runPhase drives sessions first.. of the corpus (cycling) with cfg and
// returns what happened and how long it took.
func runPhase(ctx context.Context, c *corpus, cfg loadConfig, first int) (*recorder, time.Duration) {
	rec := newRecorder()
	var next atomic.Int64
	next.Store(int64(first))
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = time.Now().Add(cfg.Duration)
	}
	limit := int64(first + cfg.Sessions)
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if cfg.Sessions > 0 && i >= limit {
					return
				}
				if !deadline.IsZero() && time.Now().After(deadline) {
					return
				}
				s := c.Sessions[int(i)%len(c.Sessions)]
				if err := runSession(cfg, s, rec); err != nil {
					rec.fail(err, 0)
				}
				rec.mu.Lock()
				rec.sessions++
				rec.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return rec, time.Since(start)
}

// macros holds the values Postfix would define for the current stage.
type macros struct {
	s        *session
	helo     bool
	mailFrom string
	rcpt     string
	queueID  string
}

func (m *macros) lookup(name string) (string, bool) {
	switch name {
	case "j", "{daemon_name}":
		return authservID, true
	case "{daemon_addr}":
		return "192.0.2.25", true
	case "v":
		return "Postfix 3.7.11", true
	case "_":
		return fmt.Sprintf("%s [%s]", m.s.PTR, m.s.IP), true
	case "{client_addr}":
		return m.s.IP, true
	case "{client_name}", "{client_ptr}":
		return m.s.PTR, true
	case "{client_port}":
		return strconv.Itoa(int(m.s.Port)), true
	case "{client_resolve}":
		return "OK", true
	case "s":
		return m.s.Helo, m.helo
	case "i":
		return m.queueID, m.queueID != ""
	case "{mail_addr}":
		return m.mailFrom, m.mailFrom != ""
	case "{rcpt_addr}":
		return m.rcpt, m.rcpt != ""
	}
	return "", false
}

// chainMilter is one milter of the chain within a session.
type chainMilter struct {
	c          *milterConn
	sessionOff bool // accepted or rejected the connection: no more events
	msgOff     bool // accepted the message: no more events for it
}

// runSession is one SMTP connection: every milter of the chain gets its own
// milter connection, the connect and HELO events, then each message.
func runSession(cfg loadConfig, s *session, rec *recorder) error {
	chain := make([]*chainMilter, 0, len(cfg.Milters))
	defer func() {
		for _, m := range chain {
			m.c.close()
		}
	}()
	for _, a := range cfg.Milters {
		c, err := dialMilter(a, cfg.Timeout)
		if err != nil {
			rec.fail(err, len(s.Msgs))
			return nil
		}
		chain = append(chain, &chainMilter{c: c})
	}
	mv := &macros{s: s}
	if o, err := envelope(chain, func(c *milterConn) (reply, error) { return c.connect(s.PTR, s.IP, s.Port, mv.lookup) }, true); err != nil || o != "" {
		return sessionRefused(s, rec, o, err)
	}
	mv.helo = true
	if o, err := envelope(chain, func(c *milterConn) (reply, error) { return c.helo(s.Helo, mv.lookup) }, true); err != nil || o != "" {
		return sessionRefused(s, rec, o, err)
	}
	for i, m := range s.Msgs {
		if err := runMessage(cfg, chain, mv, m, rec); err != nil {
			rec.fail(err, len(s.Msgs)-i) // this message and the ones never sent
			return nil
		}
	}
	for _, m := range chain {
		m.c.quit()
	}
	return nil
}

func sessionRefused(s *session, rec *recorder, action string, err error) error {
	if err != nil {
		rec.fail(err, len(s.Msgs))
		return nil
	}
	for _, m := range s.Msgs {
		rec.message(m, outcome{Action: action}, 0, 0)
	}
	return nil
}

// envelope sends one envelope event to every milter still listening and
// returns the action that ends the transaction ("" to go on).
func envelope(chain []*chainMilter, ev func(*milterConn) (reply, error), connLevel bool) (string, error) {
	for _, m := range chain {
		if m.sessionOff || m.msgOff {
			continue
		}
		r, err := ev(m.c)
		if err != nil {
			return "", err
		}
		switch r.Code {
		case repContinue:
		case repAccept:
			if connLevel {
				m.sessionOff = true
			} else {
				m.msgOff = true
			}
		default:
			return replyAction(r), nil
		}
	}
	return "", nil
}

// runMessage is one mail transaction: envelope events to every milter,
// then (as Postfix's cleanup does after the end of DATA) the content to
// each milter in turn, the next one seeing the headers the previous one
// changed, then ABORT (smtpd's mail_reset).
func runMessage(cfg loadConfig, chain []*chainMilter, mv *macros, m *message, rec *recorder) error {
	cfg.Pace.wait(context.Background())
	mv.mailFrom, mv.rcpt, mv.queueID = m.MailFrom, "", ""
	if cfg.EarlyQueueID {
		mv.queueID = m.QueueID
	}
	for _, c := range chain {
		c.msgOff = false
	}
	defer func() {
		for _, c := range chain {
			if !c.sessionOff {
				c.c.abort()
			}
		}
	}()
	steps := []func(*milterConn) (reply, error){
		func(c *milterConn) (reply, error) { return c.mail(m.MailFrom, mv.lookup) },
		func(c *milterConn) (reply, error) {
			mv.rcpt, mv.queueID = m.Rcpt, m.QueueID
			return c.rcpt(m.Rcpt, mv.lookup)
		},
		func(c *milterConn) (reply, error) { return c.data(mv.lookup) },
	}
	for _, step := range steps {
		o, err := envelope(chain, step, false)
		if err != nil {
			return err
		}
		if o != "" {
			rec.message(m, outcome{Action: o}, 0, 0)
			return nil
		}
	}
	o, content, eom, err := messageContent(chain, mv, m)
	if err != nil {
		return err
	}
	rec.message(m, o, content, eom)
	return nil
}

// messageContent sends headers, body and EOM to each milter in turn.
func messageContent(chain []*chainMilter, mv *macros, m *message) (outcome, time.Duration, time.Duration, error) {
	hdrs := append([]field(nil), m.Headers...)
	var o outcome
	quarantined := false
	var eomTotal time.Duration
	t0 := time.Now()
	for _, c := range chain {
		if c.sessionOff || c.msgOff {
			continue
		}
		r, eom, err := c.c.content(hdrs, m.Body, mv.lookup)
		eomTotal += eom
		if err != nil {
			return o, 0, 0, err
		}
		for _, mod := range r.Mods {
			if mod.Code == repQuarantine {
				quarantined = true
			}
			if (mod.Code == repAddHeader || mod.Code == repInsHeader) && o.DMARC == "" &&
				strings.EqualFold(mod.Name, "Authentication-Results") {
				o.DMARC = dmarcResult(mod.Value)
			}
		}
		if a := replyAction(r); a != "accept" {
			o.Action = a
			return o, time.Since(t0), eomTotal, nil
		}
		hdrs = applyHeaderMods(hdrs, r.Mods, c.c.protocol&pHdrLeadSpc != 0)
	}
	o.Action = "accept"
	if quarantined {
		o.Action = "quarantine"
	}
	return o, time.Since(t0), eomTotal, nil
}

// replyAction names the effect of a milter's reply on the message.
func replyAction(r reply) string {
	switch r.Code {
	case repReject:
		return "reject"
	case repTempfail:
		return "tempfail"
	case repDiscard:
		return "discard"
	case repReplyCode:
		if strings.HasPrefix(r.Text, "4") {
			return "tempfail"
		}
		return "reject"
	}
	return "accept"
}

var dmarcRE = regexp.MustCompile(`(?i)\bdmarc\s*=\s*([a-z]+)`)

// dmarcResult extracts the dmarc= result of an Authentication-Results value.
func dmarcResult(v string) string {
	if m := dmarcRE.FindStringSubmatch(v); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1)*p/100 + 0.5)
	return sorted[i]
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}
