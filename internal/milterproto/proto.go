// Package milterproto is the filter side of the Sendmail milter protocol
// (versions 2 to 6 from the MTA, answered as version 6 or the MTA's lower
// one), written for one daemon that must spend as little CPU per message as
// it can.
//
// The protocol text is milter-protocol.txt and milter-protocol-extras.txt in
// github.com/emersion/go-milter's module; the MTA we are written against is
// Postfix's milter8.c. Every packet in both directions is a 4-byte
// big-endian length, a command (MTA to filter) or reply (filter to MTA)
// byte, then length-1 bytes of payload.
//
// What this package does for its caller:
//
//   - one Session per accepted connection: Serve reads packets through one
//     buffer, decodes each event without copying (the handler gets []byte
//     views valid only during its call) and calls the Handler;
//   - option negotiation: our actions ∩ the MTA's, our required protocol
//     flags plus the optional ones the MTA offered (the SMFIP_NR_* flags:
//     the MTA does not wait for those replies), SETSYMLIST macro lists;
//   - replies are written only for the events whose reply the MTA reads,
//     appended to one buffer; at end of message the modifications and the
//     final reply go out in one write;
//   - macros are kept per event in small reusable tables and looked up by
//     name, the later events' first (as libmilter's smfi_getsymval);
//   - an idle deadline before every read from the socket and on every
//     write of replies, a bound on the packet size, and a drain that closes
//     the connection between messages.
//
// A handler must not answer anything but Continue to an event whose reply
// the MTA will not read (Session.Replies tells which): the stream would
// desynchronise, so Serve ends the session with ErrReplyAtNoReplyStage
// instead. A decision taken at such a stage is the handler's to keep and
// give at end of message.
package milterproto

import (
	"errors"
)

// Command is the first byte of a packet from the MTA (SMFIC_*).
type Command byte

// Commands of milter-protocol.txt and milter-protocol-extras.txt.
const (
	CmdAbort   Command = 'A' // SMFIC_ABORT: the message ends, no reply
	CmdBody    Command = 'B' // SMFIC_BODY: a body chunk
	CmdConnect Command = 'C' // SMFIC_CONNECT
	CmdMacro   Command = 'D' // SMFIC_MACRO: macros of the next event, no reply
	CmdEOM     Command = 'E' // SMFIC_BODYEOB: end of message
	CmdHelo    Command = 'H' // SMFIC_HELO
	CmdQuitNC  Command = 'K' // SMFIC_QUIT_NC: the session ends, the connection is kept for a new one
	CmdHeader  Command = 'L' // SMFIC_HEADER
	CmdMail    Command = 'M' // SMFIC_MAIL
	CmdEOH     Command = 'N' // SMFIC_EOH: end of the header block
	CmdOptNeg  Command = 'O' // SMFIC_OPTNEG
	CmdQuit    Command = 'Q' // SMFIC_QUIT: the connection ends, no reply
	CmdRcpt    Command = 'R' // SMFIC_RCPT
	CmdData    Command = 'T' // SMFIC_DATA
	CmdUnknown Command = 'U' // SMFIC_UNKNOWN: an SMTP command the MTA does not know
)

// Reply codes (SMFIR_*) this package writes.
const (
	replyAccept     = 'a'
	replyContinue   = 'c'
	replyDiscard    = 'd'
	replyReject     = 'r'
	replyTempFail   = 't'
	replyReplyCode  = 'y'
	replyAddHeader  = 'h'
	replyInsHeader  = 'i'
	replyChgHeader  = 'm'
	replyQuarantine = 'q'
	replyOptNeg     = 'O'
)

// Action is the SMFIF_* mask of the modifications a filter may make.
type Action uint32

// Actions.
const (
	ActAddHeader    Action = 0x001 // SMFIF_ADDHDRS
	ActChangeBody   Action = 0x002 // SMFIF_CHGBODY
	ActAddRcpt      Action = 0x004 // SMFIF_ADDRCPT
	ActDelRcpt      Action = 0x008 // SMFIF_DELRCPT
	ActChangeHeader Action = 0x010 // SMFIF_CHGHDRS (also needed to insert)
	ActQuarantine   Action = 0x020 // SMFIF_QUARANTINE
	ActChangeFrom   Action = 0x040 // SMFIF_CHGFROM (v6)
	ActAddRcptPar   Action = 0x080 // SMFIF_ADDRCPT_PAR (v6)
	ActSetSymList   Action = 0x100 // SMFIF_SETSYMLIST (v6)
)

// Protocol is the SMFIP_* mask: events not sent, replies not read, and
// header formatting.
type Protocol uint32

