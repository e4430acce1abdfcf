package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
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
	n.users = make(map[addr4][]key)
	n.snatKernel = make(map[addr4]addr4)
}

// snatWinner reports whether mapping key a is preferred over b as the
// source of an internal address:port's outbound translation, when several
// UDP mappings share one Internal: a mapping open to any remote host
// first, then the lowest external address:port, then the lowest remote.
func snatWinner(a, b key) bool {
	if a.hasRemote != b.hasRemote {
		return !a.hasRemote
	}
	if c := bytes.Compare(a.ext.ip[:], b.ext.ip[:]); c != 0 {
		return c < 0
	}
	if a.ext.port != b.ext.port {
		return a.ext.port < b.ext.port
	}
	return bytes.Compare(a.remote[:], b.remote[:]) < 0
}

// snatElem is the snat_udp element in → ext.
func snatElem(in, ext addr4) nftables.SetElement {
	enc := func(a addr4) []byte {
		b := make([]byte, snatLen)
		copy(b, a.ip[:])
		binary.BigEndian.PutUint16(b[4:], a.port)
		return b
	}
	return nftables.SetElement{Key: enc(in), Val: enc(ext)}
}

// decodeSNAT is the inverse of snatElem.
func decodeSNAT(e nftables.SetElement) (in, ext addr4, err error) {
	if len(e.Key) != snatLen || len(e.Val) != snatLen {
		return in, ext, fmt.Errorf("element with key %x value %x: bad length", e.Key, e.Val)
	}
	dec := func(b []byte) addr4 { return addr4{[4]byte(b[:4]), binary.BigEndian.Uint16(b[4:])} }
	return dec(e.Key), dec(e.Val), nil
}

// snatOps returns the snat_udp operations that turn have into want,
// deletes first.
func (n *Nft) snatOps(have, want map[addr4]addr4) []elemOp {
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
func snatWant(ins map[addr4]struct{}, users, extra map[addr4][]key,
	lookup func(key) (mapping.Mapping, bool)) map[addr4]addr4 {
	want := make(map[addr4]addr4, len(ins))
	for in := range ins {
		var best key
		found := false
		consider := func(k key) {
			m, ok := lookup(k)
			if !ok || m.Proto != mapping.UDP {
				return
			}
			if a, ok := addr4Of(m.Internal); !ok || a != in {
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
			want[in] = best.ext
		}
	}
	return want
}

// snatOfUsers is snatWant for every Internal of users when users indexes
// exactly the mappings wanted (Sync): each key in it is a UDP mapping of
// that Internal, so no lookup is needed.
func snatOfUsers(users map[addr4][]key) map[addr4]addr4 {
	want := make(map[addr4]addr4, len(users))
	for in, ks := range users {
		best := ks[0]
		for _, k := range ks[1:] {
			if snatWinner(k, best) {
				best = k
			}
		}
		want[in] = best.ext
	}
	return want
}

// indexSNAT records that the mapping k, v is installed (add) or not, if
// it is UDP. Nearly every Internal has one user, so the users are a short
// slice, not a set of their own.
func (n *Nft) indexSNAT(k key, v inst, add bool) {
	if k.proto != mapping.UDP {
		return
	}
	ks := n.users[v.internal]
	i := slices.Index(ks, k)
	switch {
	case add && i < 0:
		n.users[v.internal] = append(ks, k)
	case !add && i >= 0:
		if len(ks) == 1 {
			delete(n.users, v.internal)
			return
		}
		n.users[v.internal] = append(ks[:i:i], ks[i+1:]...) // a new array: Sync may restore the old index
	}
}
