package milterproto

import "bytes"

// Macros holds the macros the MTA sent (SMFIC_MACRO), one small table per
// event they were sent for. A macro packet replaces the table of its event;
// the tables of a message (MAIL onwards) are emptied at ABORT and the ones
// after MAIL when a new MAIL arrives, so a lookup never sees the previous
// message's values. A table is the packet's payload copied into a buffer
// kept across packets: storing one costs a copy and no allocation once the
// buffer is big enough, and a lookup scans a few name/value pairs.
type Macros struct {
	tables [numSlots]macroTable
}

type macroTable struct {
	buf []byte // name\0value\0... as received
	set bool
}

// Macro slots, in the order of the events in a session; Get searches them
// from the last.
const (
	slotConnect = iota
	slotHelo
	slotUnknown
	slotMail
	slotRcpt
	slotData
	slotHeader
	slotEOH
	slotBody
	slotEOM
	numSlots
	slotNone = -1
)

// macroSlot is the table of the event cmd (slotNone for a command that has
// no macros).
func macroSlot(cmd Command) int {
	switch cmd {
	case CmdConnect:
		return slotConnect
	case CmdHelo:
		return slotHelo
	case CmdUnknown:
		return slotUnknown
	case CmdMail:
		return slotMail
	case CmdRcpt:
		return slotRcpt
	case CmdData:
		return slotData
	case CmdHeader:
		return slotHeader
	case CmdEOH:
		return slotEOH
	case CmdBody:
		return slotBody
	case CmdEOM:
		return slotEOM
	}
	return slotNone
}

// maxKeptMacroBuf bounds the buffer a table keeps between packets.
const maxKeptMacroBuf = 4 << 10

// store replaces the table of the event p[0] with the pairs after it. It
// reports false for an empty payload. A macro packet for a command that has
// no macros is accepted and ignored, as libmilter does.
func (m *Macros) store(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	slot := macroSlot(Command(p[0]))
	if slot == slotNone {
		return true
	}
	t := &m.tables[slot]
	if cap(t.buf) > maxKeptMacroBuf && len(p)-1 <= maxKeptMacroBuf {
		t.buf = nil
	}
	t.buf = append(t.buf[:0], p[1:]...)
	t.set = true
	return true
}

// clearFrom empties the tables from slot on.
func (m *Macros) clearFrom(slot int) {
	for i := slot; i < numSlots; i++ {
		m.tables[i].buf = m.tables[i].buf[:0]
		m.tables[i].set = false
	}
}

// Get returns the value of the macro name as the MTA spelled it ("i",
// "{client_addr}"), from the latest event that defined it. The value is
// valid until the next macro packet of that event; ok is false when no
// table has the name. It does not allocate.
func (m *Macros) Get(name string) (value []byte, ok bool) {
	for slot := numSlots - 1; slot >= 0; slot-- {
		t := &m.tables[slot]
		if !t.set {
			continue
		}
		if v, ok := lookup(t.buf, name); ok {
			return v, true
		}
	}
	return nil, false
}

// GetString is Get as a string ("" when undefined); it allocates for a
// non-empty value.
func (m *Macros) GetString(name string) string {
	v, _ := m.Get(name)
	return string(v)
}

// lookup scans name\0value\0 pairs. A last name without value, or a last
// string without its NUL, reads as if the packet ended with the NULs.
func lookup(b []byte, name string) ([]byte, bool) {
	for len(b) > 0 {
		var k, v []byte
		k, b = next(b)
		v, b = next(b)
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}

func next(b []byte) (s, rest []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+1:]
}
