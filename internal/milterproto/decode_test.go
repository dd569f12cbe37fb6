package milterproto

import (
	"encoding/binary"
	"testing"
)

func TestDecodeConnect(t *testing.T) {
	port := func(p uint16) string {
		var b [2]byte
		binary.BigEndian.PutUint16(b[:], p)
		return string(b[:])
	}
	tests := []struct {
		name, in   string
		ok         bool
		host, addr string
		fam        Family
		port       uint16
	}{
		{"inet", "mail.example\x004" + port(25) + "192.0.2.1\x00", true, "mail.example", "192.0.2.1", FamilyInet, 25},
		{"inet6", "[2001:db8::1]\x006" + port(40000) + "2001:db8::1\x00", true, "[2001:db8::1]", "2001:db8::1", FamilyInet6, 40000},
		{"unix", "localhost\x00L" + port(0) + "/run/x.sock\x00", true, "localhost", "/run/x.sock", FamilyUnix, 0},
		{"unknown family has nothing after it", "h\x00U", true, "h", "", FamilyUnknown, 0},
		{"unknown family, trailing bytes ignored", "h\x00Ujunk", true, "h", "", FamilyUnknown, 0},
		{"empty host", "\x004" + port(1) + "192.0.2.1\x00", true, "", "192.0.2.1", FamilyInet, 1},
		{"no family", "h\x00", false, "", "", 0, 0},
		{"host unterminated", "host", false, "", "", 0, 0},
		{"bad family", "h\x00X" + port(1) + "a\x00", false, "", "", 0, 0},
		{"port cut", "h\x004\x01", false, "", "", 0, 0},
		{"address unterminated", "h\x004" + port(1) + "192.0.2.1", false, "", "", 0, 0},
		{"empty", "", false, "", "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ci, ok := decodeConnect([]byte(tt.in))
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if string(ci.host) != tt.host || string(ci.addr) != tt.addr || ci.family != tt.fam || ci.port != tt.port {
				t.Errorf("got host %q family %c port %d addr %q", ci.host, ci.family, ci.port, ci.addr)
			}
		})
	}
}

func TestDecodeHeader(t *testing.T) {
	tests := []struct {
		in          string
		ok          bool
		name, value string
	}{
		{"From\x00 a@b.example\x00", true, "From", " a@b.example"},
		{"Subject\x00 one\n\ttwo\x00", true, "Subject", " one\n\ttwo"},
		{"X-Empty\x00\x00", true, "X-Empty", ""},
		{"X\x00v\x00trailing", false, "", ""},
		{"From\x00 a@b.example\x00<c@d.example>\x00", true, "From", " a@b.example\x00<c@d.example>"},
		{"\x00value\x00", false, "", ""},
		{"From\x00 unterminated", false, "", ""},
		{"From", false, "", ""},
		{"", false, "", ""},
	}
	for _, tt := range tests {
		n, v, ok := decodeHeader([]byte(tt.in))
		if ok != tt.ok || ok && (string(n) != tt.name || string(v) != tt.value) {
			t.Errorf("decodeHeader(%q) = %q, %q, %v; want %q, %q, %v", tt.in, n, v, ok, tt.name, tt.value, tt.ok)
		}
	}
}

func TestDecodeAddress(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		addr string
		args []string
	}{
		{"<a@b.example>\x00", true, "<a@b.example>", nil},
		{"<>\x00", true, "<>", nil},
		{"<a@b.example>\x00SIZE=100\x00BODY=8BITMIME\x00", true, "<a@b.example>", []string{"SIZE=100", "BODY=8BITMIME"}},
		{"<a@b.example>\x00SIZE=100", false, "", nil},
		{"<a@b.example>", false, "", nil},
		{"", false, "", nil},
	}
	for _, tt := range tests {
		a, args, ok := decodeAddress([]byte(tt.in))
		if ok != tt.ok {
			t.Errorf("decodeAddress(%q) ok = %v", tt.in, ok)
			continue
		}
		if !ok {
			continue
		}
		if string(a) != tt.addr {
			t.Errorf("decodeAddress(%q) addr = %q", tt.in, a)
		}
		var got []string
		for arg, rest, ok := args.Next(); ok; arg, rest, ok = rest.Next() {
			got = append(got, string(arg))
		}
		if len(got) != len(tt.args) || args.Len() != len(tt.args) {
			t.Fatalf("args %q (Len %d), want %q", got, args.Len(), tt.args)
		}
		for i := range got {
			if got[i] != tt.args[i] {
				t.Errorf("arg %d = %q, want %q", i, got[i], tt.args[i])
			}
		}
	}
}

