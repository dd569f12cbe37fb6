package main

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeMilter is a raw milter-protocol server that records every packet it
// receives, so that tests can check what the generator puts on the wire.
type fakeMilter struct {
	addr     string
	version  uint32
	protocol uint32
	symlist  map[uint32]string // stage → macro names
	eomMods  [][]byte          // raw reply packets sent before the EOM decision

	mu      sync.Mutex
	packets []packet
	closed  chan struct{} // one value per connection that ended
}

type packet struct {
	code byte
	data string
}

func startFakeMilter(t *testing.T, protocol uint32, symlist map[uint32]string, eomMods ...[]byte) *fakeMilter {
	t.Helper()
	return startFakeMilterVersion(t, 6, protocol, symlist, eomMods...)
}

func startFakeMilterVersion(t *testing.T, version, protocol uint32, symlist map[uint32]string, eomMods ...[]byte) *fakeMilter {
	t.Helper()
	f := &fakeMilter{addr: filepath.Join(t.TempDir(), "fake.sock"), version: version, protocol: protocol, symlist: symlist,
		eomMods: eomMods, closed: make(chan struct{}, 100)}
	ln, err := net.Listen("unix", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func writePacket(w io.Writer, code byte, data []byte) {
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(data)+1))
	hdr[4] = code
	w.Write(append(hdr[:], data...))
}

func (f *fakeMilter) serve(c net.Conn) {
	defer func() { f.closed <- struct{}{} }()
	defer c.Close()
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		f.mu.Lock()
		f.packets = append(f.packets, packet{b[0], string(b[1:])})
		f.mu.Unlock()
		f.answer(c, b[0])
	}
}

func (f *fakeMilter) answer(c net.Conn, code byte) {
	nr := map[byte]uint32{cmdConnect: pNRConn, cmdHelo: pNRHelo, cmdMail: pNRMail, cmdRcpt: pNRRcpt,
		cmdData: pNRData, cmdHeader: pNRHdr, cmdEOH: pNREOH, cmdBody: pNRBody}
	switch code {
	case cmdOptneg:
		p := make([]byte, 12)
		binary.BigEndian.PutUint32(p[0:], f.version)
		binary.BigEndian.PutUint32(p[4:], 0x1|0x10|0x20|0x100)
		binary.BigEndian.PutUint32(p[8:], f.protocol)
		for stage, names := range f.symlist {
			p = binary.BigEndian.AppendUint32(p, stage)
			p = append(append(p, names...), 0)
		}
		writePacket(c, cmdOptneg, p)
	case cmdMacro, cmdAbort, cmdQuit:
	case cmdEOM:
		for _, m := range f.eomMods {
			writePacket(c, m[0], m[1:])
		}
		writePacket(c, repAccept, nil)
	default:
		if f.protocol&nr[code] == 0 {
			writePacket(c, repContinue, nil)
		}
	}
}

