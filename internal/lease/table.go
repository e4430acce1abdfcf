// Package lease is berth's lease table and port allocator.
//
// The table is pure: it does no I/O, reads no clock (every call that needs
// the time takes it as an argument) and is not safe for concurrent use;
// portmap.Service holds the lock. Every operation is O(log n) or better in
// the number of mappings: mappings are indexed by external port, by
// internal address:port and by client, expiry deadlines sit in a min-heap,
// a B-tree keeps the stable listing order, and free ports are found in a
// bitmap with bounded work.
package lease

import (
	"iter"
	"net/netip"
	"time"

	"github.com/google/btree"

	"github.com/berthd/berth/internal/mapping"
)

type portKey struct {
	proto mapping.Protocol
	port  uint16
}

type clientList struct {
	n    int
	head *entry
}

// Table holds the live mappings.
type Table struct {
	byExt    map[portKey]*entry
	byInt    map[intKey]*entry
	byClient map[netip.Addr]*clientList
	order    *btree.BTreeG[*entry]
	expiry   expiryHeap
	used     map[netip.Addr]*usedPorts // per external address
}

// usedPorts is the port bitmap of one external address.
type usedPorts struct {
	addr netip.Addr
	n    int        // mappings on this address
	set  [2]portSet // TCP, UDP
}

// New returns an empty table.
func New() *Table {
	return &Table{
		byExt:    make(map[portKey]*entry),
		byInt:    make(map[intKey]*entry),
		byClient: make(map[netip.Addr]*clientList),
		used:     make(map[netip.Addr]*usedPorts),
		order: btree.NewG(32, func(a, b *entry) bool {
			return a.compare(b) < 0
		}),
	}
}

// ports returns the bitmap of proto on ext; nil when nothing is mapped there.
func (t *Table) ports(ext netip.Addr, p mapping.Protocol) *portSet {
	u := t.used[ext]
	if u == nil {
		return nil
	}
	if p == mapping.UDP {
		return &u.set[1]
	}
	return &u.set[0]
}

// markPort marks k's port used or free and returns the ports of k's
// external address.
func (t *Table) markPort(k mapping.Key, inUse bool) *usedPorts {
	ext := k.External.Addr()
	u := t.used[ext]
	if u == nil {
		u = &usedPorts{addr: ext}
		t.used[ext] = u
	}
	i := 0
	if k.Proto == mapping.UDP {
		i = 1
	}
	if inUse {
		u.set[i].set(k.External.Port())
		u.n++
		return u
	}
	u.n--
	if u.n == 0 {
		delete(t.used, ext)
		return u
	}
	// The port stays taken while another key (remote host variant) of
	// the same address uses it.
	for e := t.byExt[portKey{k.Proto, k.External.Port()}]; e != nil; e = e.nextExt {
		if e.ext == u {
			return u
		}
	}
	u.set[i].clear(k.External.Port())
	return u
}

// Grow prepares an empty table for n mappings, so that a bulk load (the
// restore at start) does not grow its indexes step by step. It does
// nothing to a table that holds mappings.
func (t *Table) Grow(n int) {
	if t.Len() > 0 || n <= 0 {
		return
	}
	t.byExt = make(map[portKey]*entry, n)
	t.byInt = make(map[intKey]*entry, n)
	t.expiry = make(expiryHeap, 0, n)
}

// StoredUntil returns the lease end that the lease store holds for k,
// as SetStoredUntil recorded it; the zero Time when none was recorded
// since k's mapping entered the table, or k is not in it. portmap uses it
// to keep renewals that end no later off the disk.
func (t *Table) StoredUntil(k mapping.Key) time.Time {
	if e := t.find(k); e != nil && e.stored != 0 {
		return time.Unix(0, e.stored)
	}
	return time.Time{}
}

// SetStoredUntil records that the store holds k's lease until end (see
// StoredUntil). A renewal that updates the entry in place keeps it; a new
// entry, even for the same key, starts without one.
func (t *Table) SetStoredUntil(k mapping.Key, end time.Time) {
	e := t.find(k)
	if e == nil {
		return
	}
	e.stored = 0
	if !end.IsZero() {
		e.stored = end.UnixNano()
	}
}

// Len is the number of mappings.
func (t *Table) Len() int { return t.order.Len() }

// ClientCount is the number of mappings client owns.
func (t *Table) ClientCount(client netip.Addr) int {
	if cl := t.byClient[client]; cl != nil {
		return cl.n
	}
	return 0
}

// Get returns the mapping with key k.
func (t *Table) Get(k mapping.Key) (mapping.Mapping, bool) {
	if e := t.find(k); e != nil {
		return e.mapping(), true
	}
	return mapping.Mapping{}, false
}

func (t *Table) find(k mapping.Key) *entry {
	for e := t.byExt[portKey{k.Proto, k.External.Port()}]; e != nil; e = e.nextExt {
		if e.is(k) {
			return e
		}
	}
	return nil
}

// OnPort returns the mappings on external port p of protocol proto, for
// every remote host and external address.
func (t *Table) OnPort(proto mapping.Protocol, p uint16) []mapping.Mapping {
	var out []mapping.Mapping
	for e := t.byExt[portKey{proto, p}]; e != nil; e = e.nextExt {
		out = append(out, e.mapping())
	}
	return out
}

