package natpmp

import "strconv"

// Opcode is a NAT-PMP operation code (RFC 6886 §3.2, §3.3). Requests carry
// 0–127; a response carries the request's opcode plus 128, which the codec
// adds and strips, so an Opcode value never has the top bit set.
type Opcode uint8

// Opcodes defined by RFC 6886.
const (
	OpAddress Opcode = 0 // determine the external address (§3.2)
	OpMapUDP  Opcode = 1 // map a UDP port (§3.3)
	OpMapTCP  Opcode = 2 // map a TCP port (§3.3)
)

// known reports whether o is one of the opcodes RFC 6886 defines.
func (o Opcode) known() bool { return o <= OpMapTCP }

// isMap reports whether o is a port-mapping opcode (§3.3).
func (o Opcode) isMap() bool { return o == OpMapUDP || o == OpMapTCP }

// String returns "address", "map-udp", "map-tcp" or "opcode(N)".
func (o Opcode) String() string {
	switch o {
	case OpAddress:
		return "address"
	case OpMapUDP:
		return "map-udp"
	case OpMapTCP:
		return "map-tcp"
	}
	return "opcode(" + strconv.Itoa(int(o)) + ")"
}

// ResultCode is the 16-bit result code of a NAT-PMP response (RFC 6886
// §3.5). Clients treat codes they do not know as fatal errors of the request.
type ResultCode uint16

// Result codes defined by RFC 6886 §3.5.
const (
	Success            ResultCode = 0
	UnsupportedVersion ResultCode = 1
	NotAuthorized      ResultCode = 2 // "Not Authorized/Refused": the feature is off, or policy says no
	NetworkFailure     ResultCode = 3 // e.g. the gateway has no external address yet
	OutOfResources     ResultCode = 4 // no more mappings can be created now
	UnsupportedOpcode  ResultCode = 5
)

// String returns the RFC 6886 §3.5 name in lower case, or "result(N)".
func (c ResultCode) String() string {
	switch c {
	case Success:
		return "success"
	case UnsupportedVersion:
		return "unsupported version"
	case NotAuthorized:
		return "not authorized"
	case NetworkFailure:
		return "network failure"
	case OutOfResources:
		return "out of resources"
	case UnsupportedOpcode:
		return "unsupported opcode"
	}
	return "result(" + strconv.Itoa(int(c)) + ")"
}

// Action is what a server does with a received datagram; see Classify.
type Action uint8

// Actions returned by Classify.
const (
	Drop       Action = iota // ignore the datagram silently
	Reply                    // decode it with ParseRequest and answer it
	ReplyError               // answer with ErrorResponse and the returned code
)

// String returns "drop", "reply", "reply-error" or "action(N)".
func (a Action) String() string {
	switch a {
	case Drop:
		return "drop"
	case Reply:
		return "reply"
	case ReplyError:
		return "reply-error"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}
