package lease

import (
	"net/netip"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// entry is one mapping and its index links. Entries sharing an external
// (protocol, port) are chained through nextExt (keys that differ by remote
// host or external address); entries sharing (protocol, internal
// address:port) through nextInt; a client's entries form a doubly linked
// list.
//
// An entry holds its mapping in pieces rather than as a mapping.Mapping,
// which alone is 192 bytes: the external address is shared with its port
// bitmap, and the remote host and a client other than the internal host
// are boxed, because nearly every mapping has neither. An entry is 160
// bytes; mapping() puts the Mapping back together, field for field equal
// to the one Put stored.
type entry struct {
	ext      *usedPorts  // the external address and its ports
	remote   *netip.Addr // nil: any remote host
	client   *netip.Addr // nil: the internal host itself
	internal netip.Addr
	desc     string
	expires  time.Time
	peers    *mapping.Peers
	stored   int64 // StoredUntil in Unix nanoseconds; 0 unknown

	nextExt, nextInt *entry
	cprev, cnext     *entry

	heapIdx          int32
	extPort, intPort uint16
	proto            mapping.Protocol
	kind             mapping.Kind
	nonce            [12]byte
}

// newEntry returns the entry of m, whose external address has ports ext.
func newEntry(m mapping.Mapping, ext *usedPorts) *entry {
	e := &entry{
		ext:      ext,
		internal: m.Internal.Addr(),
		heapIdx:  -1,
		extPort:  m.External.Port(),
		intPort:  m.Internal.Port(),
		proto:    m.Proto,
	}
	if m.Remote.IsValid() {
		r := m.Remote
		e.remote = &r
	}
	if m.Client != e.internal {
		c := m.Client
		e.client = &c
	}
	e.setLease(m)
	return e
}

// setLease sets what a renewal in place may change: everything but the
// key, the internal address:port and the client.
func (e *entry) setLease(m mapping.Mapping) {
	e.desc, e.nonce, e.kind = m.Origin.Description, m.Origin.Nonce, m.Origin.Kind
	e.expires, e.peers = m.Expires, m.Peers
}

func (e *entry) mapping() mapping.Mapping {
	return mapping.Mapping{
		Key:      e.key(),
		Internal: e.internalAddrPort(),
		Client:   e.clientAddr(),
		Origin:   mapping.Origin{Kind: e.kind, Description: e.desc, Nonce: e.nonce},
		Expires:  e.expires,
		Peers:    e.peers,
	}
}

func (e *entry) key() mapping.Key {
	return mapping.Key{Proto: e.proto, External: netip.AddrPortFrom(e.ext.addr, e.extPort), Remote: e.remoteAddr()}
}

func (e *entry) remoteAddr() netip.Addr {
	if e.remote == nil {
		return netip.Addr{}
	}
	return *e.remote
}

func (e *entry) clientAddr() netip.Addr {
	if e.client == nil {
		return e.internal
	}
	return *e.client
}

func (e *entry) internalAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(e.internal, e.intPort)
}

func (e *entry) permanent() bool { return e.expires.IsZero() }

// is reports whether e's key is k.
func (e *entry) is(k mapping.Key) bool {
	return e.extPort == k.External.Port() && e.proto == k.Proto &&
		e.ext.addr == k.External.Addr() && e.remoteAddr() == k.Remote
}

// compare orders entries as mapping.Key.Compare orders their keys.
func (e *entry) compare(o *entry) int {
	if c := int(e.extPort) - int(o.extPort); c != 0 {
		return c
	}
	if c := int(e.proto) - int(o.proto); c != 0 {
		return c
	}
	if e.ext != o.ext {
		if c := e.ext.addr.Compare(o.ext.addr); c != 0 {
			return c
		}
	}
	return e.remoteAddr().Compare(o.remoteAddr())
}

// intKey indexes entries by protocol and internal address:port. It keeps
// the address's 16 bytes without its zone, so an IPv4 address and its
// IPv4-mapped IPv6 form, or two zones, share a chain: lookups compare the
// full address:port of each entry.
type intKey struct {
	proto mapping.Protocol
	port  uint16
	addr  [16]byte
}

func intKeyOf(p mapping.Protocol, internal netip.AddrPort) intKey {
	return intKey{p, internal.Port(), internal.Addr().As16()}
}
