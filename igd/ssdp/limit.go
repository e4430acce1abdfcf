package ssdp

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per source counting answer datagrams, with a
// bounded table (the approach of pcp's limiter). When the table is full
// the bucket seen least recently is dropped, so spoofed sources cannot
// lock real clients out. IPv6 sources are keyed by their /64.
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
	return &limiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.Addr]*list.Element)}
}

// allowN takes n tokens from a's bucket if it holds n; otherwise it takes
// none. A search is answered in full or not at all.
func (l *limiter) allowN(a netip.Addr, n int, now time.Time) bool {
	key := a
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		key = p.Addr()
	}
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
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
