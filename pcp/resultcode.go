package pcp

import "strconv"

// ResultCode is the Result Code of a PCP response (RFC 6887 §7.2, values in
// §7.4).
//
// STYLE.md asks for uint16 result codes; that rule was written for
// NAT-PMP, whose field is 16 bits (RFC 6886 §3.5). The PCP field is one
// octet, so uint8 keeps every ResultCode value sendable as is.
type ResultCode uint8

// Result codes, RFC 6887 §7.4. Each is a long lifetime error unless
// Transient says otherwise.
const (
	Success               ResultCode = 0  // SUCCESS
	UnsuppVersion         ResultCode = 1  // UNSUPP_VERSION: version not spoken here (§9)
	NotAuthorized         ResultCode = 2  // NOT_AUTHORIZED: refused by policy
	MalformedRequest      ResultCode = 3  // MALFORMED_REQUEST: request could not be parsed
	UnsuppOpcode          ResultCode = 4  // UNSUPP_OPCODE
	UnsuppOption          ResultCode = 5  // UNSUPP_OPTION: unknown option in the mandatory range
	MalformedOption       ResultCode = 6  // MALFORMED_OPTION: bad length, repeated, or invalid option
	NetworkFailure        ResultCode = 7  // NETWORK_FAILURE: e.g. no external address yet (short lifetime)
	NoResources           ResultCode = 8  // NO_RESOURCES: no mapping can be created now (short lifetime)
	UnsuppProtocol        ResultCode = 9  // UNSUPP_PROTOCOL
	UserExQuota           ResultCode = 10 // USER_EX_QUOTA: per-subscriber quota reached (short lifetime)
	CannotProvideExternal ResultCode = 11 // CANNOT_PROVIDE_EXTERNAL: suggested port/address unavailable (PREFER_FAILURE, PEER)
	AddressMismatch       ResultCode = 12 // ADDRESS_MISMATCH: client address field ≠ packet source (§8.1)
	ExcessiveRemotePeers  ResultCode = 13 // EXCESSIVE_REMOTE_PEERS: FILTER options cannot be installed (§13.3)
)

var resultCodeNames = [...]string{
	Success:               "SUCCESS",
	UnsuppVersion:         "UNSUPP_VERSION",
	NotAuthorized:         "NOT_AUTHORIZED",
	MalformedRequest:      "MALFORMED_REQUEST",
	UnsuppOpcode:          "UNSUPP_OPCODE",
	UnsuppOption:          "UNSUPP_OPTION",
	MalformedOption:       "MALFORMED_OPTION",
	NetworkFailure:        "NETWORK_FAILURE",
	NoResources:           "NO_RESOURCES",
	UnsuppProtocol:        "UNSUPP_PROTOCOL",
	UserExQuota:           "USER_EX_QUOTA",
	CannotProvideExternal: "CANNOT_PROVIDE_EXTERNAL",
	AddressMismatch:       "ADDRESS_MISMATCH",
	ExcessiveRemotePeers:  "EXCESSIVE_REMOTE_PEERS",
}

// String returns the RFC 6887 name of c ("NOT_AUTHORIZED"), or
// "RESULT_CODE(n)" for a value the RFC does not define.
func (c ResultCode) String() string {
	if int(c) < len(resultCodeNames) {
		return resultCodeNames[c]
	}
	return "RESULT_CODE(" + strconv.Itoa(int(c)) + ")"
}

// Transient reports whether c is one of the short lifetime errors of RFC
// 6887 §7.4 (NETWORK_FAILURE, NO_RESOURCES, USER_EX_QUOTA): conditions that
// may clear soon, so the error reply carries a short Lifetime (miniupnpd
// uses 30 s, COMPAT C6) after which the client retries. Every other error
// is long-lived. CANNOT_PROVIDE_EXTERNAL "depends on the reason" (§7.4);
// it counts as long-lived here and the responder may choose otherwise.
func (c ResultCode) Transient() bool {
	switch c {
	case NetworkFailure, NoResources, UserExQuota:
		return true
	}
	return false
}
