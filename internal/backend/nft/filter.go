package nft

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/berthd/berth/internal/mapping"
)

// Remote-peer filters (mapping.Mapping.Peers, PCP FILTER). A mapping open
// to any remote host that has filters puts its key (external address,
// protocol, external port) in the set filtered, and one element per
// filter in the interval set allowed: key . peer prefix . peer port range
// (0-65535 for a filter without a port). The chain prefilter, a filter
// chain before DNAT, lets a packet to a filtered key through only if
// allowed admits its source:
//
//	set filtered {
//		type ipv4_addr . inet_proto . inet_service
//	}
//	set allowed {
//		type ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service
//		flags interval
//	}
//	chain prefilter {
//		type filter hook prerouting priority dstnat - 10; policy accept;
//		ip saddr . ip daddr . meta l4proto . th dport @remote_mappings accept
//		ip daddr . meta l4proto . th dport . ip saddr . th sport @allowed accept
//		ip daddr . meta l4proto . th dport @filtered drop
//	}
//
// The first rule keeps a mapping restricted to one remote host
// (mapping.Key.Remote) reachable when it shares its port with a filtered
// mapping: the restricted one wins, as in prerouting.
const (
	setFiltered    = "filtered"
	setAllowed     = "allowed"
	chainPrefilter = "prefilter"
)

// Element layouts: filtered key daddr(4) . proto(1+3) . dport(2+2), 12
// bytes; allowed key (and key end) that . saddr(4) . sport(2+2), 20 bytes.
const allowedKeyLen = 20

// newFilterSets returns the filtered and allowed sets of n's table.
func newFilterSets(n *Nft) (filtered, allowed *nftables.Set) {
	filtered = &nftables.Set{
		Table:         n.table,
		Name:          setFiltered,
		Concatenation: true,
		KeyType:       nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
	}
	allowed = &nftables.Set{
		Table:         n.table,
		Name:          setAllowed,
		Concatenation: true,
		Interval:      true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService,
			nftables.TypeIPAddr, nftables.TypeInetService),
	}
	return filtered, allowed
}

// prefilterPriority is dstnat - 10: the filter decides before DNAT.
var prefilterPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 10)

