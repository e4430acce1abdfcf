// Package pcp is the wire codec of the Port Control Protocol, RFC 6887:
// MAP, PEER and ANNOUNCE requests and responses with the THIRD_PARTY,
// PREFER_FAILURE and FILTER options, a header-first classifier, and the
// error replies a server sends. It uses only the standard library (and
// berth's std-lib-only internal/mapping), so other programs can import it;
// the responder lives beside it (server.go), and the UDP socket server it
// shares with NAT-PMP in pcp/listener.
//
// Addresses travel in 128-bit fields, IPv4 as IPv4-mapped IPv6 (§5). Parsed
// values hold IPv4 addresses unmapped (Is4), and AppendTo maps them back.
package pcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
)

// Protocol constants.
const (
	Port       = 5351 // the server listens here (RFC 6887 §19, shared with NAT-PMP)
	ClientPort = 5350 // unsolicited ANNOUNCE responses go here (§14.1.3)
	Version    = 2    // the version of RFC 6887 (§7.1, §9)
	MaxLen     = 1100 // largest PCP message, in octets (§7)
)

// Multicast groups that unsolicited ANNOUNCE responses are sent to, on
// ClientPort, after the server lost its state (§14.1.3, COMPAT C9).
var (
	AnnounceGroup4 = netip.AddrFrom4([4]byte{224, 0, 0, 1})                 // all hosts
	AnnounceGroup6 = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01}) // ff02::1, all nodes
)

// Opcode is the 7-bit Opcode of a PCP message (§7.1).
type Opcode uint8

// Opcodes of RFC 6887.
const (
	OpAnnounce Opcode = 0 // ANNOUNCE (§14.1): no opcode data
	OpMap      Opcode = 1 // MAP (§11): 36 octets of opcode data
	OpPeer     Opcode = 2 // PEER (§12): 56 octets of opcode data
)

// String returns the RFC 6887 name of op, or "OPCODE(n)".
func (op Opcode) String() string {
	switch op {
	case OpAnnounce:
		return "ANNOUNCE"
	case OpMap:
		return "MAP"
	case OpPeer:
		return "PEER"
	}
	return "OPCODE(" + strconv.Itoa(int(op)) + ")"
}

// known reports whether op is one this package decodes.
func (op Opcode) known() bool { return op <= OpPeer }

// rBit is the R bit in the opcode octet: 0 request, 1 response (§7.1).
const (
	rBit       = 0x80
	opcodeMask = 0x7f
)

// Common header, RFC 6887 §7.1 (request, Figure 2) and §7.2 (response,
// Figure 3); absolute offsets.
//
//	Request:
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Version = 2  |R|   Opcode    |         Reserved              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Requested Lifetime (32 bits)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	|            PCP Client's IP Address (128 bits)                 |
//	|                                                               |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:             (optional) Opcode-specific information            :
//	:             (optional) PCP Options                            :
//
//	Response:
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Version = 2  |R|   Opcode    |   Reserved    |  Result Code  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      Lifetime (32 bits)                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     Epoch Time (32 bits)                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      Reserved (96 bits)                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:             (optional) Opcode-specific response data          :
//	:             (optional) Options                                :
const (
	offVersion    = 0  // Version
	offOpcode     = 1  // R bit and Opcode
	offResultCode = 3  // response: Result Code
	offLifetime   = 4  // (Requested) Lifetime
	offClientAddr = 8  // request: PCP Client's IP Address
	offEpoch      = 8  // response: Epoch Time
	headerLen     = 24 // both directions
)

// MAP and PEER opcode data (§11.1 Figures 9 and 10, §12.1 Figures 11 and 12),
// absolute offsets. Requests carry the suggested external port and address,
// responses the assigned ones; the layouts are the same.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	|                 Mapping Nonce (96 bits)                       |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Protocol    |          Reserved (24 bits)                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        Internal Port          |  Suggested/Assigned Ext Port  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	|    Suggested/Assigned External IP Address (128 bits)          |
//	|                                                               |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  end of MAP
//	|       Remote Peer Port        |     Reserved (16 bits)        |  PEER only
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	|               Remote Peer IP Address (128 bits)               |
//	|                                                               |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	offNonce        = headerLen // Mapping Nonce
	nonceLen        = 12
	offProtocol     = 36 // Protocol
	offInternalPort = 40 // Internal Port
	offExternalPort = 42 // Suggested / Assigned External Port
	offExternalAddr = 44 // Suggested / Assigned External IP Address
	mapLen          = 60 // header + MAP data
	offRemotePort   = 60 // Remote Peer Port
	offRemoteAddr   = 64 // Remote Peer IP Address
	peerLen         = 80 // header + PEER data
)

