package nft

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/google/nftables"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// elemOp is one element to add or delete, in batch order.
type elemOp struct {
	del  bool
	set  *nftables.Set
	elem nftables.SetElement
}

// overlayState is a Key's mapping after the batch Apply computes, or
// ok=false for deleted.
type overlayState struct {
	m  mapping.Mapping
	ok bool
}

// scratch holds the buffers Apply and commit build each batch in, kept
// from batch to batch (under Nft.mu) so that a burst of small batches
// does not allocate them anew each time. Buffers that a large batch (a
// restore, a Sync) grew beyond scratchKeep are not kept.
type scratch struct {
	keys  map[key]overlayState
	ops   []elemOp
	elems []nftables.SetElement
}

const scratchKeep = 256

// overlay returns an empty map for a batch of n changes.
func (s *scratch) overlay(n int) map[key]overlayState {
	if n > scratchKeep {
		return make(map[key]overlayState, n)
	}
	if s.keys == nil {
		s.keys = make(map[key]overlayState)
	}
	return s.keys
}

// done empties the buffers after a batch, so that what it built can be
// collected.
func (s *scratch) done() {
	clear(s.keys) // overlay hands out keys only for up to scratchKeep changes
	s.ops = keep(s.ops)
}

// keep clears b, every element a batch used, and returns it emptied, or
// nil when it is larger than scratchKeep.
func keep[T any](b []T) []T {
	if cap(b) > scratchKeep {
		return nil
	}
	clear(b)
	return b[:0]
}

// Apply applies a batch all-or-nothing (backend.Backend) as ONE netlink
// batch: the kernel commits every element change or none.
//
// The batch is computed against what the previous batches installed, so
// its cost grows with len(cs) only: a Delete of a Key that is not installed
// is ignored; an Add of an installed Key replaces it (delete and add of the
// element, or nothing when Internal is unchanged). If the kernel's table
// was changed behind berth's back (an element deleted by hand), the batch
// may fail; Sync reconciles.
//
// A mapping's remote-peer filters are changed in the same batch as its
// element (filter.go). A mapping the maps cannot hold (IPv6, a protocol
// other than TCP and UDP, filters on a mapping restricted to one remote
// host) fails the whole batch with a wrapped
// mapping.ErrUnsupported; a malformed one with mapping.ErrInvalid.
func (n *Nft) Apply(ctx context.Context, cs []backend.Change) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("nft: apply: %w", ErrClosed)
	}
	// overlay holds the Keys this batch touches: the mapping after the
	// batch, or ok=false for deleted.
	overlay := n.scratch.overlay(len(cs))
	defer n.scratch.done()
	lookup := func(k key) (mapping.Mapping, bool) {
		if s, ok := overlay[k]; ok {
			return s.m, s.ok
		}
		v, ok := n.installed[k]
		return v.mapping(k), ok
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	ops := n.scratch.ops[:0]
	// Before done (deferred above) clears it, also when the batch fails
	// half-built: keep clears what ops holds, not its whole capacity.
	defer func() { n.scratch.ops = ops }()
	var removed []mapping.Mapping // deleted or replaced, for queueFlush
	for _, c := range cs {
		switch c.Op {
		case backend.Add:
			m, err := validate(c.Mapping)
			if err != nil {
				return fmt.Errorf("nft: apply: %w", err)
			}
			k := mustKey(m.Key)
			cur, ok := lookup(k)
			if ok && !sameElem(cur, m) {
				ops = n.appendOp(ops, true, cur)
				removed = append(removed, cur)
			}
			if !ok || !sameElem(cur, m) {
				ops = n.appendOp(ops, false, m)
			}
			if ok && !samePeers(cur, m) {
				ops = n.appendFilterOps(ops, true, cur)
			}
			if !ok || !samePeers(cur, m) {
				ops = n.appendFilterOps(ops, false, m)
			}
			overlay[k] = overlayState{m: m, ok: true}
		case backend.Delete:
			k, ok := keyOf(c.Mapping.Key)
			if !ok {
				continue // not IPv4: never installed
			}
			if cur, ok := lookup(k); ok {
				ops = n.appendOp(ops, true, cur)
				ops = n.appendFilterOps(ops, true, cur)
				removed = append(removed, cur)
			}
			overlay[k] = overlayState{}
		default:
			return fmt.Errorf("nft: apply: %s of %s: unknown operation", c.Op, c.Mapping.Key)
		}
	}
	// snat_udp: recompute the translation of every Internal the batch
	// touches, against what the kernel holds.
	var snatWanted map[addr4]addr4
	var snatTouched map[addr4]struct{}
	if n.snat != nil {
		snatTouched = make(map[addr4]struct{})
		extra := make(map[addr4][]key)
		for k, s := range overlay {
			if old, ok := n.installed[k]; ok && k.proto == mapping.UDP {
				snatTouched[old.internal] = struct{}{}
			}
			if s.ok && s.m.Proto == mapping.UDP {
				in := mustAddr4(s.m.Internal)
				snatTouched[in] = struct{}{}
				extra[in] = append(extra[in], k)
			}
		}
		snatWanted = snatWant(snatTouched, n.users, extra, lookup)
		have := make(map[addr4]addr4, len(snatTouched))
		for in := range snatTouched {
			if ext, ok := n.snatKernel[in]; ok {
				have[in] = ext
			}
		}
		ops = append(ops, n.snatOps(have, snatWanted)...)
	}
	if err := n.commit(false, ops); err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	for k, s := range overlay {
		if old, ok := n.installed[k]; ok {
			n.indexSNAT(k, old, false)
		}
		if s.ok {
			v := instOf(s.m)
			n.installed[k] = v
			n.indexSNAT(k, v, true)
		} else {
			delete(n.installed, k)
		}
	}
	for in := range snatTouched {
		if ext, ok := snatWanted[in]; ok {
			n.snatKernel[in] = ext
		} else {
			delete(n.snatKernel, in)
		}
	}
	n.queueFlush(removed)
	return nil
}

