package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"

	"github.com/berthd/berth/internal/mapping"
)

// Element layouts. Concatenated fields are padded to 4-byte registers:
//
//	mappings key:        daddr(4) . proto(1+3) . dport(2+2)             12 bytes
//	remote_mappings key: saddr(4) . daddr(4) . proto(1+3) . dport(2+2)  16 bytes
//	value:               addr(4) . port(2+2)                             8 bytes
const (
	keyLen       = 12
	remoteKeyLen = 16
	valLen       = 8
)

// normalKey is k as the kernel stores it: IPv4 addresses unmapped, no zone.
func normalKey(k mapping.Key) mapping.Key {
	k.External = netip.AddrPortFrom(k.External.Addr().Unmap().WithZone(""), k.External.Port())
	if k.Remote.IsValid() {
		k.Remote = k.Remote.Unmap().WithZone("")
	}
	return k
}

// validate checks what the kernel maps need of a mapping to add and
// returns it with its Key normalised (normalKey) and Internal unmapped.
func validate(m mapping.Mapping) (mapping.Mapping, error) {
	m.Key = normalKey(m.Key)
	m.Internal = netip.AddrPortFrom(m.Internal.Addr().Unmap().WithZone(""), m.Internal.Port())
	var why string
	err := mapping.ErrInvalid
	ext, in := m.External.Addr(), m.Internal.Addr()
	switch {
	case !m.Proto.Valid():
		why, err = "protocol not mapped", mapping.ErrUnsupported
	case !ext.IsValid() || ext.IsUnspecified():
		why = "no external address"
	case !ext.Is4():
		why, err = "IPv6 external address", mapping.ErrUnsupported
	case m.External.Port() == 0:
		why = "external port 0"
	case !in.IsValid() || in.IsUnspecified() || m.Internal.Port() == 0:
		why = "bad internal address " + m.Internal.String()
	case !in.Is4():
		why, err = "IPv6 internal address", mapping.ErrUnsupported
	case m.Remote.IsValid() && !m.Remote.Is4():
		why, err = "IPv6 remote host", mapping.ErrUnsupported
	case m.Remote.IsValid() && !m.Peers.Empty():
		// The filters are keyed by the external key alone; refuse
		// rather than install the mapping unfiltered.
		why, err = "remote-peer filters on a mapping restricted to one remote host", mapping.ErrUnsupported
	default:
		return m, nil
	}
	return m, fmt.Errorf("add %s: %s: %w", m.Key, why, err)
}

// element returns the map a mapping goes to and its element. m must have
// passed validate.
func (n *Nft) element(m mapping.Mapping) (*nftables.Set, nftables.SetElement) {
	// One allocation for both: the value, then room for the key.
	buf := make([]byte, valLen, valLen+remoteKeyLen)
	val := buf[:valLen:valLen]
	a := m.Internal.Addr().As4()
	copy(val, a[:])
	binary.BigEndian.PutUint16(val[4:], m.Internal.Port())

	ext := m.External.Addr().As4()
	key := buf[valLen:valLen]
	set := n.dnat
	if m.Remote.IsValid() {
		set = n.remote
		r := m.Remote.As4()
		key = append(key, r[:]...)
	}
	key = append(key, ext[:]...)
	key = append(key, byte(m.Proto), 0, 0, 0)
	key = binary.BigEndian.AppendUint16(key, m.External.Port())
	key = append(key, 0, 0)
	return set, nftables.SetElement{Key: key, Val: val}
}