// fixedLen is the length of the header plus the opcode data of op.
func fixedLen(op Opcode) int {
	switch op {
	case OpMap:
		return mapLen
	case OpPeer:
		return peerLen
	}
	return headerLen
}

// Request is a PCP request (RFC 6887 §7.1) with its MAP (§11.1) or PEER
// (§12.1) data and options (§13). Fields an opcode lacks stay zero.
type Request struct {
	Op       Opcode
	Lifetime uint32 // Requested Lifetime in seconds; MAP 0 = delete (§11.1), ANNOUNCE ignores it (§14.1.1)
	// Client is the PCP Client's IP Address field, IPv4 unmapped. The
	// responder compares it with the packet source (ADDRESS_MISMATCH, §8.1).
	Client netip.Addr

	Nonce    [12]byte // Mapping Nonce (MAP, PEER)
	Protocol uint8    // IANA protocol number; MAP 0 = all protocols (§11.1)
	// InternalPort 0 is "all ports" for MAP (§11.1); if Protocol is 0 the
	// RFC says to ignore it, and it is kept as sent.
	InternalPort  uint16
	SuggestedPort uint16 // 0 = no preference
	// SuggestedAddr is the Suggested External IP Address, IPv4 unmapped.
	// The "no preference" all-zeros addresses, :: and ::ffff:0.0.0.0 (§5),
	// parse as the zero Addr; AppendTo writes the zero Addr as
	// ::ffff:0.0.0.0 when Client is IPv4 and as :: otherwise, which is what
	// real clients send. (An IPv6 client asking for "any IPv4" through
	// ::ffff:0.0.0.0, the NAT64 case, is not told apart.)
	SuggestedAddr netip.Addr

	RemotePort uint16     // Remote Peer Port (PEER)
	RemoteAddr netip.Addr // Remote Peer IP Address (PEER), IPv4 unmapped

	Options Options
}

// ParseRequest decodes a PCP request. It checks the header first, as
// Classify does, then the opcode data and the options. The error is a
// *ParseError whose Code is the result to answer with: MALFORMED_REQUEST,
// UNSUPP_VERSION, UNSUPP_OPCODE, UNSUPP_OPTION (unknown option code below
// 128), MALFORMED_OPTION or EXCESSIVE_REMOTE_PEERS (more than MaxFilters).
//
// Semantic checks that need server state or policy (the client address
// against the packet source, lifetime bounds, protocol and port policy)
// are the responder's. Only the PEER rules of §12.1 that make a request
// meaningless are checked here: protocol, internal port and remote peer
// port must not be zero.
func ParseRequest(b []byte) (Request, error) {
	if err := checkRequestHeader(b); err != nil {
		return Request{}, err
	}
	// From here len(b) is in [headerLen, MaxLen] and a multiple of 4.
	r := Request{
		Op:       Opcode(b[offOpcode] & opcodeMask),
		Lifetime: binary.BigEndian.Uint32(b[offLifetime:]),
		Client:   addrAt(b, offClientAddr),
	}
	end := fixedLen(r.Op)
	if len(b) < end {
		return Request{}, &ParseError{Field: r.Op.String() + " opcode data", Off: headerLen, Code: MalformedRequest}
	}
	if r.Op == OpMap || r.Op == OpPeer {
		r.Nonce = [nonceLen]byte(b[offNonce : offNonce+nonceLen])
		r.Protocol = b[offProtocol]
		r.InternalPort = binary.BigEndian.Uint16(b[offInternalPort:])
		r.SuggestedPort = binary.BigEndian.Uint16(b[offExternalPort:])
		if a := addrAt(b, offExternalAddr); !a.IsUnspecified() {
			r.SuggestedAddr = a
		}
	}
	if r.Op == OpPeer {
		r.RemotePort = binary.BigEndian.Uint16(b[offRemotePort:])
		r.RemoteAddr = addrAt(b, offRemoteAddr)
		if err := checkPeer(r); err != nil {
			return Request{}, err
		}
	}
	opts, err := parseOptions(b, end, r.Op)
	if err != nil {
		return Request{}, err
	}
	r.Options = opts
	return r, nil
}

