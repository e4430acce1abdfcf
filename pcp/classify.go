package pcp

import (
	"encoding/binary"
	"net/netip"
)

// Action is what a server does with a received message.
type Action uint8

// Actions, from Classify.
const (
	Drop       Action = iota // ignore silently
	Reply                    // decode with ParseRequest and serve
	ReplyError               // answer ErrorResponse with the ResultCode Classify returned
)

// String returns "drop", "reply" or "reply-error".
func (a Action) String() string {
	switch a {
	case Drop:
		return "drop"
	case Reply:
		return "reply"
	case ReplyError:
		return "reply-error"
	}
	return "action(?)"
}

// minAnswerable is the shortest message answered at all: below 2 octets
// there is no opcode to echo, and RFC 6887 §8.3 drops it silently.
const minAnswerable = 2

// Classify decides from the header alone what to do with the message b
// received on Port (miekg/dns MsgAcceptFunc style), in the order of RFC
// 6887 §8.3:
//
//   - fewer than 2 octets, or the R bit set (a response, maybe our own
//     multicast ANNOUNCE looped back): Drop;
//   - version ≠ 2: ReplyError UNSUPP_VERSION, whatever the length, since
//     length rules belong to the version (§9). The responder hands version
//     0 to NAT-PMP before calling Classify (COMPAT N2);
//   - length < 24, > 1100 or not a multiple of 4: ReplyError
//     MALFORMED_REQUEST (2 octets are enough to build the reply; the
//     reader must read into a buffer of at least MaxLen+1 octets to see
//     the oversize case);
//   - an opcode other than ANNOUNCE, MAP and PEER: ReplyError UNSUPP_OPCODE;
//   - otherwise Reply, with Success. ParseRequest may still fail on the
//     opcode data or options; its *ParseError carries the code.
//
// The ResultCode is Success unless the Action is ReplyError.
func Classify(b []byte) (Action, ResultCode) {
	if len(b) < minAnswerable || b[offOpcode]&rBit != 0 {
		return Drop, Success
	}
	if err := checkRequestHeader(b); err != nil {
		return ReplyError, err.Code
	}
	return Reply, Success
}

// ErrorResponse builds the error reply to the raw request req (RFC 6887
// §8.3: an error response copies the request, with the result code and
// the server's fields set). It copies the opcode and, for a version 2 MAP
// or PEER request whose opcode data is present, the nonce, protocol,
// internal port, suggested external port and address, and remote peer,
// so the reply has the full 60- or 80-octet layout clients match on
// (COMPAT C2: Apple matches errors on protocol and port, libtorrent wants
// exactly 60 octets, tailscale at least 60). Missing or foreign-version
// data stays zero; ANNOUNCE and unknown opcodes get the 24-octet header.
// If req parses, its options are echoed as in a success reply.
//
// The caller picks lifetime: short for Transient codes (~30 s, COMPAT C6),
// long otherwise. The reply's version is 2 even for UNSUPP_VERSION (§9,
// COMPAT C8).
func ErrorResponse(req []byte, code ResultCode, lifetime, epoch uint32) Response {
	r := Response{Result: code, Lifetime: lifetime, Epoch: epoch}
	if len(req) >= minAnswerable {
		r.Op = Opcode(req[offOpcode] & opcodeMask)
	}
	hasData := len(req) >= mapLen && req[offVersion] == Version
	if (r.Op == OpMap || r.Op == OpPeer) && !hasData {
		// Another version's data has another layout (§9), and a short
		// request has none: answer with the header alone.
		r.HeaderOnly = true
		return r
	}
	if len(req) == 0 || req[offVersion] != Version {
		return r
	}
	if (r.Op == OpMap || r.Op == OpPeer) && len(req) >= mapLen {
		r.Nonce = [nonceLen]byte(req[offNonce : offNonce+nonceLen])
		r.Protocol = req[offProtocol]
		r.InternalPort = binary.BigEndian.Uint16(req[offInternalPort:])
		r.ExternalPort = binary.BigEndian.Uint16(req[offExternalPort:])
		r.ExternalAddr = addrAt(req, offExternalAddr)
	}
	if r.Op == OpPeer && len(req) >= peerLen {
		r.RemotePort = binary.BigEndian.Uint16(req[offRemotePort:])
		r.RemoteAddr = addrAt(req, offRemoteAddr)
	}
	if parsed, err := ParseRequest(req); err == nil {
		r.Options = parsed.Options
	}
	return r
}

// Answer returns the response to r with the given result, lifetime and
// epoch: the opcode, nonce, protocol, internal port and remote peer
// copied (§11.3, §12.3), the suggested external port and address as the
// assigned ones (for an error reply, §8.3; the responder overwrites them
// on success), and r's options echoed. A zero SuggestedAddr becomes the
// all-zeros address of the client's family, so the reply carries the bytes
// the client sent.
func (r Request) Answer(code ResultCode, lifetime, epoch uint32) Response {
	ext := r.SuggestedAddr
	if !ext.IsValid() && (r.Op == OpMap || r.Op == OpPeer) {
		ext = netip.IPv6Unspecified()
		if r.Client.Is4() {
			ext = netip.IPv4Unspecified()
		}
	}
	return Response{
		Op:           r.Op,
		Result:       code,
		Lifetime:     lifetime,
		Epoch:        epoch,
		Nonce:        r.Nonce,
		Protocol:     r.Protocol,
		InternalPort: r.InternalPort,
		ExternalPort: r.SuggestedPort,
		ExternalAddr: ext,
		RemotePort:   r.RemotePort,
		RemoteAddr:   r.RemoteAddr,
		Options:      r.Options,
	}
}

// Announce returns an ANNOUNCE response with SUCCESS and the given epoch:
// the answer to an ANNOUNCE request (the tailscale probe, COMPAT C1) and,
// sent unsolicited to AnnounceGroup4/AnnounceGroup6 on ClientPort, the
// notice that the server lost its state (§14.1.3). Lifetime is 0 (§14.1.1).
func Announce(epoch uint32) Response {
	return Response{Op: OpAnnounce, Result: Success, Epoch: epoch}
}
