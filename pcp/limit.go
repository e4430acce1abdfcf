package pcp

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per client address with a bounded table.
// When the table is full, buckets idle long enough to be full again are
// forgotten; if none is, a new client is refused until one is.
type limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	max     int
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.Addr]*bucket)}
}

func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[a]
	if b == nil {
		if len(l.buckets) >= l.max && !l.evict(now) {
			return false
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[a] = b
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

// evict forgets buckets that have refilled; it reports whether room was
// made. The scan is bounded by the table size and runs only when full.
func (l *limiter) evict(now time.Time) bool {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, a)
		}
	}
	return len(l.buckets) < l.max
}
