// Package natpmp is the NAT Port Mapping Protocol, RFC 6886 (NAT-PMP,
// version 0): the wire codec (requests and responses in both directions,
// header-first classification of received datagrams, and the error replies
// a gateway sends), which uses the standard library only and does no I/O,
// and Handler, berth's responder, which answers requests through a
// mapping.Mapper.
//
// All multi-byte fields are big-endian. A request is 2 bytes (opcode 0) or
// 12 bytes (opcodes 1 and 2); a response is 12 or 16 bytes, or the 8-byte
// header form for the Unsupported Version and Unsupported Opcode replies
// (see Response.Len for why).
package natpmp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// Port is the UDP port a NAT-PMP gateway listens on (RFC 6886 §3.1).
const Port = 5351

// ClientPort is the UDP port clients listen on for address announcements,
// which go to 224.0.0.1 (RFC 6886 §3.2.1).
const ClientPort = 5350

// Version is the only NAT-PMP version (RFC 6886 §3). PCP (RFC 6887) uses
// version 2 on the same port; the caller dispatches on the first byte.
const Version = 0

// MaxRequestLen and MaxResponseLen are the largest messages RFC 6886
// defines. A server should read into a larger buffer (at least
// MaxRequestLen+1 bytes) so that trailing bytes are seen and rejected.
const (
	MaxRequestLen  = lenMapRequest
	MaxResponseLen = lenMapResponse
)

// responseBit is added to the request opcode in every response (§3).
const responseBit = 0x80

// Common header of every message, and the rest of a map request
// (RFC 6886 §3.2 and §3.3; byte offsets on the right):
//
//	 0       1       2       3
//	+-------+-------+-------+-------+
//	| vers  |  op   |   reserved    |  0   (an address request ends after op)
//	+-------+-------+-------+-------+
//	| internal port | suggested ext |  4
//	+-------+-------+-------+-------+
//	|  requested lifetime (seconds) |  8
//	+-------+-------+-------+-------+  12
const (
	offVersion       = 0
	offOpcode        = 1
	offReserved      = 2 // map requests; §3.3: zero on transmission, ignored on reception
	offInternalPort  = 4
	offSuggestedPort = 6
	offLifetime      = 8

	lenAddressRequest = 2
	lenMapRequest     = 12
)

// Response layouts (RFC 6886 §3.2, §3.3, and §3.5 for the header form):
//
//	 0       1       2       3
//	+-------+-------+-------+-------+
//	| vers  | op+128|  result code  |  0
//	+-------+-------+-------+-------+
//	| seconds since start of epoch  |  4
//	+-------+-------+-------+-------+  8: end of the header form
//	| external IPv4 address         |  8   opcode 0; ends at 12
//	+-------+-------+-------+-------+
//	| internal port | mapped ext    |  8   opcodes 1 and 2
//	+-------+-------+-------+-------+
//	| lifetime (seconds)            | 12
//	+-------+-------+-------+-------+ 16
const (
	offResult       = 2
	offEpoch        = 4
	offExternalAddr = 8
	offRespInternal = 8
	offMappedPort   = 10
	offRespLifetime = 12

	lenHeader          = 8
	lenAddressResponse = 12
	lenMapResponse     = 16
)

// field names one wire field for ParseError.
type field struct {
	name      string
	off, size int
}

// Field tables in wire order. truncated walks them to name the first field
// that does not fit, so every decode below reads only checked bytes.
var (
	addressRequestFields = []field{
		{"version", offVersion, 1},
		{"opcode", offOpcode, 1},
	}
	mapRequestFields = []field{
		{"version", offVersion, 1},
		{"opcode", offOpcode, 1},
		{"reserved", offReserved, 2},
		{"internal port", offInternalPort, 2},
		{"suggested external port", offSuggestedPort, 2},
		{"lifetime", offLifetime, 4},
	}
	headerFields = []field{
		{"version", offVersion, 1},
		{"opcode", offOpcode, 1},
		{"result code", offResult, 2},
		{"epoch", offEpoch, 4},
	}
	addressResponseFields = append(headerFields[:len(headerFields):len(headerFields)],
		field{"external address", offExternalAddr, 4})
	mapResponseFields = append(headerFields[:len(headerFields):len(headerFields)],
		field{"internal port", offRespInternal, 2},
		field{"mapped external port", offMappedPort, 2},
		field{"lifetime", offRespLifetime, 4})
)

