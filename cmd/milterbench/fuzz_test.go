package main

import (
	"encoding/binary"
	"testing"
)

// FuzzApplyOptneg feeds arbitrary SMFIC_OPTNEG replies to the negotiation
// decoder: it never panics, and on success the version is one Postfix
// accepts and every macro list belongs to a known stage.
func FuzzApplyOptneg(f *testing.F) {
	ok := binary.BigEndian.AppendUint32(nil, 6)
	ok = binary.BigEndian.AppendUint32(ok, 0x131)
	ok = binary.BigEndian.AppendUint32(ok, 0x100080)
	f.Add(ok)
	f.Add(append(binary.BigEndian.AppendUint32(append([]byte{}, ok...), stageMail), "{client_addr} i\x00"...))
	f.Add(append(binary.BigEndian.AppendUint32(append([]byte{}, ok...), 99), "x"...))
	f.Add([]byte{0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &milterConn{macros: defaultMacros}
		if err := m.applyOptneg(data); err != nil {
			return
		}
		if m.version < 2 || m.version > mtaVersion || m.actions&^uint32(mtaActions) != 0 {
			t.Errorf("accepted version %d actions %#x", m.version, m.actions)
		}
	})
}

// FuzzParseModification feeds arbitrary end-of-message replies to the
// modification decoder: it never panics, and a decoded header change has
// a name that holds no NUL.
func FuzzParseModification(f *testing.F) {
	f.Add(byte(repInsHeader), []byte("\x00\x00\x00\x00Authentication-Results\x00mx; dmarc=pass\x00"))
	f.Add(byte(repAddHeader), []byte("X\x00y\x00"))
	f.Add(byte(repChgHeader), []byte("\x00\x00\x00\x01X\x00\x00"))
	f.Add(byte(repQuarantine), []byte("reason\x00"))
	f.Add(byte('Z'), []byte{})
	f.Fuzz(func(t *testing.T, code byte, data []byte) {
		mod, err := parseModification(code, data)
		if err != nil {
			return
		}
		for _, c := range []byte(mod.Name) {
			if c == 0 {
				t.Errorf("name %q holds NUL", mod.Name)
			}
		}
	})
}
