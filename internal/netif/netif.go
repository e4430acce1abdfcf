// Package netif finds berth's network interfaces: the WAN interface and
// its address, the LAN interfaces and their prefixes, and the ports the
// router itself listens on.
//
// On Linux interfaces, addresses and default routes come from rtnetlink
// (github.com/vishvananda/netlink); elsewhere from the standard library.
// When no default route is found, the gateway reported by
// github.com/jackpal/gateway (RFC 1122 §3.3.1's "default gateway") names
// the WAN as the interface on the gateway's subnet.
package netif

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Interface is a network interface and its addresses.
type Interface struct {
	// Name is the interface name ("eth0").
	Name string
	// Index is the kernel's interface index.
	Index int
	// Prefixes are the interface's addresses with their prefix lengths,
	// not masked (192.168.1.1/24).
	Prefixes []netip.Prefix
}

// Detected is the outcome of Detect.
type Detected struct {
	// WAN is the upstream interface.
	WAN Interface
	// ExternalAddr is the WAN's first global unicast IPv4 address, else
	// its first global unicast IPv6 address (preferring one outside
	// fc00::/7); the zero Addr if it has none. A private or CGNAT IPv4
	// address counts: it is reported as it is.
	ExternalAddr netip.Addr
	// LAN are the interfaces berth serves.
	LAN []Interface
	// LANPrefixes are the masked prefixes of the LAN interfaces, without
	// duplicates, in interface order. Link-local and loopback prefixes
	// are left out: they are the same on every link and say nothing about
	// which side a client is on.
	LANPrefixes []netip.Prefix
	// ServeWAN is true when no LAN interface was found (or the WAN was
	// named as a LAN): LAN is then the WAN interface itself.
	ServeWAN bool
	// Notes say, for a person, what was detected and why; berthd logs
	// them at start.
	Notes []string
}

// Detect finds the WAN and LAN interfaces.
//
// WAN is the interface named wan; if wan is "", the interface of the IPv4
// default route, else of the IPv6 default route, else the interface on
// whose subnet the system's default gateway lies. LAN are the interfaces
// named in lan; if lan is empty, every other interface that is up, is not
// a loopback, and has a private address (RFC 1918 or an IPv6 ULA
// fc00::/7; not CGNAT's 100.64.0.0/10, see isPrivate). If that finds none,
// berth serves the WAN interface itself (ServeWAN), with only its
// addresses the internet cannot reach (not Routable); when that leaves
// none but link-local ones, Detect fails with a *WANOnlyError.
//
// An interface that is named but does not exist is an error, and so is
// finding no WAN interface at all.
func Detect(wan string, lan []string) (Detected, error) {
	return detect(host, wan, lan)
}

// link is an interface as the system describes it.
type link struct {
	Interface
	Up       bool
	Loopback bool
}

// system is the seam between the decisions in detect and the operating
// system, so that tests can describe any host.
type system struct {
	// links lists every interface with its addresses.
	links func() ([]link, error)
	// defaultRoute returns the interface index of the default route of
	// the IPv4 (or IPv6) table, or 0 if there is none.
	defaultRoute func(v6 bool) (int, error)
	// gateway returns the default gateway's address.
	gateway func() (netip.Addr, error)
}

// cgnat is the shared address space of RFC 6598.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// notOnTheInternet are global unicast ranges that never reach the
// internet: documentation (RFC 5737, RFC 3849) and benchmarking (RFC 2544,
// RFC 5180). Lab machines and test networks use them.
var notOnTheInternet = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2001:2::/48"),
}

// Routable reports whether hosts on the internet, or an ISP's other
// customers, can reach a: a global unicast address outside RFC 1918, the
// ULAs and notOnTheInternet. CGNAT's shared space (RFC 6598) is
// routable here, as the ISP's other customers share it.
func Routable(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	return !slices.ContainsFunc(notOnTheInternet, func(p netip.Prefix) bool { return p.Contains(a) })
}

