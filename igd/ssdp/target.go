package ssdp

import (
	"strconv"
	"strings"
)

// Search-target vocabulary (UDA 1.1 §1.3.2, IGD:1 and IGD:2 DCPs).
const (
	STAll        = "ssdp:all"
	STRootDevice = "upnp:rootdevice"

	urnDevice  = "urn:schemas-upnp-org:device:"
	urnService = "urn:schemas-upnp-org:service:"

	typeIGD     = "InternetGatewayDevice"
	typeWAN     = "WANDevice"
	typeWANConn = "WANConnectionDevice"
	typeWCIC    = "WANCommonInterfaceConfig"
	typeIPConn  = "WANIPConnection"
	typePPPConn = "WANPPPConnection"
	typeL3F     = "Layer3Forwarding"
	typeV6FC    = "WANIPv6FirewallControl"
)

// Device describes the IGD tree the description package publishes, as far
// as discovery needs it. The description package owns the XML; the caller
// fills this from the same configuration.
type Device struct {
	// UDNs of the three devices, with or without the "uuid:" prefix.
	Root, WANDevice, WANConnectionDevice string
	// IGDVersion is 1 or 2; WANDevice and WANConnectionDevice have the
	// same version as the root (IGD:2 DCP §2). 0 means 2.
	IGDVersion int
	// WANIPConnectionVersion is 1 or 2; 0 means 2.
	WANIPConnectionVersion int
	// Layer3Forwarding is described at the root (optional, v1 only).
	Layer3Forwarding bool
	// WANIPv6FirewallControl is described in the WANConnectionDevice.
	WANIPv6FirewallControl bool
}

// Answer is one (ST, USN) pair to send for a search, or to announce as
// (NT, USN) in a NOTIFY.
type Answer struct {
	ST, USN string
}

// target is one device or service type the tree contains.
type target struct {
	urn   string // urnDevice or urnService
	typ   string
	ver   int    // implemented version
	udn   string // device that holds it
	alias bool   // answered only when searched by name (WANPPPConnection)
}

func uuid(s string) string {
	if len(s) >= 5 && strings.EqualFold(s[:5], "uuid:") {
		return "uuid:" + s[5:]
	}
	return "uuid:" + s
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// targets lists the types of d; the order is the order of ssdp:all
// answers and NOTIFYs, most useful first.
func (d Device) targets() []target {
	igd := orDefault(d.IGDVersion, 2)
	root, wan, conn := uuid(d.Root), uuid(d.WANDevice), uuid(d.WANConnectionDevice)
	ts := []target{
		{urnDevice, typeIGD, igd, root, false},
		{urnService, typeIPConn, orDefault(d.WANIPConnectionVersion, 2), conn, false},
		{urnDevice, typeWAN, igd, wan, false},
		{urnService, typeWCIC, 1, wan, false},
		{urnDevice, typeWANConn, igd, conn, false},
	}
	if d.Layer3Forwarding {
		ts = append(ts, target{urnService, typeL3F, 1, root, false})
	}
	if d.WANIPv6FirewallControl {
		ts = append(ts, target{urnService, typeV6FC, 1, conn, false})
	}
	// COMPAT S1: miniupnpd ADVERTISE_WANPPPCONN. miniupnpc and Apple fall
	// back to searching WANPPPConnection:1 when WANIPConnection gets no
	// answer. It is not in the description, so it is not announced and
	// not part of ssdp:all: only a search for it by name is answered.
	return append(ts, target{urnService, typePPPConn, 1, conn, true})
}

// Targets returns what the device announces and answers to ssdp:all:
// upnp:rootdevice, the three UDNs and every type at its implemented
// version.
func (d Device) Targets() []Answer {
	root := uuid(d.Root)
	out := []Answer{{STRootDevice, root + "::" + STRootDevice}}
	for _, t := range d.targets() {
		if t.alias {
			continue
		}
		st := t.urn + t.typ + ":" + strconv.Itoa(t.ver)
		out = append(out, Answer{st, t.udn + "::" + st})
		if t.urn == urnDevice {
			out = append(out, Answer{t.udn, t.udn})
		}
	}
	return out
}

// Matches returns the answers to a search for st (COMPAT S1, S2):
//
//   - ssdp:all: every target of Targets;
//   - upnp:rootdevice and uuid:<UDN> of each device;
//   - a device or service type of the tree at any version from 1 up to
//     the implemented one, with the searched string verbatim in ST and
//     USN (goupnp compares exactly; Apple searches ":1" of a v2 device;
//     UDA 1.1 §1.3.2 as quoted in miniupnpd's minissdp.c);
//   - WANPPPConnection:1, as an alias (see targets).
//
// Higher versions, other types and other domains get no answer (nil).
// Names compare case-insensitively, which no client relies on but costs
// nothing, since ST is echoed verbatim anyway.
func Matches(st string, d Device) []Answer {
	switch {
	case st == "" || checkST(st) != nil:
		return nil
	case strings.EqualFold(st, STAll):
		return d.Targets()
	case strings.EqualFold(st, STRootDevice):
		return []Answer{{st, uuid(d.Root) + "::" + STRootDevice}}
	case len(st) > 5 && strings.EqualFold(st[:5], "uuid:"):
		for _, u := range []string{d.Root, d.WANDevice, d.WANConnectionDevice} {
			if u != "" && strings.EqualFold(st, uuid(u)) {
				return []Answer{{st, st}}
			}
		}
		return nil
	}
	urn, rest, ok := cutFold(st, urnDevice)
	if !ok {
		if urn, rest, ok = cutFold(st, urnService); !ok {
			return nil
		}
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return nil
	}
	typ, verStr := rest[:i], rest[i+1:]
	ver, err := strconv.Atoi(verStr)
	if err != nil || ver < 1 || verStr[0] == '+' {
		return nil
	}
	for _, t := range d.targets() {
		if t.urn == urn && strings.EqualFold(t.typ, typ) && ver <= t.ver {
			return []Answer{{st, t.udn + "::" + st}}
		}
	}
	return nil
}

// cutFold is strings.CutPrefix with a case-insensitive prefix; it returns
// the canonical prefix.
func cutFold(s, prefix string) (string, string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", "", false
	}
	return prefix, s[len(prefix):], true
}
