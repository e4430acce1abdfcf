package mapping

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// MaxPeers is the most remote-peer filters one mapping holds. PCP FILTER
// options add up over renewals (RFC 6887 §13.3), so the bound is on the
// mapping, not on one request: Map fails with ErrTooManyPeers above it.
const MaxPeers = 32

// Peer admits the remote hosts in Prefix, from Port or, when Port is 0,
// from any port. It is one PCP FILTER option (RFC 6887 §13.3) in the
// shared vocabulary. A Peer whose Prefix is not valid admits nobody.
type Peer struct {
	Prefix netip.Prefix
	Port   uint16
}

// normal is p with its prefix masked, in the family of its address (an
// IPv4-mapped IPv6 prefix of at least 96 bits becomes the IPv4 prefix) and
// without a zone. An invalid prefix stays invalid.
func (p Peer) normal() Peer {
	if !p.Prefix.IsValid() {
		return Peer{Port: p.Port}
	}
	a, bits := p.Prefix.Addr().WithZone(""), p.Prefix.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return Peer{Prefix: netip.PrefixFrom(a, bits).Masked(), Port: p.Port}
}

// Admits reports whether a connection or datagram from src passes p. An
// IPv4-mapped source (from a dual-stack socket) is compared as IPv4, and
// IPv6 zones are ignored.
func (p Peer) Admits(src netip.AddrPort) bool {
	if p.Port != 0 && p.Port != src.Port() {
		return false
	}
	return p.Prefix.Contains(src.Addr().Unmap().WithZone(""))
}

// Compare orders peers by prefix address, then prefix length, then port.
func (p Peer) Compare(o Peer) int {
	if c := p.Prefix.Addr().Compare(o.Prefix.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(p.Prefix.Bits(), o.Prefix.Bits()); c != 0 {
		return c
	}
	return cmp.Compare(p.Port, o.Port)
}

// String formats the peer as "198.51.100.0/24" or, with a port,
// "198.51.100.7/32 port 3478".
func (p Peer) String() string {
	s := p.Prefix.String()
	if p.Port != 0 {
		s += " port " + strconv.Itoa(int(p.Port))
	}
	return s
}

// Peers is an immutable set of remote-peer filters: a mapping that has
// them may be reached only from a remote host one of them admits. The
// nil *Peers and an empty set restrict nothing. Peers are shared between
// copies of a Mapping and never changed; make a new set with NewPeers.
type Peers struct {
	list []Peer // normalised, sorted by Peer.Compare, without duplicates
}

// NewPeers returns the set of ps: every prefix masked, IPv4-mapped
// prefixes turned into IPv4 ones, sorted and without duplicates. ps is not
// retained.
func NewPeers(ps ...Peer) *Peers {
	list := make([]Peer, len(ps))
	for i, p := range ps {
		list[i] = p.normal()
	}
	slices.SortFunc(list, Peer.Compare)
	return &Peers{list: slices.Compact(list)}
}

// Len is the number of filters; 0 for nil.
func (s *Peers) Len() int {
	if s == nil {
		return 0
	}
	return len(s.list)
}

// Empty reports whether s restricts nothing (nil or no filter).
func (s *Peers) Empty() bool { return s.Len() == 0 }

// Allows reports whether a connection or datagram from src may reach a
// mapping filtered by s: s is empty or one of its filters admits src. It
// is safe for concurrent use and does not allocate.
func (s *Peers) Allows(src netip.AddrPort) bool {
	if s.Empty() {
		return true
	}
	for _, p := range s.list {
		if p.Admits(src) {
			return true
		}
	}
	return false
}

// Equal reports whether s and o hold the same filters; nil equals the
// empty set.
func (s *Peers) Equal(o *Peers) bool {
	if s.Len() != o.Len() {
		return false
	}
	return s.Len() == 0 || slices.Equal(s.list, o.list)
}

// All returns the filters in order. The slice is the caller's.
func (s *Peers) All() []Peer {
	if s == nil {
		return nil
	}
	return slices.Clone(s.list)
}

// Union returns the set of the filters of s and of o. Either may be nil.
func (s *Peers) Union(o *Peers) *Peers {
	list := make([]Peer, 0, s.Len()+o.Len())
	if s != nil {
		list = append(list, s.list...)
	}
	if o != nil {
		list = append(list, o.list...)
	}
	return NewPeers(list...)
}

// String formats the set as "{198.51.100.7/32, 203.0.113.0/24 port 443}";
// "any" when it restricts nothing.
func (s *Peers) String() string {
	if s.Empty() {
		return "any"
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range s.list {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	b.WriteByte('}')
	return b.String()
}
