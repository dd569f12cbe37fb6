package milterproto

import (
	"bytes"
	"encoding/binary"
)

// Decoders of the event payloads (milter-protocol.txt, "Command
// descriptions"). They return views into the payload and copy nothing.

// cstring splits a NUL-terminated string off p.
func cstring(p []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return nil, p, false
	}
	return p[:i], p[i+1:], true
}

// optNeg is an SMFIC_OPTNEG payload: version, actions, protocol (uint32
// each); anything after them is ignored, as libmilter does.
type optNeg struct {
	version  uint32
	actions  Action
	protocol Protocol
}

func decodeOptNeg(p []byte) (optNeg, bool) {
	if len(p) < 12 {
		return optNeg{}, false
	}
	return optNeg{
		version:  binary.BigEndian.Uint32(p),
		actions:  Action(binary.BigEndian.Uint32(p[4:])),
		protocol: Protocol(binary.BigEndian.Uint32(p[8:])),
	}, true
}

// connectInfo is an SMFIC_CONNECT payload.
type connectInfo struct {
	host   []byte
	family Family
	port   uint16
	addr   []byte
}

// decodeConnect reads "hostname\0", the family byte, and unless the family
// is 'U' a network-order port and "address\0".
func decodeConnect(p []byte) (connectInfo, bool) {
	var ci connectInfo
	var ok bool
	ci.host, p, ok = cstring(p)
	if !ok || len(p) < 1 {
		return ci, false
	}
	ci.family, p = Family(p[0]), p[1:]
	switch ci.family {
	case FamilyUnknown:
		return ci, true
	case FamilyUnix, FamilyInet, FamilyInet6:
	default:
		return ci, false
	}
	if len(p) < 2 {
		return ci, false
	}
	ci.port, p = binary.BigEndian.Uint16(p), p[2:]
	ci.addr, _, ok = cstring(p)
	return ci, ok
}

// decodeHeader reads "name\0value\0". The name may not be empty. The value
// is everything up to the packet's last byte, which must be its NUL: a
// value with a NUL inside (Postfix cuts values at the first NUL, other
// clients may not) reaches the handler whole rather than cut short, so a
// field cannot hide what follows the NUL from the filter.
func decodeHeader(p []byte) (name, value []byte, ok bool) {
	name, p, ok = cstring(p)
	if !ok || len(name) == 0 || len(p) == 0 || p[len(p)-1] != 0 {
		return nil, nil, false
	}
	return name, p[:len(p)-1], true
}

// decodeAddress reads the first NUL-terminated string of SMFIC_MAIL or
// SMFIC_RCPT (the address as the client wrote it, angle brackets
// included) and the ESMTP arguments after it.
func decodeAddress(p []byte) (addr []byte, args Args, ok bool) {
	addr, p, ok = cstring(p)
	if !ok {
		return nil, nil, false
	}
	if len(p) > 0 && p[len(p)-1] != 0 {
		return nil, nil, false // an unterminated argument
	}
	return addr, Args(p), true
}

// decodeString reads a payload that is one NUL-terminated string (HELO,
// UNKNOWN). A missing terminator is tolerated: the payload is the string.
func decodeString(p []byte) []byte {
	if s, _, ok := cstring(p); ok {
		return s
	}
	return p
}

// Args are the ESMTP arguments of MAIL or RCPT, each NUL-terminated, as
// received. Next walks them without copying.
type Args []byte

// Next returns the first argument and the ones after it; ok is false when
// there are none left.
func (a Args) Next() (arg []byte, rest Args, ok bool) {
	s, r, ok := cstring(a)
	return s, Args(r), ok
}

// Len is the number of arguments.
func (a Args) Len() int { return bytes.Count(a, []byte{0}) }

// StripAngles removes the angle brackets around an address: every '<' and
// '>' at either end, as go-milter v0.5.0 does (strings.Trim(addr, "<>")),
// so "<>" (the null sender) becomes empty.
func StripAngles(addr []byte) []byte {
	for len(addr) > 0 && (addr[0] == '<' || addr[0] == '>') {
		addr = addr[1:]
	}
	for len(addr) > 0 && (addr[len(addr)-1] == '<' || addr[len(addr)-1] == '>') {
		addr = addr[:len(addr)-1]
	}
	return addr
}