// decode is the inverse of element: the mapping's Key and Internal from a
// kernel element of mappings (remote false) or remote_mappings.
func decode(remote bool, e nftables.SetElement) (mapping.Mapping, error) {
	var m mapping.Mapping
	key := e.Key
	want := keyLen
	if remote {
		want = remoteKeyLen
	}
	if len(key) != want || len(e.Val) != valLen {
		return m, fmt.Errorf("element with key %x value %x: bad length", e.Key, e.Val)
	}
	if remote {
		m.Remote = netip.AddrFrom4([4]byte(key[:4]))
		key = key[4:]
	}
	m.Proto = mapping.Protocol(key[4])
	m.External = netip.AddrPortFrom(netip.AddrFrom4([4]byte(key[:4])), binary.BigEndian.Uint16(key[8:]))
	m.Internal = netip.AddrPortFrom(netip.AddrFrom4([4]byte(e.Val[:4])), binary.BigEndian.Uint16(e.Val[4:]))
	return m, nil
}

// The backend's own state holds one entry per installed mapping, so it is
// kept in compact forms: every address in berth's maps is IPv4 (validate),
// and netip's forms carry 16-byte addresses and a zone pointer. A
// mapping.Key is 64 bytes, a key 12; a netip.AddrPort 32, an addr4 6.

// addr4 is an IPv4 address and port.
type addr4 struct {
	ip   [4]byte
	port uint16
}

// addr4Of returns ap as an addr4; ok is false when ap is not IPv4.
func addr4Of(ap netip.AddrPort) (a addr4, ok bool) {
	if !ap.Addr().Is4() {
		return a, false
	}
	return addr4{ap.Addr().As4(), ap.Port()}, true
}

// mustAddr4 is addr4Of for an address validate has checked.
func mustAddr4(ap netip.AddrPort) addr4 {
	a, ok := addr4Of(ap)
	if !ok {
		panic(fmt.Sprintf("nft: %v is not IPv4", ap))
	}
	return a
}

func (a addr4) addrPort() netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4(a.ip), a.port) }

// key is a normalised (normalKey) IPv4 mapping.Key.
type key struct {
	ext       addr4
	proto     mapping.Protocol
	hasRemote bool
	remote    [4]byte
}

// keyOf returns k as a key; ok is false when k has an address that is not
// IPv4, which no installed mapping has.
func keyOf(k mapping.Key) (c key, ok bool) {
	k = normalKey(k)
	if c.ext, ok = addr4Of(k.External); !ok {
		return c, false
	}
	c.proto = k.Proto
	if k.Remote.IsValid() {
		if !k.Remote.Is4() {
			return c, false
		}
		c.hasRemote, c.remote = true, k.Remote.As4()
	}
	return c, true
}

// mustKey is keyOf for a key validate has checked.
func mustKey(k mapping.Key) key {
	c, ok := keyOf(k)
	if !ok {
		panic(fmt.Sprintf("nft: %v is not IPv4", k))
	}
	return c
}

func (c key) key() mapping.Key {
	k := mapping.Key{Proto: c.proto, External: c.ext.addrPort()}
	if c.hasRemote {
		k.Remote = netip.AddrFrom4(c.remote)
	}
	return k
}

// inst is what the backend keeps of an installed mapping besides its key:
// what its elements are made of. A whole mapping.Mapping (192 bytes, the
// lease, the client, the description) would multiply the backend's memory
// for nothing it uses.
type inst struct {
	internal addr4
	peers    *mapping.Peers
}

// instOf returns what the backend keeps of m, which validate has checked.
func instOf(m mapping.Mapping) inst { return inst{internal: mustAddr4(m.Internal), peers: m.Peers} }

// mapping returns the installed mapping of key k: Key, Proto, Internal and
// Peers.
func (v inst) mapping(k key) mapping.Mapping {
	return mapping.Mapping{Key: k.key(), Internal: v.internal.addrPort(), Peers: v.peers}
}

// sameElem reports whether a and b are the same kernel element: same Key
// and same Internal. Other fields live only in berth.
func sameElem(a, b mapping.Mapping) bool {
	return a.Key == b.Key && a.Internal == b.Internal
}

// samePeers reports whether a and b have the same kernel filter elements:
// same Key and same filters.
func samePeers(a, b mapping.Mapping) bool {
	return a.Key == b.Key && a.Peers.Equal(b.Peers)
}