// checkRequestHeader applies the checks of RFC 6887 §8.3 in their order:
// a message under 2 octets or with the R bit set is dropped (reported here
// as MALFORMED_REQUEST; Classify says Drop), an unsupported version is
// answered with UNSUPP_VERSION before any length rule (the length rules
// belong to the version), then length < 24, > 1100 or not a multiple of 4
// is MALFORMED_REQUEST, and an unknown opcode UNSUPP_OPCODE.
func checkRequestHeader(b []byte) *ParseError {
	switch {
	case len(b) < minAnswerable:
		return &ParseError{Field: "length", Off: len(b), Code: MalformedRequest}
	case b[offOpcode]&rBit != 0:
		return &ParseError{Field: "R bit", Off: offOpcode, Code: MalformedRequest}
	case b[offVersion] != Version:
		return &ParseError{Field: "version", Off: offVersion, Code: UnsuppVersion}
	}
	if err := checkLength(b); err != nil {
		return err
	}
	if !Opcode(b[offOpcode] & opcodeMask).known() {
		return &ParseError{Field: "opcode", Off: offOpcode, Code: UnsuppOpcode}
	}
	return nil
}

// checkLength applies the length rules shared by requests and responses
// (§7, §8.3): at least the 24-octet header, at most MaxLen, a multiple of 4.
func checkLength(b []byte) *ParseError {
	switch {
	case len(b) < headerLen:
		return &ParseError{Field: "length", Off: len(b), Code: MalformedRequest}
	case len(b) > MaxLen:
		return &ParseError{Field: "length", Off: MaxLen, Code: MalformedRequest}
	case len(b)%4 != 0:
		return &ParseError{Field: "length", Off: len(b), Code: MalformedRequest}
	}
	return nil
}

// checkPeer applies the MUST NOTs of the PEER request fields (§12.1).
func checkPeer(r Request) *ParseError {
	switch {
	case r.Protocol == 0:
		return &ParseError{Field: "protocol", Off: offProtocol, Code: MalformedRequest}
	case r.InternalPort == 0:
		return &ParseError{Field: "internal port", Off: offInternalPort, Code: MalformedRequest}
	case r.RemotePort == 0:
		return &ParseError{Field: "remote peer port", Off: offRemotePort, Code: MalformedRequest}
	}
	return nil
}

// AppendTo appends the wire form of r to b: 24 octets of header, then 36
// (MAP) or 56 (PEER) octets of opcode data, then the options. Reserved
// fields are zero.
func (r Request) AppendTo(b []byte) []byte {
	b = append(b, Version, byte(r.Op)&opcodeMask, 0, 0)
	b = binary.BigEndian.AppendUint32(b, r.Lifetime)
	b = appendAddr(b, r.Client)
	if r.Op == OpMap || r.Op == OpPeer {
		suggested := r.SuggestedAddr
		if !suggested.IsValid() && r.Client.Is4() {
			suggested = netip.IPv4Unspecified() // ::ffff:0.0.0.0 (§5)
		}
		b = appendMapData(b, r.Nonce, r.Protocol, r.InternalPort, r.SuggestedPort, suggested)
	}
	if r.Op == OpPeer {
		b = appendPeerData(b, r.RemotePort, r.RemoteAddr)
	}
	return appendOptions(b, r.Options)
}

// Response is a PCP response (RFC 6887 §7.2) with its MAP (§11.1) or PEER
// (§12.1) data and options. Fields an opcode lacks stay zero.
type Response struct {
	Op       Opcode
	Result   ResultCode
	Lifetime uint32 // mapping lifetime, or for an error how long it holds (§7.2)
	Epoch    uint32 // Epoch Time: seconds since the server's state began (§8.5)

	// MAP and PEER data. Nonce, Protocol and InternalPort (and for PEER the
	// remote peer) are copied from the request, in error replies too
	// (COMPAT C2).
	Nonce        [12]byte
	Protocol     uint8
	InternalPort uint16
	ExternalPort uint16     // Assigned External Port
	ExternalAddr netip.Addr // Assigned External IP Address, IPv4 unmapped; zero Addr writes ::
	RemotePort   uint16     // PEER
	RemoteAddr   netip.Addr // PEER, IPv4 unmapped

	// Options are the options echoed to the client (see Options).
	Options Options

	// HeaderOnly marks an error reply of the 24-octet common header alone,
	// for a MAP or PEER request too short (or of another version) to carry
	// the opcode data: echoing 36 or 56 octets of zeros would only make the
	// reply many times larger than the request (amplification). Such a
	// request has nothing for a client to match on anyway (COMPAT C2).
	HeaderOnly bool
}