// Sync makes the kernel's maps exactly want (backend.Backend), in one
// batch computed against the elements read back from the kernel: missing
// mappings are added, extra ones deleted, ones with another Internal
// replaced. If berth's table is damaged (see damaged: gone after `nft flush
// ruleset`, or its chains emptied by `nft flush table`), the same batch
// deletes what is left of it and recreates it whole (table, maps, sets,
// chains, rules) with the elements of want, so the kernel goes from the
// damaged table to the complete one in one transaction. Sync is the
// answer to a report on Lost. want must not hold two mappings with the
// same Key.
func (n *Nft) Sync(ctx context.Context, want []mapping.Mapping) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("nft: sync: %w", ErrClosed)
	}
	next := make(map[key]inst, len(want))
	for _, m := range want {
		m, err := validate(m)
		if err != nil {
			return fmt.Errorf("nft: sync: %w", err)
		}
		size := len(next)
		next[mustKey(m.Key)] = instOf(m) // one hash per mapping: a key seen before leaves the size
		if len(next) == size {
			return fmt.Errorf("nft: sync: %s listed twice: %w", m.Key, mapping.ErrInvalid)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: sync: %w", err)
	}
	var cur map[mapping.Key]mapping.Mapping
	var snatHave map[addr4]addr4
	why := n.damaged()
	if why != "" {
		// Recreate the table with its maps empty, in the same batch as
		// the elements (commit).
		n.log.Warn("table damaged, recreating it", "table", n.table.Name, "why", why)
		cur = map[mapping.Key]mapping.Mapping{}
		snatHave = map[addr4]addr4{}
	} else {
		var err error
		if cur, err = n.read(); err != nil {
			return fmt.Errorf("nft: sync: %w", err)
		}
		if snatHave, err = n.readSNAT(); err != nil {
			return fmt.Errorf("nft: sync: %w", err)
		}
	}
	// One element per mapping, and one more per UDP mapping for
	// source-port preservation: sized once, not grown by doubling.
	ops := make([]elemOp, 0, len(next)+len(next)/2+16)
	var removed []mapping.Mapping
	for k, c := range cur {
		if v, ok := lookupKey(next, k); !ok || c.Internal != v.internal.addrPort() {
			ops = n.appendOp(ops, true, c)
			removed = append(removed, c)
		}
	}
	for k, v := range next {
		if c, ok := cur[k.key()]; !ok || c.Internal != v.internal.addrPort() {
			ops = n.appendOp(ops, false, v.mapping(k))
		}
	}
	fops, err := n.filterSyncOps(next, why != "")
	if err != nil {
		return fmt.Errorf("nft: sync: %w", err)
	}
	ops = append(ops, fops...)
	prevUsers, prevKernel := n.users, n.snatKernel
	n.resetSNAT()
	for k, v := range next {
		n.indexSNAT(k, v, true)
	}
	var snatWanted map[addr4]addr4
	if n.snat != nil {
		snatWanted = snatOfUsers(n.users)
		ops = append(ops, n.snatOps(snatHave, snatWanted)...)
	}
	if err := n.commit(why != "", ops); err != nil {
		n.users, n.snatKernel = prevUsers, prevKernel
		return fmt.Errorf("nft: sync: %w", err)
	}
	n.installed = next
	if snatWanted != nil {
		n.snatKernel = snatWanted
	}
	n.queueFlush(removed)
	return nil
}