// Protocol flags.
const (
	ProtoNoConnect  Protocol = 0x000001 // SMFIP_NOCONNECT
	ProtoNoHelo     Protocol = 0x000002 // SMFIP_NOHELO
	ProtoNoMail     Protocol = 0x000004 // SMFIP_NOMAIL
	ProtoNoRcpt     Protocol = 0x000008 // SMFIP_NORCPT
	ProtoNoBody     Protocol = 0x000010 // SMFIP_NOBODY
	ProtoNoHeaders  Protocol = 0x000020 // SMFIP_NOHDRS
	ProtoNoEOH      Protocol = 0x000040 // SMFIP_NOEOH
	ProtoNRHeader   Protocol = 0x000080 // SMFIP_NR_HDR: no reply to a header
	ProtoNoUnknown  Protocol = 0x000100 // SMFIP_NOUNKNOWN
	ProtoNoData     Protocol = 0x000200 // SMFIP_NODATA
	ProtoSkip       Protocol = 0x000400 // SMFIP_SKIP: the MTA understands SMFIR_SKIP
	ProtoRcptRej    Protocol = 0x000800 // SMFIP_RCPT_REJ: rejected recipients are sent too
	ProtoNRConnect  Protocol = 0x001000 // SMFIP_NR_CONN
	ProtoNRHelo     Protocol = 0x002000 // SMFIP_NR_HELO
	ProtoNRMail     Protocol = 0x004000 // SMFIP_NR_MAIL
	ProtoNRRcpt     Protocol = 0x008000 // SMFIP_NR_RCPT
	ProtoNRData     Protocol = 0x010000 // SMFIP_NR_DATA
	ProtoNRUnknown  Protocol = 0x020000 // SMFIP_NR_UNKN
	ProtoNREOH      Protocol = 0x040000 // SMFIP_NR_EOH
	ProtoNRBody     Protocol = 0x080000 // SMFIP_NR_BODY
	ProtoHdrLeadSpc Protocol = 0x100000 // SMFIP_HDR_LEADSPC: header values with their leading space

	// ProtoNoReply is every SMFIP_NR_* flag.
	ProtoNoReply = ProtoNRHeader | ProtoNRConnect | ProtoNRHelo | ProtoNRMail | ProtoNRRcpt |
		ProtoNRData | ProtoNRUnknown | ProtoNREOH | ProtoNRBody
)

// noReplyFlag is the NR flag that covers the reply to cmd (0: none does).
func noReplyFlag(cmd Command) Protocol {
	switch cmd {
	case CmdConnect:
		return ProtoNRConnect
	case CmdHelo:
		return ProtoNRHelo
	case CmdMail:
		return ProtoNRMail
	case CmdRcpt:
		return ProtoNRRcpt
	case CmdData:
		return ProtoNRData
	case CmdUnknown:
		return ProtoNRUnknown
	case CmdHeader:
		return ProtoNRHeader
	case CmdEOH:
		return ProtoNREOH
	case CmdBody:
		return ProtoNRBody
	}
	return 0
}

// Stage is a macro stage (SMFIM_*), the index of a SETSYMLIST entry.
type Stage uint32

// Macro stages.
const (
	StageConnect Stage = 0 // SMFIM_CONNECT
	StageHelo    Stage = 1 // SMFIM_HELO
	StageMail    Stage = 2 // SMFIM_ENVFROM
	StageRcpt    Stage = 3 // SMFIM_ENVRCPT
	StageData    Stage = 4 // SMFIM_DATA
	StageEOM     Stage = 5 // SMFIM_EOM
	StageEOH     Stage = 6 // SMFIM_EOH
	numStages          = 7
)

// Family is the address family of SMFIC_CONNECT (SMFIA_*).
type Family byte

// Families.
const (
	FamilyUnknown Family = 'U' // SMFIA_UNKNOWN: no port, no address
	FamilyUnix    Family = 'L' // SMFIA_UNIX
	FamilyInet    Family = '4' // SMFIA_INET
	FamilyInet6   Family = '6' // SMFIA_INET6
)

// Version is the protocol version we speak.
const Version = 6

// minVersion is the oldest MTA version answered (libmilter's
// SMFI_PROT_VERSION_MIN).
const minVersion = 2

// Response is a filter's answer to one event. The zero value is Continue.
type Response struct {
	code byte
	text string // SMFIR_REPLYCODE text
}

// Responses without text.
var (
	Continue = Response{code: replyContinue}
	Accept   = Response{code: replyAccept}
	Reject   = Response{code: replyReject}
	TempFail = Response{code: replyTempFail}
	Discard  = Response{code: replyDiscard}
)

// ReplyCode answers with an SMTP reply: "550 5.7.1 text" (SMFIR_REPLYCODE).
// The MTA reads the text as a format: a single '%' must be written "%%"
// (Postfix strips lone ones). A text with a NUL byte cannot be sent: Serve
// ends the session on it (ErrMalformedReply).
func ReplyCode(text string) Response { return Response{code: replyReplyCode, text: text} }

// Code is the SMFIR_* reply byte ('c' for the zero value).
func (r Response) Code() byte {
	if r.code == 0 {
		return replyContinue
	}
	return r.code
}

// Text is the SMTP reply of a ReplyCode response.
func (r Response) Text() string { return r.text }

// IsContinue reports whether r lets the message go on.
func (r Response) IsContinue() bool { return r.Code() == replyContinue }

// Errors of a session. Serve wraps them with the command they concern.
var (
	ErrZeroLength          = errors.New("milterproto: packet of length zero")
	ErrTooLarge            = errors.New("milterproto: packet over the size limit")
	ErrMalformed           = errors.New("milterproto: malformed packet")
	ErrUnknownCommand      = errors.New("milterproto: unknown command")
	ErrVersion             = errors.New("milterproto: unsupported protocol version")
	ErrReplyAtNoReplyStage = errors.New("milterproto: reply to an event negotiated without reply")
	ErrMalformedReply      = errors.New("milterproto: reply cannot be encoded")
	ErrNotNegotiated       = errors.New("milterproto: modification not negotiated")
	ErrNotAtEOM            = errors.New("milterproto: modification outside end of message")
)