// Errors wrapped by ParseError.Err, for errors.Is.
var (
	ErrTruncated   = errors.New("truncated")
	ErrTrailing    = errors.New("trailing bytes")
	ErrNotRequest  = errors.New("response bit set in a request")
	ErrNotResponse = errors.New("response bit clear in a response")
	ErrVersion     = errors.New("unsupported version")
	ErrOpcode      = errors.New("unsupported opcode")
)

// ParseError describes a message that does not decode. Field names the
// wire field at fault and Off is its byte offset (for ErrTrailing, the
// offset where the extra bytes start). Code is the result code a server
// answers a bad request with (UnsupportedVersion, UnsupportedOpcode), or
// Success when no reply is sent and the request is dropped silently
// (short, trailing bytes, response bit); Classify makes the same decision.
// ParseResponse errors carry UnsupportedVersion for a version other than 0
// and Success otherwise.
type ParseError struct {
	Field string
	Off   int
	Code  ResultCode
	Err   error // one of the Err* variables above
}

// Error returns "natpmp: <field> at offset <off>: <reason>".
func (e *ParseError) Error() string {
	return "natpmp: " + e.Field + " at offset " + strconv.Itoa(e.Off) + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *ParseError) Unwrap() error { return e.Err }

// truncated returns a ParseError naming the first field of fs that does
// not fit in b, or nil if all of them do.
func truncated(b []byte, fs []field) *ParseError {
	for _, f := range fs {
		if len(b) < f.off+f.size {
			return &ParseError{Field: f.name, Off: f.off, Err: ErrTruncated}
		}
	}
	return nil
}

// trailing returns a ParseError if b is longer than n bytes.
func trailing(b []byte, n int) *ParseError {
	if len(b) > n {
		return &ParseError{Field: "trailing data", Off: n, Err: ErrTrailing}
	}
	return nil
}

// Request is a NAT-PMP request (RFC 6886 §3.2, §3.3, §3.4); see the
// figure above the off* constants. Lifetime 0 asks to delete a mapping,
// and internal port 0 with lifetime 0 to delete all of the client's
// mappings for the opcode's protocol (§3.4).
type Request struct {
	Op            Opcode
	InternalPort  uint16 // map ops only
	SuggestedPort uint16 // map ops only: "Suggested External Port", a hint
	Lifetime      uint32 // map ops only: requested lifetime in seconds
}

// checkRequest validates the header and the length of a request without
// decoding the body. It is the single source of the Classify decision.
func checkRequest(b []byte) *ParseError {
	if e := truncated(b, addressRequestFields); e != nil {
		return e
	}
	// §3.5: an opcode of 128 or more is a response, silently ignored.
	// Checked before the version, as miniupnpd does, so that two gateways
	// never answer each other's replies in a loop.
	if b[offOpcode]&responseBit != 0 {
		return &ParseError{Field: "opcode", Off: offOpcode, Err: ErrNotRequest}
	}
	if b[offVersion] != Version {
		return &ParseError{Field: "version", Off: offVersion, Code: UnsupportedVersion, Err: ErrVersion}
	}
	op := Opcode(b[offOpcode])
	if !op.known() {
		return &ParseError{Field: "opcode", Off: offOpcode, Code: UnsupportedOpcode, Err: ErrOpcode}
	}
	// A known opcode with the wrong length is dropped without a reply
	// (Code Success). Short map requests: miniupnpd drops them too, and a
	// reply could not echo the internal port (§3.5) that clients match on.
	// Long requests: RFC 6886 defines no trailing data, the clients we
	// checked send none (libnatpmp: testdata/natpmpc-*; mDNSResponder's
	// NATAddrRequest and NATPortMapRequest are 2 and 12 bytes; tailscale
	// builds a 12-byte map packet), and no result code means "malformed".
	// miniupnpd ignores the excess instead; we follow STYLE codec rule 4.
	fs := addressRequestFields
	if op.isMap() {
		fs = mapRequestFields
	}
	if e := truncated(b, fs); e != nil {
		return e
	}
	last := fs[len(fs)-1]
	return trailing(b, last.off+last.size)
}

