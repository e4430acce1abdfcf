package listener

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/ratelimit"
)

// dropReportInterval is the least time between two log lines about
// rate-limited packets: a flood is seen in the log without flooding it.
const dropReportInterval = time.Minute

// maxDropSources bounds the sources counted between two lines; a flood of
// spoofed sources beyond it is still counted in the total.
const maxDropSources = 1024

// dropReport gathers the packets the per-client rate limit dropped and
// logs one Warn line a minute while there are any: how many since the last
// line, from how many sources, and the source that sent the most. The
// first drop after a quiet spell starts the minute; a minute without a
// drop logs nothing.
type dropReport struct {
	clk clock.Clock
	log *slog.Logger

	mu      sync.Mutex
	n       uint64                // dropped since the last line
	sources map[netip.Addr]uint64 // by ratelimit.Key: an IPv6 /64 is one source
	over    bool                  // sources was full: the counts are a lower bound
	stop    func() bool           // the pending line's timer; nil when none
	closed  bool
}

func newDropReport(clk clock.Clock, log *slog.Logger) *dropReport {
	return &dropReport{clk: clk, log: log, sources: make(map[netip.Addr]uint64)}
}

// add counts one packet from src dropped by the rate limit.
func (d *dropReport) add(src netip.Addr) {
	key := ratelimit.Key(src)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.n++
	if _, ok := d.sources[key]; ok || len(d.sources) < maxDropSources {
		d.sources[key]++
	} else {
		d.over = true
	}
	if d.stop == nil {
		d.stop = d.clk.AfterFunc(dropReportInterval, d.flush)
	}
}

// flush logs what was gathered and starts over.
func (d *dropReport) flush() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	n, sources, over := d.n, d.sources, d.over
	d.n, d.sources, d.over, d.stop = 0, make(map[netip.Addr]uint64), false, nil
	d.mu.Unlock()
	var top netip.Addr
	var most uint64
	for a, c := range sources {
		if c > most || (c == most && a.Less(top)) {
			top, most = a, c
		}
	}
	d.log.Warn("requests dropped by the per-client rate limit", "dropped", n, "in", dropReportInterval,
		"sources", len(sources), "sources_capped", over, "top", sourceString(top), "top_dropped", most)
}

// close stops the pending line, if any; nothing is logged after it.
func (d *dropReport) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
}

// sourceString names a rate-limit key: the address, or for IPv6 its /64.
func sourceString(k netip.Addr) string {
	if k.Is6() && !k.Is4In6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}
