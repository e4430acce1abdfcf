package netif

import (
	"fmt"
	"net/netip"
)

// Addrs returns the prefixes (address and length) of the interface name,
// read afresh from the system.
func Addrs(name string) ([]netip.Prefix, error) {
	links, err := host.links()
	if err != nil {
		return nil, fmt.Errorf("netif: list interfaces: %w", err)
	}
	l, ok := byName(links, name)
	if !ok {
		return nil, fmt.Errorf("netif: no interface %q", name)
	}
	return l.Prefixes, nil
}

// ExternalAddr picks the external address among a WAN interface's
// prefixes, as Detect does: the first global unicast IPv4, else the first
// global IPv6 outside fc00::/7, else the first ULA; the zero Addr when
// there is none (the WAN is down).
func ExternalAddr(ps []netip.Prefix) netip.Addr { return externalAddr(ps) }

// IsNetworkOrBroadcast reports whether a is the network or the broadcast
// address of the IPv4 prefix p, which no host has: an answer sent to such
// a (spoofed) source would reach every host of the link. It is false for
// /31 and /32 prefixes (RFC 3021), for IPv6 and for a outside p.
func IsNetworkOrBroadcast(p netip.Prefix, a netip.Addr) bool {
	if !a.Is4() || !p.Addr().Is4() || p.Bits() >= 31 || !p.Contains(a) {
		return false
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	host := uint32(1)<<(32-p.Bits()) - 1
	return v&host == 0 || v&host == host
}
