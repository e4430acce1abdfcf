//go:build !linux

package netif

import (
	"fmt"
	"net"
)

// host is the running system, read with the standard library: it has no
// portable way to read the routing table, so the WAN comes from the
// default gateway.
var host = system{
	links:        stdLinks,
	defaultRoute: func(bool) (int, error) { return 0, nil },
	gateway:      discoverGateway,
}

func stdLinks() ([]link, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	links := make([]link, 0, len(ifs))
	for _, ifc := range ifs {
		l := link{
			Interface: Interface{Name: ifc.Name, Index: ifc.Index},
			Up:        ifc.Flags&net.FlagUp != 0,
			Loopback:  ifc.Flags&net.FlagLoopback != 0,
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, ok := prefixOf(n.IP, n.Mask); ok {
					l.Prefixes = append(l.Prefixes, p)
				}
			}
		}
		links = append(links, l)
	}
	return links, nil
}

// readCounters is Linux's only: the standard library has no interface
// counters.
func readCounters(name string) (Counters, error) {
	return Counters{}, fmt.Errorf("interface %q: reading its counters is only supported on Linux", name)
}
