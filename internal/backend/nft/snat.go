package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"

	"github.com/berthd/berth/internal/mapping"
)

// snat_udp element layout: key saddr(4) . sport(2+2), value addr(4) .
// port(2+2).
const snatLen = 8

// newSNATSet returns the snat_udp map of n's table: (internal address,
// internal port) of a UDP mapping → (external address, external port).
func newSNATSet(n *Nft) *nftables.Set {
	t := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	return &nftables.Set{
		Table:         n.table,
		Name:          mapSNATUDP,
		IsMap:         true,
		Concatenation: true,
		KeyType:       t,
		DataType:      t,
	}
}

// resetSNAT empties the snat_udp bookkeeping.
func (n *Nft) resetSNAT() {
	n.users = make(map[netip.AddrPort][]mapping.Key)
	n.snatKernel = make(map[netip.AddrPort]netip.AddrPort)
}

// snatWinner reports whether mapping key a is preferred over b as the
// source of an internal address:port's outbound translation, when several
// UDP mappings share one Internal: a mapping open to any remote host
// first, then the lowest external address:port, then the lowest remote.
func snatWinner(a, b mapping.Key) bool {
	if a.Remote.IsValid() != b.Remote.IsValid() {
		return !a.Remote.IsValid()
	}
	if c := a.External.Compare(b.External); c != 0 {
		return c < 0
	}
	return a.Remote.Less(b.Remote)
}

// snatElem is the snat_udp element in → ext.
func snatElem(in, ext netip.AddrPort) nftables.SetElement {
	enc := func(ap netip.AddrPort) []byte {
		b := make([]byte, snatLen)
		a := ap.Addr().As4()
		copy(b, a[:])
		binary.BigEndian.PutUint16(b[4:], ap.Port())
		return b
	}
	return nftables.SetElement{Key: enc(in), Val: enc(ext)}
}

// decodeSNAT is the inverse of snatElem.
func decodeSNAT(e nftables.SetElement) (in, ext netip.AddrPort, err error) {
	if len(e.Key) != snatLen || len(e.Val) != snatLen {
		return in, ext, fmt.Errorf("element with key %x value %x: bad length", e.Key, e.Val)
	}
	dec := func(b []byte) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:]))
	}
	return dec(e.Key), dec(e.Val), nil
}

// snatOps returns the snat_udp operations that turn have into want,
// deletes first.
func (n *Nft) snatOps(have, want map[netip.AddrPort]netip.AddrPort) []elemOp {
	var dels []elemOp
	adds := make([]elemOp, 0, max(len(want)-len(have), 0))
	for in, ext := range have {
		if w, ok := want[in]; !ok || w != ext {
			dels = append(dels, elemOp{del: true, set: n.snat, elem: snatElem(in, ext)})
		}
	}
	for in, ext := range want {
		if h, ok := have[in]; !ok || h != ext {
			adds = append(adds, elemOp{set: n.snat, elem: snatElem(in, ext)})
		}
	}
	return append(dels, adds...)
}

// snatWant returns the translation of every Internal in ins: the
// External of the preferred UDP mapping using it, per users and the
// mappings in lookup (the state after a batch).
func snatWant(ins map[netip.AddrPort]struct{}, users map[netip.AddrPort][]mapping.Key,
	extra map[netip.AddrPort][]mapping.Key, lookup func(mapping.Key) (mapping.Mapping, bool)) map[netip.AddrPort]netip.AddrPort {
	want := make(map[netip.AddrPort]netip.AddrPort, len(ins))
	for in := range ins {
		var best mapping.Key
		found := false
		consider := func(k mapping.Key) {
			m, ok := lookup(k)
			if !ok || m.Proto != mapping.UDP || m.Internal != in {
				return
			}
			if !found || snatWinner(k, best) {
				best, found = k, true
			}
		}
		for _, k := range users[in] {
			consider(k)
		}
		for _, k := range extra[in] {
			consider(k)
		}
		if found {
			want[in] = best.External
		}
	}
	return want
}

// snatOfUsers is snatWant for every Internal of users when users indexes
// exactly the mappings wanted (Sync): each key in it is a UDP mapping of
// that Internal, so no lookup is needed.
func snatOfUsers(users map[netip.AddrPort][]mapping.Key) map[netip.AddrPort]netip.AddrPort {
	want := make(map[netip.AddrPort]netip.AddrPort, len(users))
	for in, ks := range users {
		best := ks[0]
		for _, k := range ks[1:] {
			if snatWinner(k, best) {
				best = k
			}
		}
		want[in] = best.External
	}
	return want
}

// indexSNAT records that the UDP mapping m is installed (add) or not.
// Nearly every Internal has one user, so the users are a short slice,
// not a set of their own.
func (n *Nft) indexSNAT(m mapping.Mapping, add bool) {
	if m.Proto != mapping.UDP {
		return
	}
	ks := n.users[m.Internal]
	i := slices.Index(ks, m.Key)
	switch {
	case add && i < 0:
		n.users[m.Internal] = append(ks, m.Key)
	case !add && i >= 0:
		if len(ks) == 1 {
			delete(n.users, m.Internal)
			return
		}
		n.users[m.Internal] = append(ks[:i:i], ks[i+1:]...) // a new array: Sync may restore the old index
	}
}
