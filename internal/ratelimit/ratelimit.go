// Package ratelimit is a token bucket per client address with a bounded
// table, for the responders that answer UDP (NAT-PMP/PCP, SSDP) and the
// UPnP HTTP server. When the table is full the bucket of the client seen
// least recently is dropped in O(1): a newcomer is never refused because
// the table is full, so a host spraying spoofed sources cannot lock real
// clients out; it only makes their buckets start full again. IPv6 clients
// are keyed by their /64, so one host cannot claim many entries with many
// addresses. Time is passed in.
package ratelimit

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Limiter is safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	max     int
	buckets map[netip.Addr]*list.Element
	lru     list.List // of *bucket, most recently seen first
	// denied counts refusals since the last Denials; lost is set when a
	// bucket holding some left the full table.
	denied uint64
	lost   bool
}

type bucket struct {
	key    netip.Addr
	tokens float64
	last   time.Time
	denied uint64 // since the last Denials
}

// New returns a limiter refilling rate tokens per second up to burst, for
// at most max clients.
func New(rate float64, burst, max int) *Limiter {
	return &Limiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.Addr]*list.Element, max)}
}

// Key is the table key of a: the address, or its /64 for IPv6.
func Key(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// Allow takes one token from a's bucket at now.
func (l *Limiter) Allow(a netip.Addr, now time.Time) bool { return l.AllowN(a, 1, now) }

// AllowN takes n tokens from a's bucket if it holds n; otherwise it takes
// none (an SSDP search is answered in full or not at all).
func (l *Limiter) AllowN(a netip.Addr, n int, now time.Time) bool {
	key := Key(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e, ok := l.buckets[key]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
	} else {
		if l.lru.Len() >= l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			ob := old.Value.(*bucket)
			delete(l.buckets, ob.key)
			l.lost = l.lost || ob.denied > 0
		}
		b = &bucket{key: key, tokens: l.burst, last: now}
		l.buckets[key] = l.lru.PushFront(b)
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
		b.last = now
	}
	if b.tokens < float64(n) {
		b.denied++
		l.denied++
		return false
	}
	b.tokens -= float64(n)
	return true
}

// Denials is what a Limiter refused between two calls of Denials.
type Denials struct {
	Total   uint64     // requests refused
	Sources int        // clients refused, of those still in the table
	Capped  bool       // refused clients left the full table: Sources is a lower bound
	Top     netip.Addr // the Key refused most (the lower one on a tie)
	TopN    uint64     // and how often
}

// Denials returns what was refused since the last call and starts over.
// It walks the table: call it now and then (berth: once a minute), not
// per request.
func (l *Limiter) Denials() Denials {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := Denials{Total: l.denied, Capped: l.lost}
	for _, e := range l.buckets {
		b := e.Value.(*bucket)
		if b.denied == 0 {
			continue
		}
		d.Sources++
		if b.denied > d.TopN || (b.denied == d.TopN && b.key.Less(d.Top)) {
			d.Top, d.TopN = b.key, b.denied
		}
		b.denied = 0
	}
	l.denied, l.lost = 0, false
	return d
}

// Source names a Key for people: the address, or the /64 of an IPv6 one.
func Source(k netip.Addr) string {
	if k.Is6() && !k.Is4In6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

// Len is the number of clients in the table.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
