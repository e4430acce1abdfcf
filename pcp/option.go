package pcp

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// OptionCode is the Option Code of a PCP option (RFC 6887 §7.3). Codes
// 0–127 are mandatory to process: a server that does not know one answers
// UNSUPP_OPTION. Codes 128–255 are optional: unknown ones are skipped.
type OptionCode uint8

// Options defined by RFC 6887 §13.
const (
	OptThirdParty    OptionCode = 1 // THIRD_PARTY (§13.1): MAP, PEER
	OptPreferFailure OptionCode = 2 // PREFER_FAILURE (§13.2): MAP
	OptFilter        OptionCode = 3 // FILTER (§13.3): MAP
)

// String returns the RFC 6887 name of c, or "OPTION(n)".
func (c OptionCode) String() string {
	switch c {
	case OptThirdParty:
		return "THIRD_PARTY"
	case OptPreferFailure:
		return "PREFER_FAILURE"
	case OptFilter:
		return "FILTER"
	}
	return "OPTION(" + strconv.Itoa(int(c)) + ")"
}

// optionalOptions is the first option code in the optional-to-process range
// (the most significant bit of the code is set, §7.3).
const optionalOptions = 128

// Limits on options in one message. A request over them is answered with
// an error instead of being decoded (the 1100-byte limit alone would allow
// 269 empty options or 43 FILTERs).
const (
	// MaxFilters is the most FILTER options a request may carry. §13.3
	// allows as many as fit; a server that cannot install them answers
	// EXCESSIVE_REMOTE_PEERS, which ParseRequest does for the 17th.
	MaxFilters = 16
	// maxOptions bounds all options of a message, unknown optional ones
	// included.
	maxOptions = 32
)

// Option header, RFC 6887 §7.3 (Figure 4). Offsets are relative to the start
// of the option.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Option Code  |  Reserved     |       Option Length           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:                       (optional) Data                         :
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Option Length counts the data without padding; data that is not a
// multiple of 4 octets is followed by 1–3 zero octets (§7.3).
const (
	optOffCode   = 0 // Option Code
	optOffLength = 2 // Option Length (16 bits)
	optOffData   = 4 // Data
	optHeaderLen = 4
)

// Option data lengths (the Option Length field), §13.1–§13.3.
const (
	thirdPartyLen    = 16 // Internal IP Address (128 bits)
	preferFailureLen = 0  // no data
	filterLen        = 20 // Reserved, Prefix Length, Remote Peer Port, Remote Peer IP Address
)

// FILTER option data, RFC 6887 §13.3 (Figure 15); offsets relative to the
// start of the option.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Option Code=3 |  Reserved     |   Option Length=20            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    Reserved   | Prefix Length |      Remote Peer Port         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	|               Remote Peer IP address (128 bits)               |
//	|                                                               |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	fltOffPrefixLen  = optOffData + 1
	fltOffRemotePort = optOffData + 2
	fltOffRemoteAddr = optOffData + 4
)

// ipv4MappedBits is the length of the ::ffff:0:0/96 prefix that carries an
// IPv4 address in a 128-bit PCP address field (§5).
const ipv4MappedBits = 96

// Filter is one FILTER option (RFC 6887 §13.3): inbound packets on the
// mapping are admitted only from remote peers that match a filter.
type Filter struct {
	// PrefixLen is the Prefix Length as on the wire: the number of bits of
	// the 128-bit address field that matter. An IPv4 peer is carried as
	// ::ffff:a.b.c.d, so its valid range is 96–128 (96 + the IPv4 prefix
	// length); an IPv6 peer's is 1–128. 0 means "no filter" and removes
	// the filters installed before. Prefix converts to a netip.Prefix.
	PrefixLen uint8
	// RemotePort is the peer's port; 0 means all ports.
	RemotePort uint16
	// RemoteAddr is the peer's address, IPv4 unmapped (Is4).
	RemoteAddr netip.Addr
}

// Prefix returns the remote peers f admits as a masked netip.Prefix in the
// family of RemoteAddr: for IPv4 the 96 bits of the mapping prefix are
// taken off PrefixLen. ok is false for PrefixLen 0 ("no filter") and for a
// Filter that ParseRequest would have rejected.
func (f Filter) Prefix() (p netip.Prefix, ok bool) {
	bits := int(f.PrefixLen)
	if bits == 0 || bits > 128 || !f.RemoteAddr.IsValid() {
		return netip.Prefix{}, false
	}
	if f.RemoteAddr.Is4() {
		if bits < ipv4MappedBits {
			return netip.Prefix{}, false
		}
		bits -= ipv4MappedBits
	}
	return netip.PrefixFrom(f.RemoteAddr.WithZone(""), bits).Masked(), true
}

// valid reports whether PrefixLen is in range for the family of the
// address (§13.3): 0, or 96–128 for IPv4, or 1–128 for IPv6.
func (f Filter) valid() bool {
	switch {
	case f.PrefixLen == 0:
		return true
	case f.PrefixLen > 128:
		return false
	case f.RemoteAddr.Is4():
		return f.PrefixLen >= ipv4MappedBits
	}
	return true
}

