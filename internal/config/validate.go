package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// Value checks shared by the file and the flags.

// maxIfName is IFNAMSIZ (16) less the terminating NUL.
const maxIfName = 15

// checkIfName applies Linux's dev_valid_name rules: 1-15 bytes, not "."
// or "..", no '/', ':' or white space.
func checkIfName(s string) error {
	switch {
	case s == "":
		return errors.New("empty interface name")
	case len(s) > maxIfName:
		return fmt.Errorf("interface name %q longer than %d bytes", s, maxIfName)
	case s == "." || s == "..":
		return fmt.Errorf("bad interface name %q", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		return fmt.Errorf("interface name %q has a '/', ':', space or control character", s)
	}
	return nil
}

// checkIfNames checks a list of names and that none repeats. On error,
// i is the index of the bad name.
func checkIfNames(names []string) (i int, err error) {
	for i, s := range names {
		if err := checkIfName(s); err != nil {
			return i, err
		}
		for _, t := range names[:i] {
			if s == t {
				return i, fmt.Errorf("interface %q listed twice", s)
			}
		}
	}
	return 0, nil
}

// parseUnicast parses an IP address that can be a host's: not
// unspecified, multicast or the IPv4 broadcast address, and without a
// zone. IPv4-mapped IPv6 addresses are unmapped.
func parseUnicast(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad ip address %q", s)
	}
	if err := checkUnicast(a); err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap(), nil
}

func checkUnicast(a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("address %s: zones are not allowed", a)
	case a.IsUnspecified():
		return fmt.Errorf("address %s is unspecified", a)
	case a.IsMulticast() || a.Unmap().IsMulticast():
		return fmt.Errorf("address %s is multicast", a)
	case a.Unmap() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("address %s is the broadcast address", a)
	}
	return nil
}

// parseVirtual parses a virtual gateway address: a unicast address
// that can be bound on a LAN interface, so neither loopback nor link-local
// (an IPv6 link-local address would need a zone, which is refused too).
func parseVirtual(s string) (netip.Addr, error) {
	a, err := parseUnicast(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("virtual address: %w", err)
	}
	if a.IsLoopback() || a.IsLinkLocalUnicast() {
		return netip.Addr{}, fmt.Errorf("virtual address %s: want a LAN address, not loopback or link-local", a)
	}
	return a, nil
}

// parseAddrPort parses "ip:port" or "[ipv6]:port" with a unicast address
// and a port other than 0.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address:port %q", s)
	}
	if err := checkUnicast(ap.Addr()); err != nil {
		return netip.AddrPort{}, err
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// oneOf returns s if it is one of the choices.
func oneOf(what, s string, choices ...string) (string, error) {
	for _, c := range choices {
		if s == c {
			return s, nil
		}
	}
	return "", fmt.Errorf("unknown %s %q (want %s)", what, s, strings.Join(choices, ", "))
}

func parseBackend(s string) (string, error) { return oneOf("backend", s, "auto", "relay", "nft") }

func parseLogFormat(s string) (string, error) { return oneOf("log format", s, "text", "json") }

func parseLogLevel(s string) (slog.Level, error) {
	if _, err := oneOf("log level", s, "debug", "info", "warn", "error"); err != nil {
		return 0, err
	}
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// parseDuration is time.ParseDuration without negative durations.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want e.g. \"120s\", \"24h\")", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// parseReserved parses "PORTS" or "tcp:PORTS" / "udp:PORTS", PORTS being
// "p" or "lo-hi".
func parseReserved(s string) (policy.Reserved, error) {
	r := policy.Reserved{Why: "configured"}
	ports := s
	if proto, rest, found := strings.Cut(s, ":"); found {
		p, err := parseProto(proto)
		if err != nil {
			return policy.Reserved{}, fmt.Errorf("reserved ports %q: %w", s, err)
		}
		r.Proto, ports = p, rest
	}
	pr, err := mapping.ParsePortRange(ports)
	if err != nil {
		return policy.Reserved{}, fmt.Errorf("reserved ports %q: %w", s, err)
	}
	r.Ports = pr
	return r, nil
}

// parseProto accepts exactly "tcp" or "udp".
func parseProto(s string) (mapping.Protocol, error) {
	switch s {
	case "tcp":
		return mapping.TCP, nil
	case "udp":
		return mapping.UDP, nil
	}
	return 0, fmt.Errorf(`unknown protocol %q (want "tcp" or "udp")`, s)
}

// checkName checks a forward's name: not empty, at most 64 bytes, no
// control characters (it appears in logs and UPnP listings).
func checkName(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return errors.New("empty name")
	case len(s) > 64:
		return fmt.Errorf("name %q longer than 64 bytes", s)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("name %q has a control character", s)
	}
	return nil
}

// parseRouted reads a routed LAN subnet ("10.20.0.0/16"). Host bits are
// cleared; a prefix of length 0 is refused, because it would serve every
// address, the internet included, as LAN.
func parseRouted(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("routed subnet %q: want an address/length such as 10.20.0.0/16", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("routed subnet %q: no zone allowed", s)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("routed subnet %q: a /0 would serve every address as LAN", s)
	}
	a := p.Addr()
	if a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
		return netip.Prefix{}, fmt.Errorf("routed subnet %q: not a unicast subnet", s)
	}
	return p.Masked(), nil
}

// checkDir checks a directory setting: an absolute path.
func checkDir(s string) error {
	if s == "" || !filepath.IsAbs(s) {
		return fmt.Errorf("directory %q: want an absolute path", s)
	}
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("directory %q: contains a NUL byte", s)
	}
	return nil
}
