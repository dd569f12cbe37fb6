package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

var (
	smallOnce   sync.Once
	smallCorpus *corpus
	smallErr    error
)

// testCorpus is a small corpus shared by the tests (RSA key generation
// takes about a second).
func testCorpus(t testing.TB) *corpus {
	t.Helper()
	smallOnce.Do(func() {
		smallCorpus, smallErr = newCorpus(corpusConfig{Seed: 7, Sessions: 50, PerSession: 4, BodyMin: 2 << 10, BodyMax: 50 << 10})
	})
	if smallErr != nil {
		t.Fatal(smallErr)
	}
	return smallCorpus
}

func TestCorpusDeterministic(t *testing.T) {
	a := testCorpus(t)
	b, err := newCorpus(corpusConfig{Seed: 7, Sessions: 50, PerSession: 4, BodyMin: 2 << 10, BodyMax: 50 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if a.Zone != b.Zone {
		t.Error("same seed, different zones")
	}
	for i := range a.Sessions {
		for j, m := range a.Sessions[i].Msgs {
			if !bytes.Equal(m.Body, b.Sessions[i].Msgs[j].Body) || m.Want != b.Sessions[i].Msgs[j].Want {
				t.Fatalf("session %d message %d differs", i, j)
			}
		}
	}
	if c, _ := newCorpus(corpusConfig{Seed: 8, Sessions: 1, PerSession: 1, BodyMin: 100, BodyMax: 100}); c.Zone == a.Zone {
		t.Error("another seed, same zone")
	}
}

// TestCorpusPerSession: without a number of sessions the corpus has 480
// messages whatever their number per session, over the same zone (the
// DNS server of a run does not depend on the shape); no messages per
// session is an error.
func TestCorpusPerSession(t *testing.T) {
	var zone string
	for _, per := range []int{1, 4} {
		c, err := newCorpus(corpusConfig{Seed: 7, PerSession: per, BodyMin: 100, BodyMax: 200})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Sessions) != corpusMessages/per || c.messages() != corpusMessages {
			t.Errorf("%d per session: %d sessions, %d messages; want %d, %d", per, len(c.Sessions), c.messages(), corpusMessages/per, corpusMessages)
		}
		for i, s := range c.Sessions {
			if len(s.Msgs) != per {
				t.Fatalf("%d per session: session %d has %d", per, i, len(s.Msgs))
			}
		}
		if zone != "" && c.Zone != zone {
			t.Errorf("%d per session: another zone", per)
		}
		zone = c.Zone
	}
	if _, err := newCorpus(corpusConfig{Seed: 7, PerSession: 0, BodyMin: 100, BodyMax: 200}); err == nil {
		t.Error("0 messages per session: no error")
	}
}

// TestCorpusMix checks that the corpus holds what the benchmark claims:
// every scenario, pass and fail, each action, RSA and Ed25519 signatures,
// dual-signed messages, plain and multipart bodies of 2 to 50 KB.
func TestCorpusMix(t *testing.T) {
	c := testCorpus(t)
	seen := map[string]int{}
	minBody, maxBody := 1<<30, 0
	for _, s := range c.Sessions {
		for _, m := range s.Msgs {
			seen["scenario="+m.Scenario]++
			seen["action="+m.Want.Action]++
			seen["dmarc="+m.Want.DMARC]++
			sigs := 0
			for _, f := range m.Headers {
				switch {
				case f.Name == "DKIM-Signature":
					sigs++
					if strings.Contains(f.Value, "a=ed25519-sha256") {
						seen["ed25519"]++
					} else {
						seen["rsa"]++
					}
				case f.Name == "Content-Type":
					seen[strings.Fields(strings.TrimSpace(f.Value))[0]]++
				}
			}
			if sigs == 2 {
				seen["dual"]++
			}
			minBody, maxBody = min(minBody, len(m.Body)), max(maxBody, len(m.Body))
		}
	}
	for _, k := range []string{"scenario=direct", "scenario=spf-only", "scenario=forwarded", "scenario=list", "scenario=forged",
		"scenario=strict", "action=accept", "action=reject", "action=quarantine", "dmarc=pass", "dmarc=fail", "dmarc=none",
		"rsa", "ed25519", "dual", "text/plain;", "multipart/alternative;", "multipart/mixed;"} {
		if seen[k] == 0 {
			t.Errorf("corpus has no %s (%v)", k, seen)
		}
	}
	if minBody < 2<<10 || maxBody > 52<<10 || maxBody < 40<<10 {
		t.Errorf("bodies from %d to %d bytes", minBody, maxBody)
	}
}

// TestCorpusSignatures verifies every message's DKIM signatures with
// go-msgauth against the corpus zone served by the test DNS server, through
// pkg/cache: intact messages verify for the From: domain's organizational
// domain (or the forger's), list copies fail.
func TestCorpusSignatures(t *testing.T) {
	c := testCorpus(t)
	srv, err := startDNS(c.Zone, "")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	res, err := cache.New(cache.Config{Nameservers: []string{srv.addr}})
	if err != nil {
		t.Fatal(err)
	}
	opts := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		return res.LookupTXT(context.Background(), name)
	}}
	for _, s := range c.Sessions {
		for _, m := range s.Msgs {
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(rawMessage(m)), opts)
			if err != nil {
				t.Fatalf("%s: %v", m.QueueID, err)
			}
			pass, fail := 0, 0
			for _, v := range vs {
				if v.Err == nil {
					pass++
				} else {
					fail++
				}
			}
			switch m.Scenario {
			case scSPFOnly:
				if len(vs) != 0 {
					t.Errorf("%s: spf-only message has %d signatures", m.QueueID, len(vs))
				}
			case scList:
				if pass != 0 || fail == 0 {
					t.Errorf("%s: list copy: %d pass, %d fail", m.QueueID, pass, fail)
				}
			case scForged:
				if fail != 0 {
					t.Errorf("%s: forged: %d signatures fail", m.QueueID, fail)
				}
			default:
				if pass == 0 || fail != 0 {
					t.Errorf("%s: %s: %d pass, %d fail", m.QueueID, m.Scenario, pass, fail)
				}
			}
		}
	}
}