// Classify decides, from the header and the length alone, what a server
// does with datagram b (the miekg/dns MsgAcceptFunc idea): Drop for fewer
// than 2 bytes, a response (opcode ≥ 128, §3.5) or a known opcode with the
// wrong length; ReplyError with UnsupportedVersion for a version other
// than 0 (the caller hands version 2 to PCP first) and with
// UnsupportedOpcode for an unknown opcode (§3.5); otherwise Reply, and
// then ParseRequest(b) succeeds.
func Classify(b []byte) (Action, ResultCode) {
	e := checkRequest(b)
	switch {
	case e == nil:
		return Reply, Success
	case e.Code != Success:
		return ReplyError, e.Code
	}
	return Drop, Success
}

// ParseRequest decodes a request. It accepts exactly 2 bytes for opcode 0
// and 12 for opcodes 1 and 2. Errors are *ParseError, checked in Classify's
// order; Code says whether to send an error reply. The Reserved field of a
// map request is ignored, as §3.3 requires.
func ParseRequest(b []byte) (Request, error) {
	if e := checkRequest(b); e != nil {
		return Request{}, e
	}
	r := Request{Op: Opcode(b[offOpcode])}
	if r.Op.isMap() { // checkRequest proved len(b) == lenMapRequest
		r.InternalPort = binary.BigEndian.Uint16(b[offInternalPort:])
		r.SuggestedPort = binary.BigEndian.Uint16(b[offSuggestedPort:])
		r.Lifetime = binary.BigEndian.Uint32(b[offLifetime:])
	}
	return r, nil
}

// AppendTo appends the wire form of r to b: 12 bytes for a map opcode,
// with Reserved zero, and the 2-byte header otherwise (an unknown opcode
// gets only the header; ParseRequest rejects it).
func (r Request) AppendTo(b []byte) []byte {
	b = append(b, Version, byte(r.Op))
	if !r.Op.isMap() {
		return b
	}
	b = binary.BigEndian.AppendUint16(b, 0) // reserved
	b = binary.BigEndian.AppendUint16(b, r.InternalPort)
	b = binary.BigEndian.AppendUint16(b, r.SuggestedPort)
	return binary.BigEndian.AppendUint32(b, r.Lifetime)
}

// Response is a NAT-PMP response or address announcement (RFC 6886 §3.2,
// §3.2.1, §3.3, §3.5); see the figure above offResult.
type Response struct {
	Op           Opcode     // the request's opcode, without the 128 bit
	Result       ResultCode // §3.5
	Epoch        uint32     // seconds since start of epoch (§3.6)
	ExternalAddr netip.Addr // opcode 0 only; IPv4; 0.0.0.0 on error (§3.2)
	InternalPort uint16     // map ops: echoed from the request (§3.5)
	ExternalPort uint16     // map ops: "Mapped External Port"; 0 on delete or error
	Lifetime     uint32     // map ops: granted lifetime in seconds; 0 on delete or error
}

// headerOnly reports whether r is sent in the 8-byte header form.
func (r Response) headerOnly() bool {
	return r.Result == UnsupportedVersion || r.Result == UnsupportedOpcode || !r.Op.known()
}

// Len returns the size of r on the wire: 12 bytes for opcode 0 and 16 for
// opcodes 1 and 2, whatever the result code (COMPAT N3: jackpal, libtorrent
// and tailscale compare the size for equality; §3.5 wants the internal port
// echoed in map errors) — except 8 bytes, the header alone, when the result
// is UnsupportedVersion or UnsupportedOpcode or the opcode is unknown:
//
//   - Unsupported Version: §3.5 draws exactly these 8 bytes (with OP = 128
//     after verified erratum 3618), miniupnpd sends 8, and Apple and
//     libtorrent fall back to NAT-PMP on it (COMPAT N2). The request's
//     layout is unknown in another version, so there is nothing to echo.
//   - Unsupported Opcode: §3.5 says to return "the entire request" with the
//     top bit of the opcode set and result 5, but the layout of an unknown
//     opcode is unknown, a 2-byte request has no room for a result code,
//     and §3.6 puts the epoch in every packet the gateway sends. miniupnpd
//     (natpmp.c, ProcessIncomingNATPMPPacket: resplen stays 8 on the
//     default branch) sends the 8-byte header with the epoch, and libnatpmp
//     (readnatpmpresponse) reads only the result code and epoch of a
//     failed reply; we do the same.
//
// The opcode byte of every form is the request's opcode plus 128. For an
// Unsupported Version reply to opcode x, erratum 3618 draws a fixed 128
// where miniupnpd sends 128+x; we follow miniupnpd, the deployed server
// clients fall back against, and COMPAT N2 (the two agree for opcode 0).
func (r Response) Len() int {
	switch {
	case r.headerOnly():
		return lenHeader
	case r.Op == OpAddress:
		return lenAddressResponse
	}
	return lenMapResponse
}

