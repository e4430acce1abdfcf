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