// Options are the options of a PCP request or response that berth
// understands (RFC 6887 §13). Unknown optional options (codes 128–255) are
// skipped when parsing and are neither kept nor echoed; an unknown
// mandatory option fails the parse with UNSUPP_OPTION.
//
// THIRD_PARTY, PREFER_FAILURE and FILTER "may appear in response only if
// [they] appeared in the associated request" (§13.1–§13.3): a response
// carries the ones of its request that the server processed, which
// Request.Answer and ErrorResponse copy.
type Options struct {
	// ThirdParty is the Internal IP Address of a THIRD_PARTY option
	// (§13.1), IPv4 unmapped; !IsValid() when the option is absent.
	ThirdParty netip.Addr
	// PreferFailure is set by a PREFER_FAILURE option (§13.2): fail with
	// CANNOT_PROVIDE_EXTERNAL instead of assigning another port/address.
	PreferFailure bool
	// Filters are the FILTER options (§13.3) in message order. AppendTo
	// writes at most MaxFilters of them.
	Filters []Filter
}

// validFor reports whether option c may appear with opcode op (the "Valid
// for Opcodes" line of §13.1–§13.3).
func validFor(c OptionCode, op Opcode) bool {
	switch c {
	case OptThirdParty:
		return op == OpMap || op == OpPeer
	case OptPreferFailure, OptFilter:
		return op == OpMap
	}
	return false
}

// parseOptions decodes the options in b[off:] for a message with opcode op.
// The caller has checked that len(b) is a multiple of 4 and at most
// MaxLen. Offsets in errors are offsets in b.
func parseOptions(b []byte, off int, op Opcode) (Options, error) {
	var o Options
	for n := 0; off < len(b); n++ {
		if len(b)-off < optHeaderLen {
			return Options{}, &ParseError{Field: "option header", Off: off, Code: MalformedOption}
		}
		if n == maxOptions {
			return Options{}, &ParseError{Field: "option count", Off: off, Code: MalformedOption}
		}
		code := OptionCode(b[off+optOffCode])
		length := int(binary.BigEndian.Uint16(b[off+optOffLength:]))
		padded := (length + 3) &^ 3
		if padded > len(b)-off-optHeaderLen {
			return Options{}, &ParseError{Field: "option length", Off: off + optOffLength, Code: MalformedOption}
		}
		if code >= optionalOptions {
			off += optHeaderLen + padded // unknown optional option: ignore (§7.3)
			continue
		}
		if err := checkOption(code, length, op, off); err != nil {
			return Options{}, err
		}
		switch code {
		case OptThirdParty:
			if o.ThirdParty.IsValid() {
				return Options{}, &ParseError{Field: "THIRD_PARTY repeated", Off: off, Code: MalformedOption}
			}
			o.ThirdParty = addrAt(b, off+optOffData)
		case OptPreferFailure:
			if o.PreferFailure {
				return Options{}, &ParseError{Field: "PREFER_FAILURE repeated", Off: off, Code: MalformedOption}
			}
			o.PreferFailure = true
		case OptFilter:
			if len(o.Filters) == MaxFilters {
				return Options{}, &ParseError{Field: "FILTER count", Off: off, Code: ExcessiveRemotePeers}
			}
			f := Filter{
				PrefixLen:  b[off+fltOffPrefixLen],
				RemotePort: binary.BigEndian.Uint16(b[off+fltOffRemotePort:]),
				RemoteAddr: addrAt(b, off+fltOffRemoteAddr),
			}
			if !f.valid() {
				return Options{}, &ParseError{Field: "FILTER prefix length", Off: off + fltOffPrefixLen, Code: MalformedOption}
			}
			o.Filters = append(o.Filters, f)
		}
		off += optHeaderLen + padded
	}
	return o, nil
}

// checkOption checks a mandatory-range option at off: known (§7.3), valid
// for the opcode (§13) and of the defined length.
func checkOption(code OptionCode, length int, op Opcode, off int) error {
	want := 0
	switch code {
	case OptThirdParty:
		want = thirdPartyLen
	case OptPreferFailure:
		want = preferFailureLen
	case OptFilter:
		want = filterLen
	default:
		return &ParseError{Field: "option code", Off: off + optOffCode, Code: UnsuppOption}
	}
	if !validFor(code, op) {
		// §12.1 names the code for PREFER_FAILURE in a PEER request;
		// other misplaced options are malformed options (§7.4).
		rc := MalformedOption
		if code == OptPreferFailure && op == OpPeer {
			rc = MalformedRequest
		}
		return &ParseError{Field: code.String() + " not valid for " + op.String(), Off: off + optOffCode, Code: rc}
	}
	if length != want {
		return &ParseError{Field: code.String() + " length", Off: off + optOffLength, Code: MalformedOption}
	}
	return nil
}

// appendOptions appends o in the order THIRD_PARTY, PREFER_FAILURE, FILTERs
// (at most MaxFilters). Every option here has a multiple-of-4 length, so no
// padding is needed.
func appendOptions(b []byte, o Options) []byte {
	if o.ThirdParty.IsValid() {
		b = appendOptionHeader(b, OptThirdParty, thirdPartyLen)
		b = appendAddr(b, o.ThirdParty)
	}
	if o.PreferFailure {
		b = appendOptionHeader(b, OptPreferFailure, preferFailureLen)
	}
	for i, f := range o.Filters {
		if i == MaxFilters {
			break
		}
		b = appendOptionHeader(b, OptFilter, filterLen)
		b = append(b, 0, f.PrefixLen)
		b = binary.BigEndian.AppendUint16(b, f.RemotePort)
		b = appendAddr(b, f.RemoteAddr)
	}
	return b
}

func appendOptionHeader(b []byte, c OptionCode, length uint16) []byte {
	b = append(b, byte(c), 0)
	return binary.BigEndian.AppendUint16(b, length)
}
