package lease

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// Plan is what Allocate decided. Nothing changes until Commit, so the
// caller can apply the plan to the backend first and drop it on failure.
type Plan struct {
	// Mapping is the mapping as it will be after Commit.
	Mapping mapping.Mapping
	// Old is the client's mapping that Mapping renews or replaces; valid
	// when Replaces is true.
	Old      mapping.Mapping
	Replaces bool
}

// Renewal reports whether the plan only extends a lease: the key, the
// internal address:port and the remote-peer filters are unchanged, so the
// forwarding plane needs no change.
func (p Plan) Renewal() bool {
	return p.Replaces && p.Old.Key == p.Mapping.Key && p.Old.Internal == p.Mapping.Internal &&
		p.Old.Peers.Equal(p.Mapping.Peers)
}

// Existing returns the client's mapping that r would renew or replace:
// with r.Exact, the mapping with r's key when the client owns it;
// otherwise the client's mapping of the same protocol and internal
// address:port, preferring the one on the suggested port, else the lowest
// port.
func (t *Table) Existing(r mapping.Request, ext netip.Addr) (mapping.Mapping, bool) {
	if r.Exact {
		m, ok := t.Get(requestKey(r, ext))
		if ok && m.Client == r.Client {
			return m, true
		}
		return mapping.Mapping{}, false
	}
	var best *entry
	for e := t.byInt[intKeyOf(r.Proto, r.Internal)]; e != nil; e = e.nextInt {
		if e.clientAddr() != r.Client || e.remoteAddr() != r.Remote || e.internalAddrPort() != r.Internal {
			continue
		}
		if e.extPort == r.Suggest.Port() {
			return e.mapping(), true
		}
		if best == nil || e.compare(best) < 0 {
			best = e
		}
	}
	if best == nil {
		return mapping.Mapping{}, false
	}
	return best.mapping(), true
}

func requestKey(r mapping.Request, ext netip.Addr) mapping.Key {
	return mapping.Key{Proto: r.Proto, External: netip.AddrPortFrom(ext, r.Suggest.Port()), Remote: r.Remote}
}

// Allocate decides where r goes, on external address ext, within the
// allowed external ports (sorted, disjoint), with the lease ending at
// expires (zero = permanent). It does not change the table.
//
//   - A renewal of the client's existing mapping (see Existing) keeps its
//     external port while that port is still allowed.
//   - With r.Exact, the suggested port is required: ErrNotAuthorized if it
//     is not allowed, ErrConflict if another owner holds that port on ext
//     (for any remote host); the client's own mapping on that key is
//     replaced.
//   - Otherwise the suggested port (or, when 0, the internal port) is a
//     hint: the nearest free allowed port is taken, ErrNoResources if none.
//
// The plan's Peers follow Request.Peers: the renewed or replaced
// mapping's filters are kept (nil), replaced or added to (AddPeers);
// ErrTooManyPeers if more than MaxPeers result.
func (t *Table) Allocate(r mapping.Request, ext netip.Addr, allowed []mapping.PortRange, expires time.Time) (Plan, error) {
	if !r.Proto.Valid() {
		return Plan{}, fmt.Errorf("lease: protocol %v: %w", r.Proto, mapping.ErrUnsupported)
	}
	if !r.Internal.Addr().IsValid() || r.Internal.Port() == 0 {
		return Plan{}, fmt.Errorf("lease: internal %v: %w", r.Internal, mapping.ErrInvalid)
	}
	want := mapping.Mapping{
		Internal: r.Internal,
		Client:   r.Client,
		Origin:   r.Origin,
		Expires:  expires,
	}
	old, replaces := t.Existing(r, ext)
	peers, err := planPeers(r, old, replaces)
	if err != nil {
		return Plan{}, err
	}
	want.Peers = peers
	if r.Exact {
		k := requestKey(r, ext)
		if k.External.Port() == 0 {
			return Plan{}, fmt.Errorf("lease: exact request without a port: %w", mapping.ErrInvalid)
		}
		if !inRanges(k.External.Port(), allowed) {
			return Plan{}, fmt.Errorf("lease: port %d not allowed: %w", k.External.Port(), mapping.ErrNotAuthorized)
		}
		for e := t.byExt[portKey{k.Proto, k.External.Port()}]; e != nil; e = e.nextExt {
			if e.ext.addr != ext {
				continue // another WAN address: another identity
			}
			if e.clientAddr() != r.Client || e.kind == mapping.KindStatic {
				return Plan{}, fmt.Errorf("lease: %v held by %v: %w", k, e.clientAddr(), mapping.ErrConflict)
			}
		}
		want.Key = k
		return Plan{Mapping: want, Old: old, Replaces: replaces}, nil
	}
	if replaces && inRanges(old.External.Port(), allowed) {
		want.Key = old.Key
		return Plan{Mapping: want, Old: old, Replaces: true}, nil
	}
	hint := r.Suggest.Port()
	if hint == 0 {
		hint = r.Internal.Port()
	}
	set := t.ports(ext, r.Proto)
	if set == nil {
		set = new(portSet)
	}
	port, ok := set.nearest(hint, allowed)
	if !ok {
		return Plan{}, fmt.Errorf("lease: no free %v port: %w", r.Proto, mapping.ErrNoResources)
	}
	want.Key = mapping.Key{Proto: r.Proto, External: netip.AddrPortFrom(ext, port), Remote: r.Remote}
	return Plan{Mapping: want, Old: old, Replaces: replaces}, nil
}

// planPeers decides the filters of the mapping r makes out of old (valid
// when replaces): an empty set becomes nil, and a set equal to old's is
// old's own, so that an unchanged mapping compares equal with ==.
func planPeers(r mapping.Request, old mapping.Mapping, replaces bool) (*mapping.Peers, error) {
	var prev *mapping.Peers
	if replaces {
		prev = old.Peers
	}
	peers := r.Peers
	switch {
	case peers == nil:
		peers = prev
	case r.AddPeers:
		peers = prev.Union(peers)
	}
	if peers.Len() > mapping.MaxPeers {
		return nil, fmt.Errorf("lease: %d remote peer filters, at most %d: %w",
			peers.Len(), mapping.MaxPeers, mapping.ErrTooManyPeers)
	}
	switch {
	case peers.Empty():
		return nil, nil
	case peers.Equal(prev):
		return prev, nil
	}
	return peers, nil
}

// Commit carries out a plan made by Allocate on the unchanged table.
func (t *Table) Commit(p Plan) {
	if p.Replaces && p.Old.Key != p.Mapping.Key {
		t.Delete(p.Old.Key)
	}
	t.Put(p.Mapping)
}

func inRanges(p uint16, rs []mapping.PortRange) bool {
	for _, r := range rs {
		if r.Contains(p) {
			return true
		}
	}
	return false
}

func sortByKey(ms []mapping.Mapping) {
	slices.SortFunc(ms, func(a, b mapping.Mapping) int { return a.Key.Compare(b.Key) })
}