// recorded returns the packets once the session's connection has ended.
func (f *fakeMilter) recorded(t *testing.T) []packet {
	t.Helper()
	select {
	case <-f.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the milter connection did not end")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]packet(nil), f.packets...)
}

// testSession is a one-message session built by hand.
func testSession() *session {
	return &session{IP: "198.51.100.1", PTR: "mail.alpha.example", Helo: "mail.alpha.example", Port: 40001,
		Msgs: []*message{{
			Scenario: scDirect, MailFrom: "b@alpha.example", Rcpt: "u@inbox.example", QueueID: "4QABC",
			Headers: []field{{"From", " A <a@alpha.example>"}, {"Subject", " one\n\ttwo"}, {"X-Tight", "x"}},
			Body:    []byte("hello\r\n"), Want: want{Action: "accept", DMARC: ""},
		}}}
}

func runOne(t *testing.T, milters ...string) *recorder {
	t.Helper()
	rec := newRecorder()
	cfg := loadConfig{Milters: milters, Concurrency: 1, Timeout: 5 * time.Second}
	if err := runSession(cfg, testSession(), rec); err != nil {
		t.Fatal(err)
	}
	if rec.errors != 0 {
		t.Fatalf("errors: %v", rec.errSamples)
	}
	return rec
}

// TestWireLikePostfix checks the packet sequence of one session with a
// milter that negotiated no reply flags: a macro packet before every event,
// one space eaten after the colon, folds as "\n", ABORT after the message and
// QUIT at the end.
func TestWireLikePostfix(t *testing.T) {
	f := startFakeMilter(t, 0, nil)
	runOne(t, "unix:"+f.addr)
	got := f.recorded(t)
	want := []packet{
		{cmdOptneg, "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"},
		{cmdMacro, "Cj\x00mx.bench.example\x00{daemon_name}\x00mx.bench.example\x00{daemon_addr}\x00192.0.2.25\x00v\x00Postfix 3.7.11\x00_\x00mail.alpha.example [198.51.100.1]\x00"},
		{cmdConnect, "mail.alpha.example\x004\x9c\x41198.51.100.1\x00"},
		{cmdMacro, "H"},
		{cmdHelo, "mail.alpha.example\x00"},
		{cmdMacro, "M{mail_addr}\x00b@alpha.example\x00"},
		{cmdMail, "<b@alpha.example>\x00"},
		{cmdMacro, "Ri\x004QABC\x00{rcpt_addr}\x00u@inbox.example\x00"},
		{cmdRcpt, "<u@inbox.example>\x00"},
		{cmdMacro, "Ti\x004QABC\x00"},
		{cmdData, ""},
		{cmdMacro, "Li\x004QABC\x00"},
		{cmdHeader, "From\x00A <a@alpha.example>\x00"},
		{cmdMacro, "Li\x004QABC\x00"},
		{cmdHeader, "Subject\x00one\n\ttwo\x00"},
		{cmdMacro, "Li\x004QABC\x00"},
		{cmdHeader, "X-Tight\x00x\x00"},
		{cmdMacro, "Ni\x004QABC\x00"},
		{cmdEOH, ""},
		{cmdMacro, "Bi\x004QABC\x00"},
		{cmdBody, "hello\r\n"},
		{cmdMacro, "Ei\x004QABC\x00"},
		{cmdEOM, ""},
		{cmdAbort, ""},
		{cmdQuit, ""},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(packet{})); d != "" {
		t.Errorf("packets (-want +got):\n%s", d)
	}
}

// TestWireNegotiatedOptions checks that the milter's choices are honoured:
// its macro list for MAIL, the leading space kept with HDR_LEADSPC, events
// it said not to send are not sent (their macros still are), and replies it
// said it would not send are not waited for (the test would time out).
func TestWireNegotiatedOptions(t *testing.T) {
	proto := uint32(pHdrLeadSpc | pNRHdr | pNoHelo | pNRConn | pNRMail | pNRRcpt | pNRData | pNREOH | pNRBody)
	f := startFakeMilter(t, proto, map[uint32]string{stageMail: "{client_addr} s i {auth_authen}"})
	runOne(t, "unix:"+f.addr)
	got := f.recorded(t)
	var helo, mailMacros string
	var hdrs []string
	for _, p := range got {
		switch {
		case p.code == cmdHelo:
			helo = p.data
		case p.code == cmdMacro && p.data[0] == cmdMail:
			mailMacros = p.data
		case p.code == cmdHeader:
			hdrs = append(hdrs, p.data)
		}
	}
	if helo != "" {
		t.Errorf("HELO sent although the milter set SMFIP_NOHELO")
	}
	m, err := dialMilter("unix:"+f.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m.close()
	if d, want := m.describe(), "version 6, actions 0x131, protocol 0x1dd082 [NOHELO NR_HDR NR_CONN NR_MAIL NR_RCPT NR_DATA NR_EOH NR_BODY HDR_LEADSPC], macro lists [stage 2: {client_addr} s i {auth_authen}]"; d != want {
		t.Errorf("describe() = %q, want %q", d, want)
	}
	if want := "M{client_addr}\x00198.51.100.1\x00s\x00mail.alpha.example\x00"; mailMacros != want {
		t.Errorf("MAIL macros = %q, want %q", mailMacros, want)
	}
	wantHdrs := []string{"From\x00 A <a@alpha.example>\x00", "Subject\x00 one\n\ttwo\x00", "X-Tight\x00x\x00"}
	if d := cmp.Diff(wantHdrs, hdrs); d != "" {
		t.Errorf("headers with HDR_LEADSPC (-want +got):\n%s", d)
	}
}

// TestWireVersion2NoData checks that a version 2 milter (go-milter v0.5.0)
// gets neither SMFIC_DATA nor its macros, as with Postfix.
func TestWireVersion2NoData(t *testing.T) {
	f := startFakeMilterVersion(t, 2, 0, nil)
	runOne(t, "unix:"+f.addr)
	for _, p := range f.recorded(t) {
		if p.code == cmdData || (p.code == cmdMacro && p.data[0] == cmdData) {
			t.Errorf("version 2 milter got %q %q", p.code, p.data)
		}
	}
}

// TestChainSeesFirstMilterHeaders checks that the second milter of a chain
// receives the header the first one inserted, as Postfix does.
func TestChainSeesFirstMilterHeaders(t *testing.T) {
	ins := append([]byte{repInsHeader, 0, 0, 0, 0}, "Authentication-Results\x00mx.bench.example; dkim=pass header.d=alpha.example\x00"...)
	first := startFakeMilter(t, 0, nil, ins)
	second := startFakeMilter(t, pHdrLeadSpc, nil)
	rec := runOne(t, "unix:"+first.addr, "unix:"+second.addr)
	var hdrs []string
	for _, p := range second.recorded(t) {
		if p.code == cmdHeader {
			hdrs = append(hdrs, p.data)
		}
	}
	if len(hdrs) != 4 || hdrs[0] != "Authentication-Results\x00 mx.bench.example; dkim=pass header.d=alpha.example\x00" {
		t.Errorf("second milter's headers = %q", hdrs)
	}
	if rec.verdicts["accept"] != 1 {
		t.Errorf("verdicts = %v", rec.verdicts)
	}
}

func TestApplyHeaderMods(t *testing.T) {
	base := []field{{"Received", " a"}, {"Authentication-Results", " x; dmarc=pass"}, {"From", " f"}, {"Authentication-Results", " y"}}
	cases := []struct {
		name      string
		mods      []modification
		leadSpace bool
		want      []field
	}{
		{"add", []modification{{Code: repAddHeader, Name: "X", Value: "1"}}, false,
			append(append([]field{}, base...), field{"X", " 1"})},
		{"insert top, lead space", []modification{{Code: repInsHeader, Index: 0, Name: "A-R", Value: " v"}}, true,
			append([]field{{"A-R", " v"}}, base...)},
		{"delete second A-R", []modification{{Code: repChgHeader, Index: 2, Name: "authentication-results"}}, false,
			base[:3]},
		{"index 0 means 1", []modification{{Code: repChgHeader, Index: 0, Name: "Authentication-Results", Value: "z"}}, false,
			[]field{base[0], {"Authentication-Results", " z"}, base[2], base[3]}},
		{"change missing adds", []modification{{Code: repChgHeader, Index: 1, Name: "Y", Value: "n"}}, false,
			append(append([]field{}, base...), field{"Y", " n"})},
		{"quarantine ignored", []modification{{Code: repQuarantine, Value: "q"}}, false, base},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := applyHeaderMods(append([]field(nil), base...), tc.mods, tc.leadSpace)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestDMARCResult(t *testing.T) {
	for in, want := range map[string]string{
		"mx; spf=pass smtp.mailfrom=a; dmarc=pass (p=reject) header.from=a": "pass",
		"mx;\n\tdmarc = FAIL header.from=x":                                 "fail",
		"mx; dkim=pass header.d=a":                                          "",
		"mx; xdmarc=pass":                                                   "",
	} {
		if got := dmarcResult(in); got != want {
			t.Errorf("dmarcResult(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitMilterAddr(t *testing.T) {
	for _, bad := range []string{"", "unix:", "/tmp/x", "tcp:1.2.3.4:5"} {
		if _, _, err := splitMilterAddr(bad); err == nil {
			t.Errorf("splitMilterAddr(%q): no error", bad)
		}
	}
	if n, a, err := splitMilterAddr("inet:127.0.0.1:8894"); err != nil || n != "tcp" || a != "127.0.0.1:8894" {
		t.Errorf("inet: %s %s %v", n, a, err)
	}
}

// TestPIDOfMilter finds this test process from its own listening sockets.
func TestPIDOfMilter(t *testing.T) {
	f := startFakeMilter(t, 0, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, a := range []string{"unix:" + f.addr, "inet:" + ln.Addr().String()} {
		pid, err := pidOfMilter(a)
		if err != nil || pid != selfPID() {
			t.Errorf("pidOfMilter(%s) = %d, %v; want %d", a, pid, err, selfPID())
		}
	}
	if _, err := procCPU(selfPID()); err != nil {
		t.Error(err)
	}
	if hwm, rss, err := procMem(selfPID()); err != nil || hwm <= 0 || rss <= 0 {
		t.Errorf("procMem = %d, %d, %v", hwm, rss, err)
	}
}

func TestPhaseAgainstFake(t *testing.T) {
	f := startFakeMilter(t, pNRHdr, nil)
	c := &corpus{Sessions: []*session{testSession(), testSession()}}
	rec, _ := runPhase(context.Background(), c, loadConfig{Milters: []string{"unix:" + f.addr}, Concurrency: 3,
		Sessions: 10, Timeout: 5 * time.Second}, 0)
	if rec.messages != 10 || rec.verdicts["accept"] != 10 || rec.errors != 0 {
		t.Errorf("messages %d verdicts %v errors %v", rec.messages, rec.verdicts, rec.errSamples)
	}
}

func selfPID() int { return os.Getpid() }
