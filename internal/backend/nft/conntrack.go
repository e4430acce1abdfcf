package nft

import (
	"errors"
	"sync"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/mapping"
)

// flusher deletes the flows of removed mappings in the background: the
// kernel offers no filter that selects them, so each flush dumps the
// whole conntrack table, which costs milliseconds per thousand tracked
// flows (115 ms with 20,000). Apply and Sync, run under the Service's
// lock, only queue the mappings; bursts of deletes share one dump.
type flusher struct {
	mu      sync.Mutex
	queue   []mapping.Mapping
	kick    chan struct{} // buffered 1: a flush is due
	stopped chan struct{} // closed to stop the goroutine
	done    chan struct{} // closed when it has returned
	busy    bool          // a flush is running
}

// startFlusher starts n's flusher; n.ct must be set.
func (n *Nft) startFlusher() {
	f := &flusher{kick: make(chan struct{}, 1), stopped: make(chan struct{}), done: make(chan struct{})}
	n.fl = f
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.kick:
				n.flushQueued()
			case <-f.stopped:
				n.flushQueued() // what was deleted before the stop
				return
			}
		}
	}()
}

// queueFlush hands removed mappings to the flusher; without conntrack it
// does nothing.
func (n *Nft) queueFlush(removed []mapping.Mapping) {
	f := n.fl
	if len(removed) == 0 || f == nil {
		return
	}
	f.mu.Lock()
	f.queue = append(f.queue, removed...)
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default: // a flush is due already and will take these too
	}
}

// flushQueued flushes everything queued so far, in one dump.
func (n *Nft) flushQueued() {
	f := n.fl
	f.mu.Lock()
	batch := f.queue
	f.queue, f.busy = nil, true
	f.mu.Unlock()
	n.flushFlows(batch)
	f.mu.Lock()
	f.busy = false
	f.mu.Unlock()
}

// flushIdle reports whether nothing is queued or being flushed.
func (n *Nft) flushIdle() bool {
	f := n.fl
	if f == nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue) == 0 && !f.busy
}

// stopFlusher flushes what is queued and stops the flusher; it is
// idempotent.
func (n *Nft) stopFlusher() {
	f := n.fl
	if f == nil {
		return
	}
	select {
	case <-f.stopped:
	default:
		close(f.stopped)
	}
	<-f.done
}

// flushFlows deletes the conntrack entries of the removed mappings, so
// that a flow does not outlive its mapping (established flows follow
// conntrack, not the maps):
//
//   - inbound flows, whose original tuple is addressed to the mapping's
//     external address:port (from its remote host when it has one) and
//     whose reply comes from its internal address:port: the flows its
//     DNAT made;
//   - with PreserveSourcePort, outbound UDP flows from its internal
//     address:port translated to its external address:port.
//
// The kernel lets no filter select those, so it dumps the table once per
// call; the flusher calls it, in the background, possibly after the same
// external port was mapped again. Matching the internal end too leaves the
// flows of a new mapping to another internal address:port alone, while
// those of the removed one go. A new mapping to the same internal
// address:port cannot be told from the removed one: its flows are deleted
// too, and the next packet of each makes a new conntrack entry that the
// maps translate as before. A failure is logged, not returned: the mapping
// is already gone.
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
			(!m.Remote.IsValid() || o.IP.SourceAddress.Unmap() == m.Remote) &&
			r.IP.SourceAddress.Unmap() == m.Internal.Addr() && r.Proto.SourcePort == m.Internal.Port() {
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