// readSNAT returns the elements of snat_udp (none without
// PreserveSourcePort).
func (n *Nft) readSNAT() (map[addr4]addr4, error) {
	out := make(map[addr4]addr4)
	if n.snat == nil {
		return out, nil
	}
	es, err := n.conn.GetSetElements(n.snat)
	if err != nil {
		return nil, fmt.Errorf("read map %s: %w", n.snat.Name, err)
	}
	for _, e := range es {
		in, ext, err := decodeSNAT(e)
		if err != nil {
			return nil, fmt.Errorf("read map %s: %w", n.snat.Name, err)
		}
		out[in] = ext
	}
	return out, nil
}

// appendOp appends the element operation for m.
func (n *Nft) appendOp(ops []elemOp, del bool, m mapping.Mapping) []elemOp {
	set, e := n.element(m)
	return append(ops, elemOp{del: del, set: set, elem: e})
}

// commit sends ops as one batch, after the messages that recreate the
// table (queueCreate) when create is set: runs of consecutive ops on the
// same map in the same direction share a message of at most maxElemsPerMsg
// elements, so the order of a delete and a re-add of one element is kept.
// Netlink calls cannot be cancelled, so Apply and Sync check their ctx
// before commit queues anything.
//
// commit is the only place that queues a batch's messages. When it fails,
// whether queuing or flushing, it renews the Conn, so nothing of the
// failed batch goes out with a later one (renew.go).
func (n *Nft) commit(create bool, ops []elemOp) error {
	if err := n.send(create, ops); err != nil {
		n.failed++
		n.renew(err)
		return err
	}
	return nil
}

// send queues and flushes the batch of commit.
func (n *Nft) send(create bool, ops []elemOp) error {
	if create {
		if err := n.queueCreate(); err != nil {
			return fmt.Errorf("recreate table: %w", err)
		}
	}
	ops = bySet(ops)
	msgs := uint64(0)
	for i := 0; i < len(ops); {
		j := i + 1
		for j < len(ops) && j-i < maxElemsPerMsg && ops[j].del == ops[i].del && ops[j].set == ops[i].set {
			j++
		}
		elems := n.scratch.elems[:0]
		for _, o := range ops[i:j] {
			elems = append(elems, o.elem)
		}
		var err error
		if ops[i].del {
			err = n.conn.SetDeleteElements(ops[i].set, elems)
		} else {
			err = n.conn.SetAddElements(ops[i].set, elems)
		}
		n.scratch.elems = keep(elems) // the message holds their encoding
		if err != nil {
			return fmt.Errorf("queue elements of %s: %w", ops[i].set.Name, err)
		}
		msgs++
		i = j
	}
	flush := n.flush
	if len(ops) >= quietOps {
		flush = func() error { return n.mon.quiet(n.flush) }
	}
	if err := flush(); err != nil {
		n.log.Debug("batch refused", "elements", len(ops), "err", err)
		return fmt.Errorf("batch of %d element changes: %w", len(ops), err)
	}
	n.batches++
	n.messages += msgs
	n.log.Debug("batch committed", "elements", len(ops), "messages", msgs)
	return nil
}

// bySet returns ops with each set's operations together, the sets in the
// order they first appear, each set's own operations in their order, so
// that they share messages: a mapping's remote-peer filters put its
// filtered and allowed elements between two mappings' elements, and a
// batch of filtered mappings took three messages each (a restore of
// 3,072 of them, 9,219 messages and 1.2 s). Only the order between sets
// changes, which the kernel's transaction does not see: it commits them
// all at once.
func bySet(ops []elemOp) []elemOp {
	var buf [8]*nftables.Set // a batch touches at most 5 sets
	sets := buf[:0]
	grouped := true
	for i, o := range ops {
		if i > 0 && o.set == ops[i-1].set {
			continue
		}
		if slices.Contains(sets, o.set) {
			grouped = false
			continue
		}
		sets = append(sets, o.set)
	}
	if grouped {
		return ops
	}
	out := make([]elemOp, 0, len(ops))
	for _, set := range sets {
		for _, o := range ops {
			if o.set == set {
				out = append(out, o)
			}
		}
	}
	return out
}

