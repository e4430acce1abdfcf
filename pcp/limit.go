package pcp

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per client with a bounded table. When the
// table is full, the bucket of the client seen least recently is dropped
// (O(1)); a newcomer is never refused because the table is full, so a LAN
// host spraying spoofed sources cannot lock real clients out; it only
// makes their buckets start full again. IPv6 clients are keyed by their
// /64, so one host cannot claim many entries by using many addresses.
type limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	max     int
	buckets map[netip.Addr]*list.Element
	lru     list.List // of *bucket, most recently seen first
}

type bucket struct {
	key    netip.Addr
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.Addr]*list.Element, max)}
}

func limitKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	key := limitKey(a)
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
			delete(l.buckets, old.Value.(*bucket).key)
		}
		b = &bucket{key: key, tokens: l.burst, last: now}
		l.buckets[key] = l.lru.PushFront(b)
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