// Internal returns client's mappings of proto to internal, lowest external
// port first.
func (t *Table) Internal(client netip.Addr, proto mapping.Protocol, internal netip.AddrPort) []mapping.Mapping {
	var out []mapping.Mapping
	for e := t.byInt[intKeyOf(proto, internal)]; e != nil; e = e.nextInt {
		if e.clientAddr() == client && e.intPort == internal.Port() && e.internal == internal.Addr() {
			out = append(out, e.mapping())
		}
	}
	sortByKey(out)
	return out
}

// Client returns client's mappings of proto (any protocol when proto is
// 0), in no particular order.
func (t *Table) Client(client netip.Addr, proto mapping.Protocol) []mapping.Mapping {
	cl := t.byClient[client]
	if cl == nil {
		return nil
	}
	var out []mapping.Mapping
	for e := cl.head; e != nil; e = e.cnext {
		if proto == 0 || e.proto == proto {
			out = append(out, e.mapping())
		}
	}
	return out
}

// All yields every mapping in Key order.
func (t *Table) All() iter.Seq[mapping.Mapping] {
	return func(yield func(mapping.Mapping) bool) {
		t.order.Ascend(func(e *entry) bool { return yield(e.mapping()) })
	}
}

// Keys yields the Key of every mapping in Key order, All's order, without
// building the mappings.
func (t *Table) Keys() iter.Seq[mapping.Key] {
	return func(yield func(mapping.Key) bool) {
		t.order.Ascend(func(e *entry) bool { return yield(e.key()) })
	}
}

// NextExpiry is the earliest deadline of a non-permanent mapping.
func (t *Table) NextExpiry() (time.Time, bool) { return t.expiry.min() }

// Expire removes and returns every mapping whose lease ended at or before
// now, earliest deadline first.
func (t *Table) Expire(now time.Time) []mapping.Mapping {
	var out []mapping.Mapping
	for len(t.expiry) > 0 && !t.expiry[0].expires.After(now) {
		e := t.expiry[0]
		t.remove(e)
		out = append(out, e.mapping())
	}
	return out
}

// Put inserts m, or replaces the mapping with the same Key. It is the
// only way mappings enter the table; callers check ownership and policy
// first (see Allocate).
func (t *Table) Put(m mapping.Mapping) {
	if e := t.find(m.Key); e != nil {
		if e.internalAddrPort() == m.Internal && e.clientAddr() == m.Client {
			// Same indexes: update in place.
			old := e.expires
			e.setLease(m)
			t.reschedule(e, old)
			return
		}
		t.remove(e)
	}
	e := newEntry(m, t.markPort(m.Key, true))
	pk := portKey{m.Proto, m.External.Port()}
	e.nextExt = t.byExt[pk]
	t.byExt[pk] = e
	ik := intKeyOf(m.Proto, m.Internal)
	e.nextInt = t.byInt[ik]
	t.byInt[ik] = e
	cl := t.byClient[m.Client]
	if cl == nil {
		cl = &clientList{}
		t.byClient[m.Client] = cl
	}
	cl.n++
	e.cnext = cl.head
	if cl.head != nil {
		cl.head.cprev = e
	}
	cl.head = e
	t.order.ReplaceOrInsert(e)
	if !m.Permanent() {
		t.expiry.push(e)
	}
}

func (t *Table) reschedule(e *entry, old time.Time) {
	switch {
	case e.permanent():
		t.expiry.remove(e)
	case e.heapIdx < 0:
		t.expiry.push(e)
	case !old.Equal(e.expires):
		t.expiry.fix(int(e.heapIdx))
	}
}

// Delete removes the mapping with key k and returns it.
func (t *Table) Delete(k mapping.Key) (mapping.Mapping, bool) {
	e := t.find(k)
	if e == nil {
		return mapping.Mapping{}, false
	}
	t.remove(e)
	return e.mapping(), true
}

func (t *Table) remove(e *entry) {
	client := e.clientAddr()
	pk := portKey{e.proto, e.extPort}
	t.byExt[pk] = unlink(t.byExt[pk], e, func(x *entry) **entry { return &x.nextExt })
	if t.byExt[pk] == nil {
		delete(t.byExt, pk)
	}
	t.markPort(e.key(), false)
	ik := intKeyOf(e.proto, e.internalAddrPort())
	t.byInt[ik] = unlink(t.byInt[ik], e, func(x *entry) **entry { return &x.nextInt })
	if t.byInt[ik] == nil {
		delete(t.byInt, ik)
	}
	cl := t.byClient[client]
	if e.cprev != nil {
		e.cprev.cnext = e.cnext
	} else {
		cl.head = e.cnext
	}
	if e.cnext != nil {
		e.cnext.cprev = e.cprev
	}
	e.cprev, e.cnext = nil, nil
	if cl.n--; cl.n == 0 {
		delete(t.byClient, client)
	}
	t.order.Delete(e)
	t.expiry.remove(e)
}

// unlink removes e from the singly linked chain starting at head and
// returns the new head. Chains are short: keys sharing one port.
func unlink(head, e *entry, next func(*entry) **entry) *entry {
	if head == e {
		h := *next(e)
		*next(e) = nil
		return h
	}
	for x := head; x != nil; x = *next(x) {
		if *next(x) == e {
			*next(x) = *next(e)
			*next(e) = nil
			break
		}
	}
	return head
}
