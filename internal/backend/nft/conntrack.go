package nft

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
)

// flusher deletes the flows of removed mappings in the background: the
// kernel offers no filter that selects them, so each flush dumps the
// whole conntrack table, which walks every hash bucket even when the
// table is empty (9 ms with the 262,144 buckets of a 24 GB machine) and
// costs milliseconds more per thousand tracked flows (115 ms with
// 20,000). Apply and Sync, run under the Service's lock, only queue the
// mappings; deletions share one dump.
//
// A flush after an idle spell runs at once. While deletions keep coming
// (a client deleting its mappings one by one, a hostile one churning),
// the next flush waits flushPace times as long as the last one took, at
// least minFlushGap and at most maxFlushGap, so that dumps take at most
// a fifth of a core whatever the rate: before, a storm of deletions kept
// one core busy dumping, and a deleted mapping's flows now live on for
// at most the gap and one dump.
type flusher struct {
	mu      sync.Mutex
	queue   []mapping.Mapping
	kick    chan struct{} // buffered 1: a flush is due
	stopped chan struct{} // closed to stop the goroutine
	done    chan struct{} // closed when it has returned
	busy    bool          // a flush is running
	clk     clock.Clock
	next    time.Time // no flush starts before this
}

// Pacing of the flushes; see flusher.
const (
	flushPace   = 4
	minFlushGap = 20 * time.Millisecond
	maxFlushGap = 2 * time.Second
)

// startFlusher starts n's flusher; n.ct must be set.
func (n *Nft) startFlusher(clk clock.Clock) {
	f := &flusher{kick: make(chan struct{}, 1), stopped: make(chan struct{}), done: make(chan struct{}), clk: clk}
	n.fl = f
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.kick:
				if !f.pause() {
					n.flushQueued() // what was deleted before the stop
					return
				}
				start := clk.Now()
				n.flushQueued()
				end := clk.Now()
				f.next = end.Add(min(max(flushPace*end.Sub(start), minFlushGap), maxFlushGap))
			case <-f.stopped:
				n.flushQueued() // what was deleted before the stop
				return
			}
		}
	}()
}

// pause waits until the next flush may start; it reports false when the
// flusher was stopped meanwhile.
func (f *flusher) pause() bool {
	d := f.next.Sub(f.clk.Now())
	if d <= 0 {
		return true
	}
	due := make(chan struct{})
	cancel := f.clk.AfterFunc(d, func() { close(due) })
	defer cancel()
	select {
	case <-due:
		return true
	case <-f.stopped:
		return false
	}
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
	ix := indexFlows(removed)
	for _, f := range flows {
		if !ix.flowOf(f) {
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

// flowKey is what a removed mapping's flows are looked up by: its
// protocol and its external port (inbound flows) or internal address:port
// (outbound UDP flows).
type flowKey struct {
	proto uint8
	addr  netip.Addr // zero for the external port
	port  uint16
}

// flowIndex finds the removed mappings a flow may belong to without
// comparing it with every one of them: a flush after many deletions
// checks thousands of flows.
type flowIndex map[flowKey][]mapping.Mapping

func indexFlows(ms []mapping.Mapping) flowIndex {
	ix := make(flowIndex, len(ms))
	for _, m := range ms {
		k := flowKey{proto: uint8(m.Proto), port: m.External.Port()}
		ix[k] = append(ix[k], m)
		if m.Proto == mapping.UDP {
			k = flowKey{proto: uint8(m.Proto), addr: m.Internal.Addr(), port: m.Internal.Port()}
			ix[k] = append(ix[k], m)
		}
	}
	return ix
}

// flowOf reports whether f belongs to one of the indexed mappings (see
// flushFlows).
func (ix flowIndex) flowOf(f conntrack.Flow) bool {
	o, r := f.TupleOrig, f.TupleReply
	for _, m := range ix[flowKey{proto: o.Proto.Protocol, port: o.Proto.DestinationPort}] {
		if o.IP.DestinationAddress.Unmap() == m.External.Addr() &&
			(!m.Remote.IsValid() || o.IP.SourceAddress.Unmap() == m.Remote) &&
			r.IP.SourceAddress.Unmap() == m.Internal.Addr() && r.Proto.SourcePort == m.Internal.Port() {
			return true
		}
	}
	if o.Proto.Protocol != uint8(mapping.UDP) || !f.Status.SrcNAT() {
		return false
	}
	for _, m := range ix[flowKey{proto: o.Proto.Protocol, addr: o.IP.SourceAddress.Unmap(), port: o.Proto.SourcePort}] {
		if r.IP.DestinationAddress.Unmap() == m.External.Addr() && r.Proto.DestinationPort == m.External.Port() {
			return true
		}
	}
	return false
}
