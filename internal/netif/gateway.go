package netif

import (
	"net"
	"net/netip"

	"github.com/jackpal/gateway"
)

// discoverGateway asks github.com/jackpal/gateway for the default gateway.
func discoverGateway() (netip.Addr, error) {
	ip, err := gateway.DiscoverGateway()
	if err != nil {
		return netip.Addr{}, err
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, nil
	}
	return a.Unmap(), nil
}

// prefixOf converts an address and mask to an unmasked prefix.
func prefixOf(ip net.IP, mask net.IPMask) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := mask.Size()
	if bits == 0 { // non-canonical mask
		return netip.Prefix{}, false
	}
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	if ones < 0 || ones > a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