// isPrivate reports whether a is an RFC 1918 or ULA address: one that
// makes an interface a LAN by default. CGNAT's shared space does not: an
// LTE or other ISP link has it, and the ISP's other customers are not the
// LAN.
func isPrivate(a netip.Addr) bool {
	return a.Unmap().IsPrivate()
}

func detect(sys system, wanName string, lanNames []string) (Detected, error) {
	links, err := sys.links()
	if err != nil {
		return Detected{}, fmt.Errorf("netif: list interfaces: %w", err)
	}
	var d Detected
	wan, err := findWAN(sys, links, wanName, &d.Notes)
	if err != nil {
		return Detected{}, err
	}
	d.WAN = wan.Interface
	if !wan.Up {
		d.note("wan %s is down", wan.Name)
	}
	d.ExternalAddr = externalAddr(wan.Prefixes)
	if d.ExternalAddr.IsValid() {
		d.note("external address %s: from wan %s", d.ExternalAddr, wan.Name)
	} else {
		d.note("wan %s has no global unicast address: external address unknown", wan.Name)
	}

	if len(lanNames) > 0 {
		for _, name := range lanNames {
			l, ok := byName(links, name)
			if !ok {
				return Detected{}, &NotFoundError{Role: "lan", Name: name}
			}
			if l.Index == wan.Index {
				d.ServeWAN = true
				d.note("lan %s: named in the configuration; it is also the wan interface", name)
			} else {
				d.note("lan %s: named in the configuration", name)
			}
			if !l.Up {
				d.note("lan %s is down", name)
			}
			d.LAN = append(d.LAN, l.Interface)
		}
	} else {
		for _, l := range links {
			if l.Index == wan.Index || !l.Up || l.Loopback {
				continue
			}
			i := slices.IndexFunc(l.Prefixes, func(p netip.Prefix) bool { return isPrivate(p.Addr()) })
			if i < 0 {
				if j := slices.IndexFunc(l.Prefixes, func(p netip.Prefix) bool { return cgnat.Contains(p.Addr().Unmap()) }); j >= 0 {
					d.note("%s not served: its address %s is CGNAT's shared space (set lan to serve it)", l.Name, l.Prefixes[j])
				}
				continue
			}
			d.note("lan %s: up, with private address %s", l.Name, l.Prefixes[i])
			d.LAN = append(d.LAN, l.Interface)
		}
		if len(d.LAN) == 0 {
			// Serving the WAN is the operator's choice (lan names it),
			// never berth's on addresses the internet reaches (DESIGN:
			// nothing answers on the WAN): those are left out, and with
			// nothing else to serve Detect refuses.
			lan := wan.Interface
			lan.Prefixes = nil
			var left []netip.Prefix
			for _, p := range wan.Prefixes {
				if Routable(p.Addr()) {
					left = append(left, p)
				} else {
					lan.Prefixes = append(lan.Prefixes, p)
				}
			}
			if len(left) > 0 && !slices.ContainsFunc(lan.Prefixes, servable) {
				return Detected{}, &WANOnlyError{WAN: wan.Name, Prefix: left[0]}
			}
			d.ServeWAN = true
			d.LAN = []Interface{lan}
			d.note("no other interface is up with a private address: serving wan %s itself as the lan (set lan to choose)", wan.Name)
			if len(left) > 0 {
				d.note("not serving %v of wan %s: the internet reaches them", left, wan.Name)
			}
		}
	}
	for _, l := range d.LAN {
		for _, p := range l.Prefixes {
			if !servable(p) {
				continue
			}
			if m := p.Masked(); !slices.Contains(d.LANPrefixes, m) {
				d.LANPrefixes = append(d.LANPrefixes, m)
			}
		}
	}
	if len(d.LANPrefixes) == 0 {
		d.note("the lan interfaces have no usable prefix: no client will be served")
	}
	return d, nil
}

// servable reports whether p can be a LAN prefix: link-local and
// loopback prefixes are the same on every link and say nothing about
// which side a client is on.
func servable(p netip.Prefix) bool {
	return !p.Addr().IsLinkLocalUnicast() && !p.Addr().IsLoopback()
}

func (d *Detected) note(format string, args ...any) {
	d.Notes = append(d.Notes, fmt.Sprintf(format, args...))
}