// rawMessage rebuilds the CRLF message from Postfix's view of it.
func rawMessage(m *message) []byte {
	var b bytes.Buffer
	for _, f := range m.Headers {
		b.WriteString(f.Name + ":" + strings.ReplaceAll(f.Value, "\n", "\r\n") + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(m.Body)
	return b.Bytes()
}

// fromRule is a stand-in milter for the go-milter test: reject mail whose
// From: is in alpha.example, hold bravo.example, add an A-R with dmarc=pass
// to the rest. The test computes what this gives on the corpus on its own.
type fromRule struct {
	milter.NoOpMilter
	from string
}

func (f *fromRule) Header(name, value string, _ *milter.Modifier) (milter.Response, error) {
	if strings.EqualFold(name, "From") {
		f.from = strings.TrimRight(value[strings.LastIndexByte(value, '@')+1:], ">")
	}
	return milter.RespContinue, nil
}

func (f *fromRule) Body(m *milter.Modifier) (milter.Response, error) {
	switch {
	case strings.HasSuffix(f.from, "alpha.example"):
		return milter.NewResponseStr('y', "550 5.7.1 rejected"), nil
	case strings.HasSuffix(f.from, "bravo.example"):
		m.Quarantine("bench")
	}
	m.InsertHeader(0, "Authentication-Results", "mx.bench.example; dmarc=pass header.from="+f.from)
	return milter.RespAccept, nil
}

func (f *fromRule) Abort(*milter.Modifier) error { f.from = ""; return nil }

// TestLoadAgainstGoMilter runs the corpus through a go-milter v0.5.0 server
// (protocol version 2) at concurrency 4 and checks every message got the
// answer the stand-in milter gives.
func TestLoadAgainstGoMilter(t *testing.T) {
	c := testCorpus(t)
	sock := t.TempDir() + "/gomilter.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &milter.Server{
		NewMilter: func() milter.Milter { return &fromRule{} },
		Actions:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine,
		Protocol:  milter.OptNoUnknown,
	}
	go srv.Serve(ln)
	defer srv.Close()
	want := map[string]int{}
	for _, s := range c.Sessions {
		for _, m := range s.Msgs {
			switch d := fromDomain(m); {
			case strings.HasSuffix(d, "alpha.example"):
				want["reject"]++
			case strings.HasSuffix(d, "bravo.example"):
				want["quarantine"]++
				want["dmarc=pass"]++
			default:
				want["accept"]++
				want["dmarc=pass"]++
			}
		}
	}
	rec, _ := runPhase(context.Background(), c, loadConfig{Milters: []string{"unix:" + sock}, Concurrency: 4,
		Sessions: len(c.Sessions), Timeout: 10 * time.Second}, 0)
	if rec.errors != 0 {
		t.Fatalf("errors: %v", rec.errSamples)
	}
	if rec.messages != c.messages() || len(rec.eom) != c.messages() {
		t.Errorf("%d messages answered (%d latencies), want %d", rec.messages, len(rec.eom), c.messages())
	}
	for k, n := range want {
		if rec.verdicts[k] != n {
			t.Errorf("%s = %d, want %d (all: %v)", k, rec.verdicts[k], n, rec.verdicts)
		}
	}
}
