package soap

import (
	"fmt"
	"strconv"
	"strings"
)

// UPnP data types (UPnP Device Architecture 1.0 §2.5), one Go type each.
type (
	// UI2 is the UPnP "ui2" type: ports and entry counts.
	UI2 uint16
	// UI4 is the UPnP "ui4" type: lease durations, indexes, counters.
	UI4 uint32
	// Boolean is the UPnP "boolean" type. Clients send 1/0, true/false or
	// yes/no in any case (COMPAT P4); responses always carry 1 or 0.
	Boolean bool
	// Protocol is a PortMappingProtocol value, always upper case once
	// parsed: "TCP" or "UDP" (COMPAT P4: accept any case, echo upper case).
	Protocol string
)

// The two PortMappingProtocol values.
const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// String formats b the way responses carry it.
func (b Boolean) String() string {
	if b {
		return "1"
	}
	return "0"
}

// String formats u in decimal.
func (u UI2) String() string { return strconv.FormatUint(uint64(u), 10) }

// String formats u in decimal.
func (u UI4) String() string { return strconv.FormatUint(uint64(u), 10) }

// invalidArg returns the error for a bad or missing argument: it wraps the
// 402 fault and names the argument.
func invalidArg(name, why string) error {
	return fmt.Errorf("soap: argument %s %s: %w", name, why, NewFault(InvalidArgs))
}

// Has reports whether the request carried the argument, even empty.
func (a Action) Has(name string) bool {
	_, ok := a.Args[name]
	return ok
}

// String returns the argument's trimmed value, "" when missing (COMPAT P5:
// a missing description is empty).
func (a Action) String(name string) string { return a.Args[name] }

// UI2 parses a required ui2 argument. Missing, empty, signed or out-of-range
// values are an error wrapping the 402 fault.
func (a Action) UI2(name string) (UI2, error) {
	v, err := a.uint(name, 16)
	return UI2(v), err
}

// UI4 parses a required ui4 argument. Missing, empty, signed or out-of-range
// values are an error wrapping the 402 fault. Do not use it for
// NewLeaseDuration: see Lease.
func (a Action) UI4(name string) (UI4, error) {
	v, err := a.uint(name, 32)
	return UI4(v), err
}

func (a Action) uint(name string, bits int) (uint64, error) {
	s, ok := a.Args[name]
	if !ok {
		return 0, invalidArg(name, "missing")
	}
	s = strings.TrimPrefix(s, "+")
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, invalidArg(name, fmt.Sprintf("%q is not a ui%d", a.Args[name], bits/8))
	}
	return v, nil
}

// Lease parses a lease duration argument (NewLeaseDuration) and never fails:
// tailscale answers a 402 by retrying with 0 and many clients just give up,
// so COMPAT R3/M2 forbid 402 (and 725) for lease values. Missing, empty or
// unparsable values give 0 (COMPAT P5), a negative value gives 0, and a value
// above the ui4 range saturates. The caller applies the namespace's rules
// (v1: 0 is permanent; v2: 0 and > 604800 become 604800).
func (a Action) Lease(name string) UI4 {
	s := strings.TrimPrefix(a.Args[name], "+")
	if s == "" || s[0] == '-' {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return UI4(^uint32(0))
		}
		return 0
	}
	return UI4(v)
}

// Boolean parses a boolean argument: 1/0, true/false, yes/no in any case
// (COMPAT P4). A missing or empty argument gives def (COMPAT P5: NewEnabled
// missing = 1); anything else is an error wrapping the 402 fault.
func (a Action) Boolean(name string, def Boolean) (Boolean, error) {
	s := a.Args[name]
	if s == "" {
		return def, nil
	}
	switch strings.ToLower(s) {
	case "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	}
	return false, invalidArg(name, fmt.Sprintf("%q is not a boolean", s))
}

// Protocol parses a PortMappingProtocol argument in any case and returns it
// upper case; other values are an error wrapping the 402 fault.
func (a Action) Protocol(name string) (Protocol, error) {
	switch p := Protocol(strings.ToUpper(a.Args[name])); p {
	case TCP, UDP:
		return p, nil
	}
	return "", invalidArg(name, fmt.Sprintf("%q is not TCP or UDP", a.Args[name]))
}

// RemoteHost returns a NewRemoteHost argument with the wildcard spellings
// (missing, empty, "*") folded to "" (COMPAT P5).
func (a Action) RemoteHost(name string) string {
	if s := a.Args[name]; s != "*" {
		return s
	}
	return ""
}