// findWAN picks the WAN interface and notes why.
func findWAN(sys system, links []link, name string, notes *[]string) (link, error) {
	note := func(format string, args ...any) { *notes = append(*notes, fmt.Sprintf(format, args...)) }
	if name != "" {
		l, ok := byName(links, name)
		if !ok {
			return link{}, &NotFoundError{Role: "wan", Name: name}
		}
		note("wan %s: named in the configuration", name)
		return l, nil
	}
	var why []string // why each method found nothing
	for _, v6 := range []bool{false, true} {
		family := "IPv4"
		if v6 {
			family = "IPv6"
		}
		index, err := sys.defaultRoute(v6)
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("%s routes: %v", family, err))
		case index == 0:
			why = append(why, "no "+family+" default route")
		default:
			if l, ok := byIndex(links, index); ok {
				note("wan %s: interface of the %s default route", l.Name, family)
				return l, nil
			}
			why = append(why, fmt.Sprintf("%s default route via unknown interface index %d", family, index))
		}
	}
	gw, err := sys.gateway()
	switch {
	case err != nil:
		why = append(why, fmt.Sprintf("gateway: %v", err))
	case !gw.IsValid():
		why = append(why, "no gateway")
	default:
		for _, l := range links {
			for _, p := range l.Prefixes {
				if p.Masked().Contains(gw) {
					note("wan %s: on the subnet of the default gateway %s (%s)", l.Name, gw, strings.Join(why, "; "))
					return l, nil
				}
			}
		}
		why = append(why, fmt.Sprintf("no interface on the subnet of the gateway %s", gw))
	}
	return link{}, fmt.Errorf("netif: no wan interface found (%s); set wan: %w", strings.Join(why, "; "), ErrNoWAN)
}

// ErrNoWAN is wrapped by Detect's error when no WAN interface was named and
// none could be found.
var ErrNoWAN = errors.New("no wan interface")

// NotFoundError is an interface the configuration names that the system
// does not have.
type NotFoundError struct {
	Role string // "wan" or "lan"
	Name string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("netif: %s interface %q not found", e.Role, e.Name)
}

// WANOnlyError is Detect's refusal to serve the WAN interface as the LAN
// when lan is not set, no other interface qualifies, and the WAN has an
// address the internet (or the ISP's other customers) can reach: such a
// host would answer them. It is not ErrNoWAN.
type WANOnlyError struct {
	WAN    string
	Prefix netip.Prefix // the WAN's first Routable address
}

func (e *WANOnlyError) Error() string {
	return fmt.Sprintf("netif: no lan interface: no other interface is up with a private address, and wan %s has "+
		"only addresses the internet (or, for CGNAT, the ISP's other customers) reaches, such as %s, and berth does not "+
		"serve those unless told to: set lan to the interfaces to serve (-lan %s serves the wan itself)",
		e.WAN, e.Prefix, e.WAN)
}

func byName(links []link, name string) (link, bool) {
	i := slices.IndexFunc(links, func(l link) bool { return l.Name == name })
	if i < 0 {
		return link{}, false
	}
	return links[i], true
}

func byIndex(links []link, index int) (link, bool) {
	i := slices.IndexFunc(links, func(l link) bool { return l.Index == index })
	if i < 0 {
		return link{}, false
	}
	return links[i], true
}

// externalAddr picks the external address among a WAN's prefixes: the
// first global unicast IPv4, else the first global unicast IPv6 outside
// fc00::/7, else the first ULA.
func externalAddr(ps []netip.Prefix) netip.Addr {
	pick := func(ok func(netip.Addr) bool) netip.Addr {
		for _, p := range ps {
			if a := p.Addr().Unmap(); a.IsGlobalUnicast() && ok(a) {
				return a
			}
		}
		return netip.Addr{}
	}
	if a := pick(netip.Addr.Is4); a.IsValid() {
		return a
	}
	if a := pick(func(a netip.Addr) bool { return a.Is6() && !a.IsPrivate() }); a.IsValid() {
		return a
	}
	return pick(netip.Addr.Is6)
}