// ParseResponse decodes a PCP response, for clients and tests. It requires
// version 2, the R bit, the length rules of requests and, for MAP and PEER,
// the whole opcode data; the data of an opcode it does not know is skipped.
// Errors are *ParseError; their Code only classifies the fault.
func ParseResponse(b []byte) (Response, error) {
	if err := checkLength(b); err != nil {
		return Response{}, err
	}
	// From here len(b) is in [headerLen, MaxLen] and a multiple of 4.
	if b[offVersion] != Version {
		return Response{}, &ParseError{Field: "version", Off: offVersion, Code: UnsuppVersion}
	}
	if b[offOpcode]&rBit == 0 {
		return Response{}, &ParseError{Field: "R bit", Off: offOpcode, Code: MalformedRequest}
	}
	r := Response{
		Op:       Opcode(b[offOpcode] & opcodeMask),
		Result:   ResultCode(b[offResultCode]),
		Lifetime: binary.BigEndian.Uint32(b[offLifetime:]),
		Epoch:    binary.BigEndian.Uint32(b[offEpoch:]),
	}
	if !r.Op.known() {
		// An UNSUPP_OPCODE reply may copy a body whose layout only the
		// client knows; nothing after the header is decoded.
		return r, nil
	}
	end := fixedLen(r.Op)
	if len(b) == headerLen && end > headerLen {
		r.HeaderOnly = true // a reply to a request without opcode data
		return r, nil
	}
	if len(b) < end {
		return Response{}, &ParseError{Field: r.Op.String() + " opcode data", Off: headerLen, Code: MalformedRequest}
	}
	if r.Op == OpMap || r.Op == OpPeer {
		r.Nonce = [nonceLen]byte(b[offNonce : offNonce+nonceLen])
		r.Protocol = b[offProtocol]
		r.InternalPort = binary.BigEndian.Uint16(b[offInternalPort:])
		r.ExternalPort = binary.BigEndian.Uint16(b[offExternalPort:])
		r.ExternalAddr = addrAt(b, offExternalAddr)
	}
	if r.Op == OpPeer {
		r.RemotePort = binary.BigEndian.Uint16(b[offRemotePort:])
		r.RemoteAddr = addrAt(b, offRemoteAddr)
	}
	opts, err := parseOptions(b, end, r.Op)
	if err != nil {
		return Response{}, err
	}
	r.Options = opts
	return r, nil
}

// AppendTo appends the wire form of r to b: ANNOUNCE and unknown opcodes 24
// octets, MAP 60, PEER 80, plus the options (COMPAT C2: libtorrent wants a
// MAP response of exactly 60 octets, so only echoed options add to it).
// The version is always 2, also in UNSUPP_VERSION replies (§9, COMPAT C8).
// The result is at most MaxLen octets.
func (r Response) AppendTo(b []byte) []byte {
	b = append(b, Version, byte(r.Op)&opcodeMask|rBit, 0, byte(r.Result))
	b = binary.BigEndian.AppendUint32(b, r.Lifetime)
	b = binary.BigEndian.AppendUint32(b, r.Epoch)
	b = append(b, make([]byte, headerLen-offEpoch-4)...) // Reserved (96 bits)
	if r.HeaderOnly {
		return b
	}
	if r.Op == OpMap || r.Op == OpPeer {
		b = appendMapData(b, r.Nonce, r.Protocol, r.InternalPort, r.ExternalPort, r.ExternalAddr)
	}
	if r.Op == OpPeer {
		b = appendPeerData(b, r.RemotePort, r.RemoteAddr)
	}
	return appendOptions(b, r.Options)
}

// appendMapData appends the 36 octets shared by MAP and PEER (§11.1, §12.1).
func appendMapData(b []byte, nonce [12]byte, proto uint8, internal, external uint16, addr netip.Addr) []byte {
	b = append(b, nonce[:]...)
	b = append(b, proto, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, internal)
	b = binary.BigEndian.AppendUint16(b, external)
	return appendAddr(b, addr)
}

// appendPeerData appends the 20 octets PEER adds to the MAP layout (§12.1).
func appendPeerData(b []byte, port uint16, addr netip.Addr) []byte {
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, 0, 0)
	return appendAddr(b, addr)
}

// addrAt reads the 128-bit address field at b[off:off+16], which the caller
// has bounds-checked, and unmaps IPv4-mapped addresses (all 96 prefix bits
// are compared, §5).
func addrAt(b []byte, off int) netip.Addr {
	return netip.AddrFrom16([16]byte(b[off : off+16])).Unmap()
}

// appendAddr appends a as a 128-bit address field: IPv4 as ::ffff:a.b.c.d,
// the zero Addr as :: (§5).
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, make([]byte, 16)...)
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}

// ParseError reports a PCP message that could not be decoded: the field at
// fault, its offset in the message and the result code a server answers
// with (RFC 6887 §7.4).
type ParseError struct {
	Field string     // the field or rule at fault, e.g. "option length", "FILTER prefix length"
	Off   int        // byte offset of the field in the message
	Code  ResultCode // the result code to answer with
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("pcp: %s at offset %d: %v", e.Field, e.Off, e.Code)
}