// AppendTo appends the wire form of r to b, Len() bytes. An ExternalAddr
// that is not IPv4 (or IPv4-mapped IPv6) is written as 0.0.0.0.
func (r Response) AppendTo(b []byte) []byte {
	b = append(b, Version, byte(r.Op)|responseBit)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Result))
	b = binary.BigEndian.AppendUint32(b, r.Epoch)
	switch {
	case r.headerOnly():
	case r.Op == OpAddress:
		var a4 [4]byte
		if a := r.ExternalAddr.Unmap(); a.Is4() {
			a4 = a.As4()
		}
		b = append(b, a4[:]...)
	default:
		b = binary.BigEndian.AppendUint16(b, r.InternalPort)
		b = binary.BigEndian.AppendUint16(b, r.ExternalPort)
		b = binary.BigEndian.AppendUint32(b, r.Lifetime)
	}
	return b
}

// ParseResponse decodes a response (the client side, and tests). The size
// must be exactly Len() of the decoded response. Fields that §3.2 and §3.4
// call undefined on error are returned as sent, so that AppendTo restores
// the input byte for byte; callers ignore them.
func ParseResponse(b []byte) (Response, error) {
	if e := truncated(b, headerFields[:2]); e != nil {
		return Response{}, e
	}
	if b[offVersion] != Version {
		return Response{}, &ParseError{Field: "version", Off: offVersion, Code: UnsupportedVersion, Err: ErrVersion}
	}
	if b[offOpcode]&responseBit == 0 {
		return Response{}, &ParseError{Field: "opcode", Off: offOpcode, Err: ErrNotResponse}
	}
	if e := truncated(b, headerFields); e != nil {
		return Response{}, e
	}
	r := Response{
		Op:     Opcode(b[offOpcode] &^ responseBit),
		Result: ResultCode(binary.BigEndian.Uint16(b[offResult:])),
		Epoch:  binary.BigEndian.Uint32(b[offEpoch:]),
	}
	fs := mapResponseFields
	switch {
	case r.headerOnly():
		fs = headerFields
	case r.Op == OpAddress:
		fs = addressResponseFields
	}
	if e := truncated(b, fs); e != nil {
		return Response{}, e
	}
	last := fs[len(fs)-1]
	if e := trailing(b, last.off+last.size); e != nil {
		return Response{}, e
	}
	switch {
	case r.headerOnly():
	case r.Op == OpAddress:
		r.ExternalAddr = netip.AddrFrom4([4]byte(b[offExternalAddr : offExternalAddr+4]))
	default:
		r.InternalPort = binary.BigEndian.Uint16(b[offRespInternal:])
		r.ExternalPort = binary.BigEndian.Uint16(b[offMappedPort:])
		r.Lifetime = binary.BigEndian.Uint32(b[offRespLifetime:])
	}
	return r, nil
}

// ErrorResponse builds the reply with result code (non-zero) to request
// req, for Classify's ReplyError and for requests the server refuses. The
// opcode is the request's; UnsupportedVersion and UnsupportedOpcode give
// the 8-byte header form (see Response.Len). Otherwise the full form is
// kept: an address reply carries 0.0.0.0 (§3.2), and a map reply echoes
// the request's internal port with external port and lifetime 0 (§3.5).
func ErrorResponse(req []byte, code ResultCode, epoch uint32) Response {
	r := Response{Result: code, Epoch: epoch}
	if len(req) > offOpcode {
		r.Op = Opcode(req[offOpcode] &^ responseBit)
	}
	switch {
	case r.headerOnly():
	case r.Op == OpAddress:
		r.ExternalAddr = netip.IPv4Unspecified()
	case len(req) >= offInternalPort+2 && req[offVersion] == Version:
		r.InternalPort = binary.BigEndian.Uint16(req[offInternalPort:])
	}
	return r
}

// Announcement returns the unsolicited address announcement a gateway
// multicasts to 224.0.0.1:ClientPort on start and on an external address
// change (§3.2.1): a successful opcode-0 response, 12 bytes.
func Announcement(epoch uint32, addr netip.Addr) Response {
	return Response{Op: OpAddress, Result: Success, Epoch: epoch, ExternalAddr: addr}
}