// queueFilter queues the filter sets and the prefilter chain.
func (n *Nft) queueFilter() error {
	cc := n.conn
	if err := cc.AddSet(n.filtered, nil); err != nil {
		return err
	}
	if err := cc.AddSet(n.allowed, nil); err != nil {
		return err
	}
	accept := nftables.ChainPolicyAccept
	c := cc.AddChain(&nftables.Chain{
		Name:     chainPrefilter,
		Table:    n.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: prefilterPriority,
		Policy:   &accept,
	})
	daddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
	// ip saddr . ip daddr . meta l4proto . th dport @remote_mappings accept
	cc.AddRule(&nftables.Rule{Table: n.table, Chain: c, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 10},
		&expr.Payload{DestRegister: 11, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: n.remote.Name},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	// ip daddr . meta l4proto . th dport . ip saddr . th sport @allowed accept
	cc.AddRule(&nftables.Rule{Table: n.table, Chain: c, Exprs: []expr.Any{
		daddr,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Payload{DestRegister: 11, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: 12, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: n.allowed.Name},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	// ip daddr . meta l4proto . th dport @filtered drop
	cc.AddRule(&nftables.Rule{Table: n.table, Chain: c, Exprs: []expr.Any{
		daddr,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: n.filtered.Name},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return nil
}

// filterKey is the filtered element of m's external key.
func filterKey(m mapping.Mapping) []byte {
	ext := m.External.Addr().As4()
	key := make([]byte, 0, keyLen)
	key = append(key, ext[:]...)
	key = append(key, byte(m.Proto), 0, 0, 0)
	key = binary.BigEndian.AppendUint16(key, m.External.Port())
	return append(key, 0, 0)
}

// filterElems returns m's elements of filtered and allowed: none when m
// has no filters. m must have passed validate.
func filterElems(m mapping.Mapping) (filtered []nftables.SetElement, allowed []nftables.SetElement) {
	if m.Peers.Empty() {
		return nil, nil
	}
	k := filterKey(m)
	for _, r := range peerRanges(m.Peers.All()) {
		start := append(slices.Clone(k), 0, 0, 0, 0, 0, 0, 0, 0)
		end := append(slices.Clone(k), 0, 0, 0, 0, 0, 0, 0, 0)
		lo, hi := r.prefix.Addr().As4(), lastAddr(r.prefix).As4()
		copy(start[keyLen:], lo[:])
		copy(end[keyLen:], hi[:])
		binary.BigEndian.PutUint16(start[keyLen+4:], r.portLo)
		binary.BigEndian.PutUint16(end[keyLen+4:], r.portHi)
		allowed = append(allowed, nftables.SetElement{Key: start, KeyEnd: end})
	}
	return []nftables.SetElement{{Key: k}}, allowed
}

// peerRange is one element of allowed: a prefix and a port range.
type peerRange struct {
	prefix         netip.Prefix
	portLo, portHi uint16
}

// peerRanges turns IPv4 filters into pairwise non-overlapping ranges, as
// the kernel's interval set needs (it refuses an element whose ends fall
// in another): a filter covered by another is dropped, and a filter with
// a port loses the prefixes of the port-less filters inside its own.
func peerRanges(all []mapping.Peer) []peerRange {
	// A filter of another family (or invalid) admits no IPv4 host.
	var ps []mapping.Peer
	for _, p := range all {
		if p.Prefix.IsValid() && p.Prefix.Addr().Is4() {
			ps = append(ps, p)
		}
	}
	covers := func(a, b mapping.Peer) bool {
		return a.Prefix.Bits() <= b.Prefix.Bits() && a.Prefix.Contains(b.Prefix.Addr()) &&
			(a.Port == 0 || a.Port == b.Port)
	}
	var keep []mapping.Peer
	for i, p := range ps {
		covered := false
		for j, q := range ps {
			if i != j && covers(q, p) && (!covers(p, q) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			keep = append(keep, p)
		}
	}
	var out []peerRange
	for _, p := range keep {
		if p.Port == 0 {
			out = append(out, peerRange{prefix: p.Prefix, portLo: 0, portHi: 65535})
			continue
		}
		parts := []netip.Prefix{p.Prefix}
		for _, q := range keep {
			if q.Port == 0 && q.Prefix.Bits() > p.Prefix.Bits() && p.Prefix.Contains(q.Prefix.Addr()) {
				parts = subtract(parts, q.Prefix)
			}
		}
		for _, pp := range parts {
			out = append(out, peerRange{prefix: pp, portLo: p.Port, portHi: p.Port})
		}
	}
	return out
}

// subtract returns the prefixes of ps without the addresses of q.
func subtract(ps []netip.Prefix, q netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		switch {
		case !p.Overlaps(q):
			out = append(out, p)
		case q.Bits() <= p.Bits():
			// q covers p: nothing left.
		default:
			// Split p in halves until q is one of them.
			for p.Bits() < q.Bits() {
				lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
				hi := netip.PrefixFrom(lastAddr(lo).Next(), p.Bits()+1)
				if lo.Contains(q.Addr()) {
					out = append(out, hi)
					p = lo
				} else {
					out = append(out, lo)
					p = hi
				}
			}
		}
	}
	return out
}

// lastAddr is the last address of the IPv4 prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | uint32(uint64(1)<<(32-p.Bits())-1)
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, v)))
}

// appendFilterOps appends the operations on filtered and allowed that add
// (or delete) m's filters.
func (n *Nft) appendFilterOps(ops []elemOp, del bool, m mapping.Mapping) []elemOp {
	f, a := filterElems(m)
	for _, e := range f {
		ops = append(ops, elemOp{del: del, set: n.filtered, elem: e})
	}
	for _, e := range a {
		ops = append(ops, elemOp{del: del, set: n.allowed, elem: e})
	}
	return ops
}

// elemID identifies an element of filtered or allowed by its key and key
// end.
func elemID(e nftables.SetElement) string {
	return hex.EncodeToString(e.Key) + "-" + hex.EncodeToString(e.KeyEnd)
}

// filterSyncOps returns the operations that make filtered and allowed hold
// exactly the filters of want, against what the kernel holds (nothing
// when empty is true: the table is being recreated), deletes first.
func (n *Nft) filterSyncOps(want map[key]inst, empty bool) ([]elemOp, error) {
	type elem struct {
		set *nftables.Set
		e   nftables.SetElement
	}
	wanted := make(map[string]elem)
	for k, v := range want {
		if v.peers.Empty() {
			continue // no filter elements
		}
		f, a := filterElems(v.mapping(k))
		for _, e := range f {
			wanted[setFiltered+elemID(e)] = elem{n.filtered, e}
		}
		for _, e := range a {
			wanted[setAllowed+elemID(e)] = elem{n.allowed, e}
		}
	}
	have := make(map[string]elem)
	if !empty {
		for _, s := range []*nftables.Set{n.filtered, n.allowed} {
			es, err := n.conn.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("read set %s: %w", s.Name, err)
			}
			for _, e := range es {
				if s == n.allowed && len(e.KeyEnd) == 0 {
					e.KeyEnd = e.Key
				}
				have[s.Name+elemID(e)] = elem{s, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd}}
			}
		}
	}
	var dels, adds []elemOp
	for id, h := range have {
		if _, ok := wanted[id]; !ok {
			dels = append(dels, elemOp{del: true, set: h.set, elem: h.e})
		}
	}
	for id, w := range wanted {
		if _, ok := have[id]; !ok {
			adds = append(adds, elemOp{set: w.set, elem: w.e})
		}
	}
	return append(dels, adds...), nil
}
