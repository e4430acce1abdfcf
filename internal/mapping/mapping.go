// Package mapping is berth's shared vocabulary: protocols, mapping keys,
// mappings, requests, origins, the sentinel errors and the Mapper interface
// that every responder (UPnP IGD, NAT-PMP RFC 6886, PCP RFC 6887) talks to.
//
// It depends only on the standard library.
package mapping

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Protocol is a transport protocol, by its IANA protocol number.
type Protocol uint8

// Protocols berth maps.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// String returns "TCP", "UDP" or "proto(N)".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Valid reports whether p is a protocol berth can map.
func (p Protocol) Valid() bool { return p == TCP || p == UDP }

// ParseProtocol accepts "tcp" or "udp" in any case.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("mapping: unknown protocol %q", s)
}

// Key is the WAN-side identity of a mapping: no two live mappings share a Key.
// Remote is the optional remote host the mapping is restricted to (UPnP
// NewRemoteHost); the zero Addr means any remote host. Key is comparable.
type Key struct {
	Proto    Protocol
	External netip.AddrPort
	Remote   netip.Addr
}

// String formats the key as "TCP 203.0.113.2:8080" (with " from R" when
// restricted to a remote host).
func (k Key) String() string {
	s := k.Proto.String() + " " + k.External.String()
	if k.Remote.IsValid() {
		s += " from " + k.Remote.String()
	}
	return s
}

// Compare orders keys by external port, then protocol, then external
// address, then remote host. This is the stable listing order that UPnP's
// indexed GetGenericPortMappingEntry walks.
func (k Key) Compare(o Key) int {
	if c := int(k.External.Port()) - int(o.External.Port()); c != 0 {
		return c
	}
	if c := int(k.Proto) - int(o.Proto); c != 0 {
		return c
	}
	if c := k.External.Addr().Compare(o.External.Addr()); c != 0 {
		return c
	}
	return k.Remote.Compare(o.Remote)
}

// Kind says which mechanism created a mapping.
type Kind uint8

// Origins of a mapping.
const (
	KindNone    Kind = iota
	KindIGD          // UPnP IGD AddPortMapping / AddAnyPortMapping
	KindNATPMP       // NAT-PMP (RFC 6886)
	KindPCP          // PCP MAP or PEER (RFC 6887)
	KindStatic       // a static forward from the configuration
	KindTrigger      // opened by a port trigger
)

var kindNames = [...]string{"none", "upnp", "natpmp", "pcp", "static", "trigger"}

// String returns the lower-case name used in logs and listings.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Origin records who asked for a mapping and protocol-specific identity.
type Origin struct {
	Kind Kind
	// Description is the UPnP NewPortMappingDescription or the static
	// forward's name. Responders strip control characters before use.
	Description string
	// Nonce is the PCP mapping nonce (RFC 6887 §11.1).
	Nonce [12]byte
}

// Mapping is one live port mapping.
type Mapping struct {
	Key
	Internal netip.AddrPort // where traffic to Key.External is sent
	Client   netip.Addr     // socket source that owns it; never taken from a payload
	Origin   Origin
	// Expires is when the lease ends. The zero Time means permanent: a
	// static forward, or a UPnP v1 lease of 0 that policy lets stand.
	Expires time.Time
	// Peers, when not empty, are the only remote hosts that may reach the
	// mapping (PCP FILTER, RFC 6887 §13.3); nil means every remote host
	// may. It is a pointer to an immutable set so that Mapping stays
	// comparable; == compares the pointers, Peers.Equal the sets. Mappings
	// made by the lease table never hold an empty non-nil set.
	Peers *Peers
}

// Permanent reports whether the mapping has no expiry.
func (m Mapping) Permanent() bool { return m.Expires.IsZero() }

// Remaining is the lease left at now, rounded down to whole seconds and
// never negative. It is 0 for a permanent mapping.
func (m Mapping) Remaining(now time.Time) time.Duration {
	if m.Permanent() {
		return 0
	}
	d := m.Expires.Sub(now).Truncate(time.Second)
	if d < 0 {
		return 0
	}
	return d
}

// LeaseSeconds is the lease left at now as NAT-PMP and PCP report it:
// whole seconds rounded to the nearest, at least 1 while the mapping
// lives (0 would read as "deleted"), and the largest value for a
// permanent mapping.
func (m Mapping) LeaseSeconds(now time.Time) uint32 {
	if m.Permanent() {
		return 1<<32 - 1
	}
	d := m.Expires.Sub(now) + time.Second/2
	if d < time.Second {
		return 1
	}
	return uint32(min(d/time.Second, 1<<32-1))
}

// String formats the mapping for logs, with " peers {...}" when it is
// filtered.
func (m Mapping) String() string {
	s := fmt.Sprintf("%s -> %s (client %s, %s)", m.Key, m.Internal, m.Client, m.Origin.Kind)
	if !m.Peers.Empty() {
		s += " peers " + m.Peers.String()
	}
	return s
}

// Request is what a responder asks of a Mapper.
type Request struct {
	// Client is the source address of the packet or connection. Only a
	// policy-allowed PCP THIRD_PARTY request may name another host, and it
	// does so through Internal, never through Client.
	Client netip.Addr
	Proto  Protocol
	// Internal is where the traffic goes. In secure mode its address must
	// equal Client.
	Internal netip.AddrPort
	// Suggest is the external address and port asked for; port 0 means any.
	// The address is a hint and may be the zero Addr.
	Suggest netip.AddrPort
	// Exact makes the suggested port a requirement: Map fails with
	// ErrConflict or ErrNotAuthorized instead of choosing another port
	// (UPnP AddPortMapping, PCP PREFER_FAILURE).
	Exact bool
	// Remote restricts the mapping to one remote host (UPnP NewRemoteHost);
	// the zero Addr means any.
	Remote netip.Addr
	// Lifetime is the lease asked for, already clamped to the protocol's
	// bounds by the responder. 0 asks for a permanent lease; policy caps
	// it. Responders turn a protocol "lifetime 0 = delete" into Unmap.
	Lifetime time.Duration
	Origin   Origin
	// Peers sets which remote hosts may reach the mapping (PCP FILTER,
	// RFC 6887 §13.3). It has three states:
	//   - nil: keep the filters of the mapping this request renews or
	//     replaces (a renewal without FILTER); a new mapping has none;
	//   - non-nil with AddPeers false: the filters become exactly Peers,
	//     and an empty set removes them (FILTER with prefix length 0);
	//   - non-nil with AddPeers true: Peers are added to the filters of the
	//     mapping this request renews or replaces (FILTER adds to the
	//     existing filters).
	// Map fails with ErrTooManyPeers when the result exceeds MaxPeers.
	Peers    *Peers
	AddPeers bool
}

// Filter selects mappings in List. Zero fields match everything.
type Filter struct {
	Proto  Protocol
	Client netip.Addr
	Kind   Kind
	// Ports bounds the external port; the zero PortRange means any port.
	Ports PortRange
}

// Match reports whether m passes the filter.
func (f Filter) Match(m Mapping) bool {
	if f.Proto != 0 && m.Proto != f.Proto {
		return false
	}
	if f.Client.IsValid() && m.Client != f.Client {
		return false
	}
	if f.Kind != KindNone && m.Origin.Kind != f.Kind {
		return false
	}
	if f.Ports != (PortRange{}) && !f.Ports.Contains(m.External.Port()) {
		return false
	}
	return true
}
