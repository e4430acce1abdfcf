package nft

import (
	"errors"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/mapping"
)

// flushFlows deletes the conntrack entries of the removed mappings, so
// that a flow does not outlive its mapping (established flows follow
// conntrack, not the maps):
//
//   - inbound flows, whose original tuple is addressed to the mapping's
//     external address:port (from its remote host when it has one);
//   - with PreserveSourcePort, outbound UDP flows from its internal
//     address:port translated to its external address:port.
//
// The kernel lets no filter select those, so it dumps the table once per
// batch. A failure is logged, not returned: the mapping is already gone.
func (n *Nft) flushFlows(removed []mapping.Mapping) {
	if len(removed) == 0 || n.ct == nil {
		return
	}
	flows, err := n.ct.Dump(nil)
	if err != nil {
		n.log.Warn("conntrack dump failed, flows of deleted mappings not flushed", "mappings", len(removed), "err", err)
		return
	}
	deleted := 0
	for _, f := range flows {
		if !flowOf(f, removed) {
			continue
		}
		err := n.ct.Delete(conntrack.Flow{TupleOrig: f.TupleOrig, Zone: f.Zone})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			n.log.Warn("conntrack delete failed", "flow", f.TupleOrig.String(), "err", err)
			continue
		}
		deleted++
	}
	n.log.Debug("conntrack flushed", "mappings", len(removed), "flows", deleted)
}

// flowOf reports whether f belongs to one of ms (see flushFlows).
func flowOf(f conntrack.Flow, ms []mapping.Mapping) bool {
	o, r := f.TupleOrig, f.TupleReply
	for _, m := range ms {
		if o.Proto.Protocol != uint8(m.Proto) {
			continue
		}
		if o.IP.DestinationAddress.Unmap() == m.External.Addr() && o.Proto.DestinationPort == m.External.Port() &&
			(!m.Remote.IsValid() || o.IP.SourceAddress.Unmap() == m.Remote) {
			return true
		}
		if m.Proto == mapping.UDP && f.Status.SrcNAT() &&
			o.IP.SourceAddress.Unmap() == m.Internal.Addr() && o.Proto.SourcePort == m.Internal.Port() &&
			r.IP.DestinationAddress.Unmap() == m.External.Addr() && r.Proto.DestinationPort == m.External.Port() {
			return true
		}
	}
	return false
}
