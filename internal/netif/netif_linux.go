package netif

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// host is the running Linux system, read over rtnetlink.
var host = system{
	links:        netlinkLinks,
	defaultRoute: netlinkDefaultRoute,
	gateway:      discoverGateway,
}

// netlinkLinks lists the links and their addresses (two netlink dumps).
func netlinkLinks() ([]link, error) {
	nls, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	links := make([]link, 0, len(nls))
	for _, nl := range nls {
		a := nl.Attrs()
		links = append(links, link{
			Interface: Interface{Name: a.Name, Index: a.Index},
			Up:        a.Flags&net.FlagUp != 0,
			Loopback:  a.Flags&net.FlagLoopback != 0,
		})
	}
	for _, ad := range addrs {
		if ad.IPNet == nil || !usable(ad.Flags) {
			continue
		}
		p, ok := prefixOf(ad.IP, ad.Mask)
		if !ok {
			continue
		}
		for i := range links {
			if links[i].Index == ad.LinkIndex {
				links[i].Prefixes = append(links[i].Prefixes, p)
			}
		}
	}
	return links, nil
}

// usable reports whether an address with these IFA_F_ flags can be bound:
// not while IPv6 duplicate address detection runs (a new address is
// tentative for a second or more, and bind fails with EADDRNOTAVAIL)
// unless the address is optimistic (RFC 4429), nor after it failed. The
// kernel announces the address again when it is done, and the address
// watch looks again.
func usable(flags int) bool {
	if flags&unix.IFA_F_DADFAILED != 0 {
		return false
	}
	return flags&unix.IFA_F_TENTATIVE == 0 || flags&unix.IFA_F_OPTIMISTIC != 0
}

// netlinkDefaultRoute returns the interface of the main table's default
// route with the lowest metric; for a multipath route, its first hop's.
func netlinkDefaultRoute(v6 bool) (int, error) {
	family := netlink.FAMILY_V4
	if v6 {
		family = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteList(nil, family)
	if err != nil {
		return 0, err
	}
	index, best := 0, 0
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		i := r.LinkIndex
		if i == 0 && len(r.MultiPath) > 0 {
			i = r.MultiPath[0].LinkIndex
		}
		if i != 0 && (index == 0 || r.Priority < best) {
			index, best = i, r.Priority
		}
	}
	return index, nil
}

// readCounters reads name's link statistics over rtnetlink (the 64-bit
// IFLA_STATS64 the kernel reports with the link).
func readCounters(name string) (Counters, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return Counters{}, fmt.Errorf("interface %q: %w", name, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return Counters{}, fmt.Errorf("interface %q: the kernel reported no counters", name)
	}
	return Counters{BytesSent: s.TxBytes, BytesReceived: s.RxBytes, PacketsSent: s.TxPackets, PacketsReceived: s.RxPackets}, nil
}