func TestStripAngles(t *testing.T) {
	for in, want := range map[string]string{
		"<a@b.example>": "a@b.example",
		"<>":            "",
		"a@b.example":   "a@b.example",
		"<<a@b>>":       "a@b",
		"<a@b":          "a@b",
		"":              "",
		">":             "",
		"<a<b>c>":       "a<b>c",
	} {
		if got := string(StripAngles([]byte(in))); got != want {
			t.Errorf("StripAngles(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeOptNeg(t *testing.T) {
	p := make([]byte, 12)
	binary.BigEndian.PutUint32(p, 6)
	binary.BigEndian.PutUint32(p[4:], 0x1ff)
	binary.BigEndian.PutUint32(p[8:], 0x1fffff)
	o, ok := decodeOptNeg(p)
	if !ok || o.version != 6 || o.actions != 0x1ff || o.protocol != 0x1fffff {
		t.Errorf("decodeOptNeg = %+v, %v", o, ok)
	}
	if _, ok := decodeOptNeg(p[:11]); ok {
		t.Error("11 bytes decoded")
	}
}

func TestMacros(t *testing.T) {
	var m Macros
	store := func(s string) {
		t.Helper()
		if !m.store([]byte(s)) {
			t.Fatalf("store(%q) refused", s)
		}
	}
	get := func(name, want string, wantOK bool) {
		t.Helper()
		v, ok := m.Get(name)
		if ok != wantOK || string(v) != want {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", name, v, ok, want, wantOK)
		}
	}
	if m.store(nil) {
		t.Error("empty macro packet accepted")
	}
	store("Cj\x00mx.example\x00{daemon_name}\x00smtpd\x00")
	store("M{client_addr}\x00192.0.2.1\x00i\x00\x00{auth_authen}\x00alice\x00")
	get("j", "mx.example", true)
	get("{client_addr}", "192.0.2.1", true)
	get("i", "", true) // defined, empty
	get("{auth_authen}", "alice", true)
	get("{nope}", "", false)
	get("{client", "", false)

	// A later event's value wins; its packet replaces its table only.
	store("Ri\x00QID1\x00")
	get("i", "QID1", true)
	store("Ri\x00QID2\x00")
	get("i", "QID2", true)
	get("{auth_authen}", "alice", true)

	// An odd last name reads as defined with an empty value; an
	// unterminated value as ending with the packet.
	store("Ea\x00b\x00last")
	get("a", "b", true)
	get("last", "", true)
	store("Ea\x00unterminated")
	get("a", "unterminated", true)

	// Macros of a command without macros are ignored.
	store("Qx\x00y\x00")
	get("x", "", false)
	store("C") // a table with no pair
	get("j", "", false)

	// ABORT forgets the message's tables, not the connection's.
	store("Cj\x00mx.example\x00")
	m.clearFrom(slotMail)
	get("i", "", false)
	get("{auth_authen}", "", false)
	get("j", "mx.example", true)
}

func TestMacrosBigTableShrinks(t *testing.T) {
	var m Macros
	big := append([]byte("Mk\x00"), make([]byte, 3*maxKeptMacroBuf)...)
	m.store(big)
	m.store([]byte("Mk\x00v\x00"))
	if c := cap(m.tables[slotMail].buf); c > maxKeptMacroBuf {
		t.Errorf("table keeps %d bytes after a small packet", c)
	}
	if v, _ := m.Get("k"); string(v) != "v" {
		t.Errorf("k = %q", v)
	}
}

func TestMacrosGetDoesNotAllocate(t *testing.T) {
	var m Macros
	m.store([]byte("Cj\x00mx.example\x00"))
	m.store([]byte("M{client_addr}\x00192.0.2.1\x00{auth_authen}\x00\x00"))
	m.store([]byte("Ei\x00QID\x00"))
	n := testing.AllocsPerRun(100, func() {
		if v, ok := m.Get("j"); !ok || len(v) == 0 {
			t.Fatal("j missing")
		}
	})
	if n != 0 {
		t.Errorf("Get allocates %v times", n)
	}
}

func TestReplies(t *testing.T) {
	n := Negotiated{Protocol: ProtoNRHeader | ProtoNREOH | ProtoNRBody | ProtoNRMail}
	for cmd, want := range map[Command]bool{
		CmdConnect: true, CmdHelo: true, CmdMail: false, CmdRcpt: true, CmdData: true,
		CmdHeader: false, CmdEOH: false, CmdBody: false, CmdEOM: true, CmdUnknown: true,
		CmdMacro: false, CmdAbort: false, CmdQuit: false, CmdQuitNC: false, CmdOptNeg: true,
	} {
		if got := n.Replies(cmd); got != want {
			t.Errorf("Replies(%c) = %v, want %v", cmd, got, want)
		}
	}
}

func TestResponse(t *testing.T) {
	var zero Response
	if !zero.IsContinue() || zero.Code() != 'c' {
		t.Errorf("zero Response: code %c", zero.Code())
	}
	for r, code := range map[Response]byte{Continue: 'c', Accept: 'a', Reject: 'r', TempFail: 't', Discard: 'd'} {
		if r.Code() != code {
			t.Errorf("code %c, want %c", r.Code(), code)
		}
	}
	r := ReplyCode("550 5.7.1 no")
	if r.Code() != 'y' || r.Text() != "550 5.7.1 no" || r.IsContinue() {
		t.Errorf("ReplyCode: %c %q", r.Code(), r.Text())
	}
}

func TestAppendLF(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\n\tb":     "a\n\tb",
		"plain":        "plain",
		"\r\n\r\n":     "\n\n",
		"lone\rcr\n":   "lone\rcr\n",
		"x\r\n\r":      "x\n\r",
		"":             "",
		"a\r\r\n\tend": "a\r\n\tend",
	} {
		if got := string(appendLF(nil, in)); got != want {
			t.Errorf("appendLF(%q) = %q, want %q", in, got, want)
		}
	}
}