// damaged says what is wrong with berth's table in the kernel ("" when
// nothing is): missing (`nft flush ruleset`, `nft delete table`), with flags
// (dormant),
// a chain missing or not accepting by default, a map or set missing, or a
// chain without its rules (`nft flush table`, which also empties the maps).
// Sync recreates a damaged table whole.
func (n *Nft) damaged() string {
	tables, err := n.conn.ListTablesOfFamily(n.table.Family)
	if err != nil {
		return "cannot list tables: " + err.Error()
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == n.table.Name })
	if i < 0 {
		return "table missing"
	}
	// berth creates its table without flags: dormant (which detaches
	// every chain) or any other is another process's. google/nftables
	// decodes the flags in host byte order, so only zero is tested.
	if tables[i].Flags != 0 {
		return "table flags changed (dormant?)"
	}
	want := map[string]int{chainPrerouting: 2, chainForward: 1, chainPrefilter: 3}
	if n.cfg.Hairpin {
		want[chainPostrouting]++
	}
	if n.snat != nil {
		want[chainPostrouting]++
	}
	chains, err := n.conn.ListChainsOfTableFamily(n.table.Family)
	if err != nil {
		return "cannot list chains: " + err.Error()
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		i := slices.IndexFunc(chains, func(c *nftables.Chain) bool {
			return c.Table != nil && c.Table.Name == n.table.Name && c.Name == name
		})
		if i < 0 {
			return "chain " + name + " missing"
		}
		if c := chains[i]; c.Hooknum == nil || c.Policy == nil || *c.Policy != nftables.ChainPolicyAccept {
			return "chain " + name + " changed"
		}
		rules, err := n.conn.GetRules(n.table, &nftables.Chain{Name: name, Table: n.table})
		if err != nil {
			return "chain " + name + ": " + err.Error()
		}
		if len(rules) != want[name] {
			return fmt.Sprintf("chain %s has %d rules, want %d", name, len(rules), want[name])
		}
	}
	sets, err := n.conn.GetSets(n.table)
	if err != nil {
		return "cannot list sets: " + err.Error()
	}
	for _, s := range []*nftables.Set{n.dnat, n.remote, n.snat, n.filtered, n.allowed} {
		if s != nil && !slices.ContainsFunc(sets, func(k *nftables.Set) bool { return k.Name == s.Name }) {
			return "set " + s.Name + " missing"
		}
	}
	return ""
}

// read returns the mappings in the kernel's maps (Key and Internal only).
func (n *Nft) read() (map[mapping.Key]mapping.Mapping, error) {
	out := make(map[mapping.Key]mapping.Mapping)
	for _, s := range []*nftables.Set{n.dnat, n.remote} {
		es, err := n.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("read map %s: %w", s.Name, err)
		}
		for _, e := range es {
			m, err := decode(s == n.remote, e)
			if err != nil {
				return nil, fmt.Errorf("read map %s: %w", s.Name, err)
			}
			out[m.Key] = m
		}
	}
	return out, nil
}

// Counter is what the kernel counted on a mapping's map element. It is not
// the number of packets the mapping forwarded:
//
//   - A mapping open to any remote host (map mappings) counts the first
//     packet of each flow its DNAT translates, from the WAN and, with
//     Hairpin, from the LAN: later packets follow conntrack and never look
//     the map up. Packets is the number of flows, Bytes the size of their
//     first packets. A flow whose conntrack entry is gone (timed out, or
//     flushed when a mapping was deleted) counts again at its next packet.
//   - A mapping restricted to one remote host (map remote_mappings) counts
//     every packet from that host to the external address:port, which the
//     chain prefilter looks up in the map, and the first packet of each
//     flow once more, in the DNAT lookup: Packets is packets plus flows.
//
// Packets dropped by remote-peer filters are not counted. A counter starts
// at zero whenever its element is added: by the first Add of the Key, by an
// Add that changes its Internal, and by a Sync that adds it or recreates
// the table.
type Counter struct {
	Packets, Bytes uint64
}

// Counters returns the kernel's counter of every mapping in the maps, by
// normalised Key (IPv4 addresses unmapped): flows, not packets, for most
// mappings (see Counter). The map is the caller's.
func (n *Nft) Counters(ctx context.Context) (map[mapping.Key]Counter, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("nft: counters: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nft: counters: %w", err)
	}
	out := make(map[mapping.Key]Counter, len(n.installed))
	for _, s := range []*nftables.Set{n.dnat, n.remote} {
		es, err := n.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nft: counters: map %s: %w", s.Name, err)
		}
		for _, e := range es {
			m, err := decode(s == n.remote, e)
			if err != nil {
				return nil, fmt.Errorf("nft: counters: map %s: %w", s.Name, err)
			}
			var c Counter
			if e.Counter != nil {
				c = Counter{Packets: e.Counter.Packets, Bytes: e.Counter.Bytes}
			}
			out[m.Key] = c
		}
	}
	return out, nil
}

// mappings returns a copy of the installed state, for tests.
func (n *Nft) mappings() map[mapping.Key]mapping.Mapping {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[mapping.Key]mapping.Mapping, len(n.installed))
	for k, v := range n.installed {
		out[k.key()] = v.mapping(k)
	}
	return out
}

// lookupKey looks the Key k up in a map of keys.
func lookupKey(m map[key]inst, k mapping.Key) (inst, bool) {
	c, ok := keyOf(k)
	if !ok {
		return inst{}, false
	}
	v, ok := m[c]
	return v, ok
}
